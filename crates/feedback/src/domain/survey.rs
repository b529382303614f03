//! Survey definitions, the check of a customer's answers against them, the
//! sampling draw and the follow-up rule.

use std::collections::{BTreeMap, BTreeSet};

use cairn_runtime::{Error, Result, Violations};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::MAX_TEXT_BYTES;

/// Most questions in one survey.
pub const MAX_QUESTIONS: usize = 50;
/// Most options of one choice question.
pub const MAX_OPTIONS: usize = 50;
/// Follow-up tasks are due this long after the answer unless the survey says otherwise.
pub const DEFAULT_FOLLOW_UP_SECONDS: i64 = 48 * 3600;
/// NPS answers at or below this are detractors (0-6).
pub const DETRACTOR_MAX: i32 = 6;
/// NPS answers at or above this are promoters (9-10).
pub const PROMOTER_MIN: i32 = 9;
/// CSAT (1-5) answers at or below this are very low and get a follow-up.
pub const CSAT_FOLLOW_UP_MAX: i32 = 2;
/// Effort answers (1-7, "how easy was it") at or below this are very low and get a follow-up.
pub const EFFORT_FOLLOW_UP_MAX: i32 = 2;
/// The question id whose answer is a churn reason (exit surveys).
pub const CHURN_REASON_QUESTION: &str = "churn_reason";

/// The type of a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionKind {
    /// "How likely are you to recommend us?", 0-10.
    Nps,
    /// Satisfaction, 1-5.
    Csat,
    /// "How easy was it?", 1-7.
    Effort,
    /// One of the options.
    SingleChoice,
    /// Any of the options.
    MultipleChoice,
    /// Free text.
    FreeText,
}

impl QuestionKind {
    /// The inclusive range of a score question.
    pub fn score_range(self) -> Option<(i32, i32)> {
        match self {
            Self::Nps => Some((0, 10)),
            Self::Csat => Some((1, 5)),
            Self::Effort => Some((1, 7)),
            Self::SingleChoice | Self::MultipleChoice | Self::FreeText => None,
        }
    }

    /// True for the choice questions, which need options.
    pub fn has_options(self) -> bool {
        matches!(self, Self::SingleChoice | Self::MultipleChoice)
    }
}

/// One option of a choice question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Its id.
    pub id: String,
    /// Its text by language tag.
    pub texts: BTreeMap<String, String>,
}

/// One question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    /// Its id within the survey.
    pub id: String,
    /// Its type.
    pub kind: QuestionKind,
    /// Its text by language tag.
    pub texts: BTreeMap<String, String>,
    /// The options of a choice question.
    pub options: Vec<Choice>,
    /// True when an answer is required.
    pub required: bool,
}

/// When a survey is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    /// The journey touchpoint type, lower case ("ticket", "purchase", "custom:delivery").
    pub touchpoint_type: String,
    /// A CEL condition over `touchpoint`; empty means always.
    pub condition: String,
    /// The share of triggering touchpoints that lead to an invitation, 0 to 1.
    pub sampling_rate: f64,
    /// Seconds to wait after the touchpoint before the invitation goes out.
    pub delay_seconds: i64,
}

/// What is stored of a survey as one document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    /// The questions.
    pub questions: Vec<Question>,
    /// The triggers.
    pub triggers: Vec<Trigger>,
    /// Seconds until a follow-up task is due.
    pub follow_up_due_seconds: i64,
}

/// A survey definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Survey {
    /// Its id.
    pub id: Uuid,
    /// A name for people.
    pub display_name: String,
    /// Questions, triggers and the follow-up delay.
    pub definition: Definition,
    /// The channel invitations go out on (the contract's enum number).
    pub channel: i32,
    /// The consent purpose invitations need.
    pub consent_purpose: String,
    /// A customer is surveyed at most once per this many seconds.
    pub minimum_period_seconds: i64,
    /// Whether the period counts every survey or only this one.
    pub global_period: bool,
    /// Whether it takes no more answers.
    pub closed: bool,
    /// When it was created.
    pub create_time: DateTime<Utc>,
}

/// The shortest period between two answers a customer's own token gives to
/// one survey without an invitation: a day, or the survey's minimum period
/// when longer. Without it, a customer's token could stuff a survey's NPS
/// and raise a follow-up task with every call.
pub const UNINVITED_ANSWER_MINIMUM_SECONDS: i64 = 24 * 60 * 60;

/// The scope of the once-per-period rule of every survey together.
pub const GLOBAL_SCOPE: &str = "*";

impl Survey {
    /// How long after an answer to this survey a customer's own token may
    /// answer it again without an invitation (see
    /// [`UNINVITED_ANSWER_MINIMUM_SECONDS`]).
    pub fn uninvited_answer_period(&self) -> chrono::Duration {
        chrono::Duration::seconds(
            self.minimum_period_seconds
                .max(UNINVITED_ANSWER_MINIMUM_SECONDS),
        )
    }

    /// The question `id`, if the survey has it.
    pub fn question(&self, id: &str) -> Option<&Question> {
        self.definition.questions.iter().find(|q| q.id == id)
    }

    /// The language to ask in: `preferred` when the survey has texts in it
    /// (by its primary subtag too), else the first language of the first question.
    pub fn language_for(&self, preferred: &str) -> String {
        let languages: BTreeSet<&str> = self
            .definition
            .questions
            .iter()
            .flat_map(|q| q.texts.keys().map(String::as_str))
            .collect();
        let primary = preferred.split('-').next().unwrap_or_default();
        if !preferred.is_empty() && languages.contains(preferred) {
            return preferred.to_string();
        }
        if !primary.is_empty() && languages.contains(primary) {
            return primary.to_string();
        }
        self.definition
            .questions
            .first()
            .and_then(|q| q.texts.keys().next().cloned())
            .unwrap_or_default()
    }

    /// Checks answers named `field` against the survey: every question
    /// known, answered at most once, of the right kind, in range, choices
    /// among the options, free text within 8 KiB, required ones present.
    pub fn check_answers(&self, field: &str, answers: &[Answer]) -> Result<Scores> {
        let mut violations = Violations::new();
        let mut scores = Scores::default();
        let mut seen = BTreeSet::new();
        for (index, answer) in answers.iter().enumerate() {
            let at = format!("{field}[{index}]");
            let Some(question) = self.question(&answer.question_id) else {
                violations.add(
                    format!("{at}.question_id"),
                    format!(
                        "the survey has no question {:?}",
                        truncate(&answer.question_id, 64)
                    ),
                );
                continue;
            };
            if !seen.insert(question.id.clone()) {
                violations.add(
                    format!("{at}.question_id"),
                    "answered twice; one answer per question",
                );
                continue;
            }
            match (&answer.value, question.kind) {
                (AnswerValue::Score(score), kind) if kind.score_range().is_some() => {
                    let (low, high) = kind.score_range().unwrap_or((0, 0));
                    if *score < low || *score > high {
                        violations.add(
                            format!("{at}.score"),
                            format!("must be between {low} and {high}; got {score}"),
                        );
                        continue;
                    }
                    match kind {
                        QuestionKind::Nps => scores.nps = Some(*score),
                        QuestionKind::Csat => scores.csat = Some(*score),
                        _ => scores.effort = Some(*score),
                    }
                }
                (AnswerValue::Choices(chosen), kind) if kind.has_options() => {
                    if chosen.is_empty() {
                        violations.add(format!("{at}.choices"), "choose at least one option");
                    } else if kind == QuestionKind::SingleChoice && chosen.len() > 1 {
                        violations.add(
                            format!("{at}.choices"),
                            "a single-choice question takes one option",
                        );
                    }
                    for (option_index, option) in chosen.iter().enumerate() {
                        if !question.options.iter().any(|o| &o.id == option) {
                            violations.add(
                                format!("{at}.choices.option_ids[{option_index}]"),
                                format!("not an option of question {:?}", question.id),
                            );
                        }
                    }
                    if question.id == CHURN_REASON_QUESTION
                        && let Some(first) = chosen.first()
                    {
                        let text = question
                            .options
                            .iter()
                            .find(|o| &o.id == first)
                            .and_then(|o| o.texts.get("en").or_else(|| o.texts.values().next()))
                            .cloned()
                            .unwrap_or_else(|| first.clone());
                        scores.churn_reason = Some(text);
                    }
                }
                (AnswerValue::Text(text), QuestionKind::FreeText) => {
                    if text.len() > MAX_TEXT_BYTES {
                        violations.add(
                            format!("{at}.text"),
                            format!("at most {MAX_TEXT_BYTES} bytes; got {}", text.len()),
                        );
                    } else if !text.trim().is_empty() {
                        if question.id == CHURN_REASON_QUESTION {
                            scores.churn_reason = Some(text.trim().to_string());
                        }
                        scores.texts.push(text.clone());
                    }
                }
                (AnswerValue::Missing, _) => {
                    violations.add(at, "set a score, choices or text");
                }
                (_, kind) => {
                    let expected = match kind {
                        QuestionKind::Nps | QuestionKind::Csat | QuestionKind::Effort => "score",
                        QuestionKind::SingleChoice | QuestionKind::MultipleChoice => "choices",
                        QuestionKind::FreeText => "text",
                    };
                    violations.add(
                        at,
                        format!("question {:?} takes a {expected} answer", question.id),
                    );
                }
            }
        }
        for question in &self.definition.questions {
            if question.required && !seen.contains(&question.id) {
                violations.add(
                    field.to_string(),
                    format!("question {:?} is required", question.id),
                );
            }
        }
        violations.finish()?;
        if answers.is_empty() {
            return Err(Error::invalid(field, "at least one answer"));
        }
        Ok(scores)
    }
}

fn truncate(text: &str, bytes: usize) -> &str {
    let mut end = text.len().min(bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The value of one answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerValue {
    /// A score.
    Score(i32),
    /// Chosen option ids.
    Choices(Vec<String>),
    /// Free text.
    Text(String),
    /// Nothing set (refused by the check).
    Missing,
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The question.
    pub question_id: String,
    /// The value.
    pub value: AnswerValue,
}

/// What the measures need of a checked response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scores {
    /// The NPS answer, 0-10.
    pub nps: Option<i32>,
    /// The CSAT answer, 1-5.
    pub csat: Option<i32>,
    /// The effort answer, 1-7.
    pub effort: Option<i32>,
    /// Free-text answers, analysed as comments.
    pub texts: Vec<String>,
    /// The answer to an exit survey's `churn_reason` question.
    pub churn_reason: Option<String>,
}

impl Scores {
    /// Why the answer needs a follow-up with the customer, when it does.
    pub fn follow_up_reason(&self) -> Option<String> {
        let mut reasons = Vec::new();
        if let Some(nps) = self.nps
            && nps <= DETRACTOR_MAX
        {
            reasons.push(format!("detractor (NPS {nps})"));
        }
        if let Some(csat) = self.csat
            && csat <= CSAT_FOLLOW_UP_MAX
        {
            reasons.push(format!("very low CSAT ({csat})"));
        }
        if let Some(effort) = self.effort
            && effort <= EFFORT_FOLLOW_UP_MAX
        {
            reasons.push(format!("very low effort score ({effort})"));
        }
        (!reasons.is_empty()).then(|| reasons.join(", "))
    }

    /// "promoter", "passive" or "detractor"; empty without an NPS answer.
    pub fn nps_category(&self) -> &'static str {
        match self.nps {
            Some(score) if score >= PROMOTER_MIN => "promoter",
            Some(score) if score > DETRACTOR_MAX => "passive",
            Some(_) => "detractor",
            None => "",
        }
    }
}

/// The sampling draw of `key` (a touchpoint or request) for `survey`:
/// deterministic, so a redelivered trigger or another replica draws the
/// same, and uniform over keys, so `rate` of them are drawn.
pub fn sampled(survey: Uuid, key: &str, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    let digest = Sha256::new()
        .chain_update(survey.as_bytes())
        .chain_update(key.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let draw = u64::from_be_bytes(first) as f64 / u64::MAX as f64;
    draw < rate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn survey() -> Survey {
        let question = |id: &str, kind| Question {
            id: id.into(),
            kind,
            texts: [("en".to_string(), "?".to_string())].into(),
            options: vec![],
            required: false,
        };
        Survey {
            id: Uuid::nil(),
            display_name: "s".into(),
            definition: Definition {
                questions: vec![
                    Question {
                        required: true,
                        ..question("nps", QuestionKind::Nps)
                    },
                    question("why", QuestionKind::FreeText),
                    Question {
                        options: vec![Choice {
                            id: "price".into(),
                            texts: Default::default(),
                        }],
                        ..question("churn_reason", QuestionKind::SingleChoice)
                    },
                ],
                triggers: vec![],
                follow_up_due_seconds: DEFAULT_FOLLOW_UP_SECONDS,
            },
            channel: 1,
            consent_purpose: "service".into(),
            minimum_period_seconds: 0,
            global_period: false,
            closed: false,
            create_time: Utc::now(),
        }
    }

    fn answer(id: &str, value: AnswerValue) -> Answer {
        Answer {
            question_id: id.into(),
            value,
        }
    }

    #[test]
    fn answers_are_checked_against_the_survey() {
        let survey = survey();
        let scores = survey
            .check_answers(
                "answers",
                &[
                    answer("nps", AnswerValue::Score(3)),
                    answer("churn_reason", AnswerValue::Choices(vec!["price".into()])),
                ],
            )
            .unwrap();
        assert_eq!(scores.nps, Some(3));
        assert_eq!(scores.churn_reason.as_deref(), Some("price"));
        assert_eq!(scores.follow_up_reason().unwrap(), "detractor (NPS 3)");
        assert_eq!(scores.nps_category(), "detractor");

        let Err(Error::InvalidArgument(violations)) =
            survey.check_answers("answers", &[answer("nps", AnswerValue::Score(11))])
        else {
            panic!("out of range accepted");
        };
        assert_eq!(violations[0].field, "answers[0].score");

        let Err(Error::InvalidArgument(violations)) = survey.check_answers(
            "answers",
            &[answer(
                "why",
                AnswerValue::Text("x".repeat(MAX_TEXT_BYTES + 1)),
            )],
        ) else {
            panic!("long text accepted");
        };
        assert_eq!(violations[0].field, "answers[0].text");
        assert!(
            violations
                .iter()
                .any(|v| v.description.contains("\"nps\" is required"))
        );
    }

    #[test]
    fn sampling_is_deterministic_and_near_its_rate() {
        let survey = Uuid::now_v7();
        let drawn = (0..2000)
            .filter(|i| sampled(survey, &format!("t-{i}"), 0.25))
            .count();
        assert!((400..600).contains(&drawn), "{drawn}");
        assert_eq!(sampled(survey, "t-1", 0.25), sampled(survey, "t-1", 0.25));
        assert!(sampled(survey, "x", 1.0));
        assert!(!sampled(survey, "x", 0.0));
    }
}

//! Wire ⇄ domain conversions of the feedback service, validated once here.

use std::collections::BTreeMap;

use cairn_contract::feedback::v1 as pb;
use cairn_runtime::common::{channel, check_name, timestamp_from_proto, timestamp_to_proto};
use cairn_runtime::rules::Rule;
use cairn_runtime::{Error, Result, Violations};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::kpi::{KpiRow, Measure};
use crate::domain::survey::{
    Answer, AnswerValue, Choice, DEFAULT_FOLLOW_UP_SECONDS, Definition, MAX_OPTIONS, MAX_QUESTIONS,
    Question, QuestionKind, Survey, Trigger,
};
use crate::events::TRIGGER_VARIABLES;
use crate::storage::TicketView;
use crate::storage::entity::{comment, feature_request, follow_up, response};

/// Longest display name, text of a question or option, or category.
pub const MAX_LABEL_BYTES: usize = 1024;
/// Longest ticket description or contact note.
pub const MAX_NOTE_BYTES: usize = 4096;
/// Longest idempotency key or external id.
pub const MAX_KEY_BYTES: usize = 200;
/// Longest language tag (BCP 47 allows 35).
pub const MAX_LANGUAGE_BYTES: usize = 35;

/// A duration in whole seconds; `field` names it in errors.
pub fn seconds(field: &str, duration: Option<&prost_types::Duration>) -> Result<i64> {
    match duration {
        None => Ok(0),
        Some(d) if d.seconds < 0 || d.nanos < 0 => {
            Err(Error::invalid(field, "must not be negative"))
        }
        Some(d) => Ok(d.seconds),
    }
}

fn duration(seconds: i64) -> prost_types::Duration {
    prost_types::Duration { seconds, nanos: 0 }
}

/// A checked key: empty is `None`, longer than allowed is refused.
pub fn key(field: &str, raw: &str) -> Result<Option<String>> {
    if raw.is_empty() {
        Ok(None)
    } else if raw.len() > MAX_KEY_BYTES {
        Err(Error::invalid(
            field,
            format!("at most {MAX_KEY_BYTES} bytes"),
        ))
    } else {
        Ok(Some(raw.to_string()))
    }
}

/// Checks a text's size.
pub fn bounded(field: &str, text: &str, max: usize) -> Result<()> {
    if text.len() > max {
        Err(Error::invalid(
            field,
            format!("at most {max} bytes; got {}", text.len()),
        ))
    } else {
        Ok(())
    }
}

fn texts(
    field: &str,
    texts: BTreeMap<String, String>,
    violations: &mut Violations,
) -> BTreeMap<String, String> {
    for (language, text) in &texts {
        if language.is_empty() || language.len() > MAX_LANGUAGE_BYTES {
            violations.add(format!("{field}[{language}]"), "a BCP 47 language tag");
        }
        if text.len() > MAX_LABEL_BYTES {
            violations.add(
                format!("{field}[{language}]"),
                format!("at most {MAX_LABEL_BYTES} bytes"),
            );
        }
    }
    texts
}

fn question_kind(raw: i32) -> Option<QuestionKind> {
    match pb::QuestionType::try_from(raw).ok()? {
        pb::QuestionType::Unspecified => None,
        pb::QuestionType::Nps => Some(QuestionKind::Nps),
        pb::QuestionType::Csat => Some(QuestionKind::Csat),
        pb::QuestionType::Effort => Some(QuestionKind::Effort),
        pb::QuestionType::SingleChoice => Some(QuestionKind::SingleChoice),
        pb::QuestionType::MultipleChoice => Some(QuestionKind::MultipleChoice),
        pb::QuestionType::FreeText => Some(QuestionKind::FreeText),
    }
}

fn question_type(kind: QuestionKind) -> pb::QuestionType {
    match kind {
        QuestionKind::Nps => pb::QuestionType::Nps,
        QuestionKind::Csat => pb::QuestionType::Csat,
        QuestionKind::Effort => pb::QuestionType::Effort,
        QuestionKind::SingleChoice => pb::QuestionType::SingleChoice,
        QuestionKind::MultipleChoice => pb::QuestionType::MultipleChoice,
        QuestionKind::FreeText => pb::QuestionType::FreeText,
    }
}

/// Checked questions named `field`.
pub fn questions(
    field: &str,
    wire: Vec<pb::Question>,
    violations: &mut Violations,
) -> Vec<Question> {
    if wire.is_empty() || wire.len() > MAX_QUESTIONS {
        violations.add(field, format!("1 to {MAX_QUESTIONS} questions"));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (index, question) in wire.into_iter().enumerate() {
        let at = format!("{field}[{index}]");
        violations.check(check_name(
            &format!("{at}.question_id"),
            &question.question_id,
        ));
        if !ids.insert(question.question_id.clone()) {
            violations.add(format!("{at}.question_id"), "used by another question");
        }
        let Some(kind) = question_kind(question.r#type) else {
            violations.add(
                format!("{at}.type"),
                "required: one of the QuestionType values",
            );
            continue;
        };
        if question.texts.is_empty() {
            violations.add(format!("{at}.texts"), "at least one language");
        }
        let question_texts = texts(
            &format!("{at}.texts"),
            question.texts.into_iter().collect(),
            violations,
        );
        let mut options = Vec::new();
        if kind.has_options() {
            if question.options.is_empty() || question.options.len() > MAX_OPTIONS {
                violations.add(
                    format!("{at}.options"),
                    format!("1 to {MAX_OPTIONS} options"),
                );
            }
            let mut option_ids = std::collections::BTreeSet::new();
            for (option_index, option) in question.options.into_iter().enumerate() {
                let option_at = format!("{at}.options[{option_index}]");
                if option.option_id.is_empty() || option.option_id.len() > 64 {
                    violations.add(
                        format!("{option_at}.option_id"),
                        "required, at most 64 bytes",
                    );
                } else if !option_ids.insert(option.option_id.clone()) {
                    violations.add(format!("{option_at}.option_id"), "used by another option");
                }
                options.push(Choice {
                    id: option.option_id,
                    texts: texts(
                        &format!("{option_at}.texts"),
                        option.texts.into_iter().collect(),
                        violations,
                    ),
                });
            }
        } else if !question.options.is_empty() {
            violations.add(
                format!("{at}.options"),
                "only choice questions have options",
            );
        }
        out.push(Question {
            id: question.question_id,
            kind,
            texts: question_texts,
            options,
            required: question.required,
        });
    }
    out
}

/// Checked triggers named `field`.
pub fn triggers(field: &str, wire: Vec<pb::Trigger>, violations: &mut Violations) -> Vec<Trigger> {
    let mut out = Vec::new();
    for (index, trigger) in wire.into_iter().enumerate() {
        let at = format!("{field}[{index}]");
        let name = trigger
            .touchpoint_type
            .strip_prefix("custom:")
            .unwrap_or(&trigger.touchpoint_type);
        violations.check(check_name(&format!("{at}.touchpoint_type"), name));
        if !trigger.condition.is_empty() {
            violations.check(Rule::compile(
                &format!("{at}.condition"),
                &trigger.condition,
                TRIGGER_VARIABLES,
            ));
        }
        if !(trigger.sampling_rate > 0.0 && trigger.sampling_rate <= 1.0) {
            violations.add(
                format!("{at}.sampling_rate"),
                "between 0 (exclusive) and 1; 1 invites on every touchpoint",
            );
        }
        let delay = violations
            .check(seconds(&format!("{at}.delay"), trigger.delay.as_ref()))
            .unwrap_or(0);
        out.push(Trigger {
            touchpoint_type: trigger.touchpoint_type,
            condition: trigger.condition,
            sampling_rate: trigger.sampling_rate,
            delay_seconds: delay,
        });
    }
    out
}

/// A consent purpose: empty means "service".
pub fn purpose(field: &str, raw: &str) -> Result<String> {
    if raw.is_empty() {
        return Ok("service".into());
    }
    check_name(field, raw)?;
    Ok(raw.to_string())
}

/// A new survey from the wire, checked; every bad field at once.
pub fn new_survey(wire: pb::Survey, now: DateTime<Utc>) -> Result<Survey> {
    let mut violations = Violations::new();
    if wire.display_name.trim().is_empty() {
        violations.add("survey.display_name", "required");
    }
    violations.check(bounded(
        "survey.display_name",
        &wire.display_name,
        MAX_LABEL_BYTES,
    ));
    let questions = questions("survey.questions", wire.questions, &mut violations);
    let triggers = triggers("survey.triggers", wire.triggers, &mut violations);
    let channel = violations.check(channel("survey.channel", wire.channel));
    let purpose = violations.check(purpose("survey.consent_purpose", &wire.consent_purpose));
    let period = violations.check(seconds(
        "survey.minimum_period",
        wire.minimum_period.as_ref(),
    ));
    let follow_up = violations.check(seconds("survey.follow_up_due", wire.follow_up_due.as_ref()));
    violations.finish()?;
    Ok(Survey {
        id: Uuid::now_v7(),
        display_name: wire.display_name,
        definition: Definition {
            questions,
            triggers,
            follow_up_due_seconds: match follow_up {
                Some(0) | None => DEFAULT_FOLLOW_UP_SECONDS,
                Some(seconds) => seconds,
            },
        },
        channel: channel.map(|c| c as i32).unwrap_or_default(),
        consent_purpose: purpose.unwrap_or_default(),
        minimum_period_seconds: period.unwrap_or_default(),
        global_period: wire.global_period,
        closed: false,
        create_time: now,
    })
}

/// The wire form of a survey.
pub fn survey_to_proto(survey: &Survey) -> pb::Survey {
    pb::Survey {
        survey_id: survey.id.to_string(),
        display_name: survey.display_name.clone(),
        questions: survey
            .definition
            .questions
            .iter()
            .map(|q| pb::Question {
                question_id: q.id.clone(),
                r#type: question_type(q.kind) as i32,
                texts: q.texts.clone().into_iter().collect(),
                options: q
                    .options
                    .iter()
                    .map(|o| pb::Option {
                        option_id: o.id.clone(),
                        texts: o.texts.clone().into_iter().collect(),
                    })
                    .collect(),
                required: q.required,
            })
            .collect(),
        triggers: survey
            .definition
            .triggers
            .iter()
            .map(|t| pb::Trigger {
                touchpoint_type: t.touchpoint_type.clone(),
                condition: t.condition.clone(),
                sampling_rate: t.sampling_rate,
                delay: Some(duration(t.delay_seconds)),
            })
            .collect(),
        channel: survey.channel,
        consent_purpose: survey.consent_purpose.clone(),
        minimum_period: Some(duration(survey.minimum_period_seconds)),
        global_period: survey.global_period,
        closed: survey.closed,
        create_time: Some(timestamp_to_proto(survey.create_time)),
        follow_up_due: Some(duration(survey.definition.follow_up_due_seconds)),
    }
}

/// Answers from the wire (their values are checked against the survey later).
pub fn answers(wire: Vec<pb::Answer>) -> Vec<Answer> {
    wire.into_iter()
        .map(|answer| Answer {
            question_id: answer.question_id,
            value: match answer.value {
                Some(pb::answer::Value::Score(score)) => AnswerValue::Score(score),
                Some(pb::answer::Value::Choices(list)) => AnswerValue::Choices(list.option_ids),
                Some(pb::answer::Value::Text(text)) => AnswerValue::Text(text),
                None => AnswerValue::Missing,
            },
        })
        .collect()
}

fn answer_to_proto(answer: &Answer) -> pb::Answer {
    pb::Answer {
        question_id: answer.question_id.clone(),
        value: match &answer.value {
            AnswerValue::Score(score) => Some(pb::answer::Value::Score(*score)),
            AnswerValue::Choices(ids) => Some(pb::answer::Value::Choices(pb::ChoiceList {
                option_ids: ids.clone(),
            })),
            AnswerValue::Text(text) => Some(pb::answer::Value::Text(text.clone())),
            AnswerValue::Missing => None,
        },
    }
}

fn profile_ref(profile_id: &str) -> Option<cairn_contract::common::v1::CustomerRef> {
    Some(cairn_contract::common::v1::CustomerRef {
        customer: Some(
            cairn_contract::common::v1::customer_ref::Customer::ProfileId(profile_id.to_string()),
        ),
    })
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The wire form of a stored response.
pub fn response_to_proto(row: &response::Model) -> pb::SurveyResponse {
    let answers: Vec<Answer> = serde_json::from_value(row.answers.clone()).unwrap_or_default();
    pb::SurveyResponse {
        response_id: row.id.clone(),
        survey_id: row.survey_id.clone(),
        customer: profile_ref(&row.profile_id),
        channel: row.channel,
        invitation_id: row.invitation_id.clone().unwrap_or_default(),
        answers: answers.iter().map(answer_to_proto).collect(),
        submit_time: Some(timestamp_to_proto(row.submit_time)),
        profile_id: row.profile_id.clone(),
        journey_stage: row.journey_stage.clone(),
        segment_ids: strings(&row.segments),
    }
}

/// The wire form of a stored comment.
pub fn comment_to_proto(row: &comment::Model) -> pb::Comment {
    pb::Comment {
        comment_id: row.id.clone(),
        customer: row.profile_id.as_deref().and_then(profile_ref),
        source: row.source,
        channel: row.channel,
        text: row.text.clone(),
        rating: row.rating,
        language: row.language.clone(),
        themes: strings(&row.themes),
        write_time: Some(timestamp_to_proto(row.write_time)),
    }
}

/// The wire form of a ticket.
pub fn ticket_to_proto(view: &TicketView) -> pb::Ticket {
    let row = &view.ticket;
    let since_open = |time: Option<DateTime<Utc>>| {
        time.map(|t| {
            let elapsed = (t - row.create_time).max(chrono::Duration::zero());
            prost_types::Duration {
                seconds: elapsed.num_seconds(),
                nanos: elapsed.subsec_nanos(),
            }
        })
    };
    let resolved = row.resolve_time.is_some()
        && crate::domain::ticket::TicketStatus::from_number(row.status).is_some_and(|s| {
            matches!(
                s,
                crate::domain::ticket::TicketStatus::Resolved
                    | crate::domain::ticket::TicketStatus::Closed
            )
        });
    pb::Ticket {
        ticket_id: row.id.clone(),
        external_id: row.external_id.clone().unwrap_or_default(),
        customer: profile_ref(&row.profile_id),
        channel: row.channel,
        category: row.category.clone(),
        priority: row.priority,
        severity: row.severity.clone(),
        description: row.description.clone(),
        complaint: row.complaint,
        status: row.status,
        language: row.language.clone(),
        required_skills: view.skills.clone(),
        due_time: row.due_time.map(timestamp_to_proto),
        contacts: view
            .contacts
            .iter()
            .map(|c| pb::TicketContact {
                channel: c.channel,
                handled_by: c.handled_by.clone(),
                contact_time: Some(timestamp_to_proto(c.contact_time)),
                note: c.note.clone(),
                outbound: c.outbound,
            })
            .collect(),
        status_history: view
            .history
            .iter()
            .map(|h| pb::TicketStatusChange {
                status: h.status,
                change_time: Some(timestamp_to_proto(h.change_time)),
                reason: h.reason.clone(),
            })
            .collect(),
        create_time: Some(timestamp_to_proto(row.create_time)),
        first_response: since_open(row.first_response_time),
        resolution: if resolved {
            since_open(row.resolve_time)
        } else {
            None
        },
        first_contact_resolution: crate::domain::ticket::first_contact_resolution(
            resolved,
            row.reopened,
            row.inbound_contacts,
        ),
        assignee: row.assignee.clone(),
        profile_id: row.profile_id.clone(),
        decision_id: row.decision_id.clone(),
        action_id: row.action_id.clone(),
    }
}

/// The wire form of a follow-up task.
pub fn follow_up_to_proto(row: &follow_up::Model) -> pb::FollowUpTask {
    pb::FollowUpTask {
        task_id: row.id.clone(),
        profile_id: row.profile_id.clone(),
        response_id: row.response_id.clone(),
        reason: row.reason.clone(),
        due_time: Some(timestamp_to_proto(row.due_time)),
        assignee: row.assignee.clone(),
        answer: row.answer.clone(),
        status: row.status.clone(),
        create_time: Some(timestamp_to_proto(row.create_time)),
    }
}

/// The wire form of a feature request.
pub fn feature_request_to_proto(row: &feature_request::Model) -> pb::FeatureRequest {
    pb::FeatureRequest {
        feature_request_id: row.id.clone(),
        text: row.text.clone(),
        votes: row.votes,
        create_time: Some(timestamp_to_proto(row.create_time)),
    }
}

fn measure(measure: Option<Measure>) -> Option<pb::Measure> {
    measure.map(|m| pb::Measure {
        value: m.value,
        count: m.count,
        lower: m.lower,
        upper: m.upper,
    })
}

/// The wire form of a KPI row.
pub fn kpi_row_to_proto(row: &KpiRow) -> pb::KpiRow {
    pb::KpiRow {
        bucket_start: Some(timestamp_to_proto(row.bucket_start)),
        group: row.group.clone(),
        nps: measure(row.nps),
        csat: measure(row.csat),
        ces: measure(row.ces),
        fcr: measure(row.fcr),
        churn_rate: measure(row.churn_rate),
    }
}

/// A checked time range: start and end when given, INVALID_ARGUMENT on
/// `field.end_time` when the end is before the start.
pub fn time_range(
    field: &str,
    range: Option<cairn_contract::common::v1::TimeRange>,
    violations: &mut Violations,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let range = range.unwrap_or_default();
    let start = range
        .start_time
        .as_ref()
        .and_then(|t| violations.check(timestamp_from_proto(&format!("{field}.start_time"), t)));
    let end = range
        .end_time
        .as_ref()
        .and_then(|t| violations.check(timestamp_from_proto(&format!("{field}.end_time"), t)));
    if let (Some(start), Some(end)) = (start, end)
        && end < start
    {
        violations.add(format!("{field}.end_time"), "before start_time");
    }
    (start, end)
}

//! The gRPC face of the feedback service: each handler checks its request
//! (every bad field at once), calls the domain and the store, and converts back.

pub mod convert;

use std::collections::{BTreeMap, BTreeSet};

use cairn_contract::common::v1::Channel;
use cairn_contract::events::v1::SurveyAnswered;
use cairn_contract::events::v1::change_event::Payload;
use cairn_contract::feedback::v1 as pb;
use cairn_contract::feedback::v1::feedback_service_server::FeedbackService;
use cairn_runtime::auth::{Principal, ScopeTable};
use cairn_runtime::common::{CustomerReference, channel, check_name, timestamp_from_proto};
use cairn_runtime::outbox;
use cairn_runtime::pagination::{PageTokens, listing, page_size};
use cairn_runtime::{Error, Result, Violations};
use chrono::{DateTime, Duration, Utc};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::MAX_TEXT_BYTES;
use crate::domain::kpi::{self, Bucket, ResponseFact, TicketFact};
use crate::domain::survey::Survey;
use crate::domain::text::{self, Signature};
use crate::domain::ticket::TicketStatus;
use crate::invitations::{InvitationRequest, Inviter};
use crate::peers::{DecisionDirectory, ProfileDirectory};
use crate::storage::entity::{churn, comment, response, ticket, ticket_contact};
use crate::storage::{
    CommentFilter, FeedbackStore, NewComment, NewResponse, NewTicket, QueueFilter, ResponseFilter,
    TicketChanges, TicketFilter,
};
use convert::{MAX_KEY_BYTES, MAX_LABEL_BYTES, MAX_LANGUAGE_BYTES, MAX_NOTE_BYTES, bounded, key};

/// The protobuf name of the service.
pub const SERVICE_NAME: &str = "cairn.feedback.v1.FeedbackService";

/// The scope each method needs, as the contract documents it.
pub fn scopes() -> ScopeTable {
    ScopeTable::from_contract(SERVICE_NAME)
}

/// Longest journey stage name on a response.
const MAX_STAGE_BYTES: usize = 64;
/// Longest churn reason.
const MAX_REASON_BYTES: usize = 256;
/// Longest feature request.
const MAX_FEATURE_REQUEST_BYTES: usize = 1024;
/// Most required skills of a ticket.
const MAX_SKILLS: usize = 20;
/// How far in the future a caller-given time may lie (clock skew).
const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);
/// The group of figures that have none under a breakdown (no segment, no stage).
const NO_GROUP: &str = "(none)";

/// The gRPC handlers.
#[derive(Clone)]
pub struct FeedbackApi {
    store: FeedbackStore,
    profiles: ProfileDirectory,
    decisions: DecisionDirectory,
    inviter: Inviter,
    tokens: PageTokens,
}

impl FeedbackApi {
    /// Handlers over `store`, resolving customers through `profiles` and
    /// the owners of decisions named on complaints through `decisions`;
    /// `tokens` sign page tokens.
    pub fn new(
        store: FeedbackStore,
        profiles: ProfileDirectory,
        decisions: DecisionDirectory,
        inviter: Inviter,
        tokens: PageTokens,
    ) -> Self {
        Self {
            store,
            profiles,
            decisions,
            inviter,
            tokens,
        }
    }

    /// For a customer's token, the decision a ticket names must be that
    /// customer's: the recommendation service says whom it was made for
    /// (asked with this service's own token, as only it may see any
    /// decision) and the profile service where that profile went through
    /// merges. Another customer's decision, an unknown one and an id that is
    /// not a decision's all get [`Principal::admit`]'s one refusal, so the
    /// answer does not tell whether the decision exists. A system's token
    /// is trusted with every customer's decisions (it may record their
    /// outcomes directly); the recommendation service checks again, for
    /// everyone, when it consumes the ticket's event.
    async fn admit_decision(
        &self,
        caller: &Principal,
        field: &str,
        decision_id: &str,
    ) -> Result<()> {
        if !caller.is_customer() || decision_id.is_empty() {
            return Ok(());
        }
        let unknown = || Error::not_found("decision", format!("named in {field}"));
        let owner = match Uuid::parse_str(decision_id) {
            Ok(id) => self.decisions.decided_for(field, id).await?,
            Err(_) => None,
        };
        let survivor = match owner {
            None => Err(unknown()),
            Some(owner) if Some(owner) == caller.customer() => Ok(owner),
            // Made for a profile since merged: whose is it now?
            Some(owner) => match self
                .profiles
                .find(field, &CustomerReference::ProfileId(owner))
                .await
            {
                Err(Error::NotFound { .. }) => Err(unknown()),
                found => found,
            },
        };
        caller.admit(survivor, |profile_id| *profile_id).map(|_| ())
    }

    /// The profile id of the customer a request concerns, if `caller` may
    /// touch their data: the one place where this service holds a
    /// customer's token to that customer ([`Principal::admit`]). With
    /// `create`, an identifier seen for the first time gets an anonymous
    /// profile, except for a customer's token, which only ever names its own.
    async fn customer_of(
        &self,
        caller: &Principal,
        field: &str,
        customer: &CustomerReference,
        create: bool,
    ) -> Result<Uuid> {
        let found = if create && !caller.is_customer() {
            self.profiles.resolve(field, customer).await
        } else {
            self.profiles.find(field, customer).await
        };
        caller.admit(found, |profile_id| *profile_id)
    }

    async fn survey(&self, field: &str, id: &str) -> Result<Survey> {
        if Uuid::parse_str(id).is_err() {
            return Err(Error::invalid(field, "required: a survey id (UUID)"));
        }
        self.store.survey(id).await
    }

    /// A comment row of `text`, its language detected when not given.
    #[allow(clippy::too_many_arguments)]
    fn comment_row(
        profile_id: Option<Uuid>,
        source: pb::CommentSource,
        channel: i32,
        text: &str,
        rating: i32,
        language: &str,
        write_time: DateTime<Utc>,
        response_id: Option<String>,
        request_id: Option<String>,
    ) -> NewComment {
        let language = if language.is_empty() {
            text::detect_language(text)
        } else {
            language.to_string()
        };
        let themes = text::themes(text, &language);
        NewComment {
            row: comment::Model {
                id: Uuid::now_v7().to_string(),
                profile_id: profile_id.map(|id| id.to_string()),
                source: source as i32,
                channel,
                text: text.to_string(),
                rating,
                language,
                themes: serde_json::json!(themes),
                response_id,
                request_id,
                write_time,
            },
        }
    }

    /// Checks and stores one answer: for SubmitSurveyResponse (stamped
    /// now, with its follow-up task and event) and ImportSurveyResponse
    /// (`imported_at`: stamped with the original time, without either).
    async fn store_answer(
        &self,
        caller: &Principal,
        request: pb::SubmitSurveyResponseRequest,
        imported_at: Option<DateTime<Utc>>,
    ) -> Result<pb::SubmitSurveyResponseResponse> {
        let mut violations = Violations::new();
        if request.request_id.is_empty() {
            violations.add(
                "request_id",
                "required: a repeated submission with it counts once",
            );
        }
        violations.check(key("request_id", &request.request_id));
        let Some(wire) = request.response else {
            violations.add("response", "required");
            violations.finish()?;
            return Err(Error::internal("unreachable"));
        };
        if Uuid::parse_str(&wire.survey_id).is_err() {
            violations.add("response.survey_id", "required: a survey id (UUID)");
        }
        let customer = violations.check(CustomerReference::from_proto(
            "response.customer",
            wire.customer.clone(),
        ));
        let answered_on = if wire.channel == 0 {
            None
        } else {
            violations
                .check(channel("response.channel", wire.channel))
                .map(|c| c as i32)
        };
        violations.check(bounded(
            "response.journey_stage",
            &wire.journey_stage,
            MAX_STAGE_BYTES,
        ));
        if !wire.invitation_id.is_empty() && Uuid::parse_str(&wire.invitation_id).is_err() {
            violations.add(
                "response.invitation_id",
                "an invitation id (UUID) from InviteToSurvey",
            );
        }
        violations.finish()?;
        let request_key = scoped_key(caller, &request.request_id);
        if let Some(stored) = self.store.response_by_request(&request_key).await? {
            let stored = caller.admit(Ok(stored), |stored| {
                Uuid::parse_str(&stored.profile_id).unwrap_or_default()
            })?;
            return Ok(pb::SubmitSurveyResponseResponse {
                response: Some(convert::response_to_proto(&stored)),
                duplicate: true,
            });
        }
        let survey = self.survey("response.survey_id", &wire.survey_id).await?;
        if survey.closed {
            return Err(Error::FailedPrecondition(format!(
                "response.survey_id: survey {} is closed and takes no more answers",
                survey.id
            )));
        }
        let answers = convert::answers(wire.answers);
        let scores = survey.check_answers("response.answers", &answers)?;
        let profile_id = self
            .customer_of(caller, "response.customer", &checked(customer)?, true)
            .await?;
        let invitation_id = if wire.invitation_id.is_empty() {
            None
        } else {
            // Another customer's invitation and none at all are answered
            // alike, for every caller: NOT_FOUND, and for a customer's
            // token Principal::admit's one refusal.
            let unknown = || Error::not_found("invitation", "named in response.invitation_id");
            let found = match self.store.invitation(&wire.invitation_id).await? {
                Some(invitation) if invitation.profile_id == profile_id.to_string() => {
                    Ok(invitation)
                }
                _ => Err(unknown()),
            };
            let invitation = caller.admit(found, |_| profile_id)?;
            if !invitation.invited || invitation.survey_id != survey.id.to_string() {
                return Err(Error::invalid(
                    "response.invitation_id",
                    "not an invitation of this customer to this survey",
                ));
            }
            Some(invitation.id)
        };
        let segments = self.profiles.segments(profile_id).await?;
        let stage = if wire.journey_stage.is_empty() {
            self.store.stage_of(&profile_id.to_string()).await?
        } else {
            wire.journey_stage
        };
        let now = imported_at.unwrap_or_else(Utc::now);
        // A customer's own token answers a survey it was not invited to once
        // per period; operators' systems (and invitations) are not limited.
        let once_since = (caller.is_customer() && invitation_id.is_none())
            .then(|| now - survey.uninvited_answer_period());
        let response_id = Uuid::now_v7().to_string();
        let answered_on = answered_on.unwrap_or(survey.channel);
        let row = response::Model {
            id: response_id.clone(),
            survey_id: survey.id.to_string(),
            profile_id: profile_id.to_string(),
            channel: answered_on,
            invitation_id,
            answers: serde_json::to_value(&answers).map_err(Error::internal)?,
            nps: scores.nps,
            csat: scores.csat,
            effort: scores.effort,
            segments: serde_json::json!(segments),
            journey_stage: stage,
            request_id: request_key,
            submit_time: now,
        };
        let comments = scores
            .texts
            .iter()
            .map(|text| {
                Self::comment_row(
                    Some(profile_id),
                    pb::CommentSource::Survey,
                    answered_on,
                    text,
                    0,
                    "",
                    now,
                    Some(response_id.clone()),
                    None,
                )
            })
            .collect();
        // An imported answer is history: no follow-up task, no event.
        let follow_up = scores
            .follow_up_reason()
            .filter(|_| imported_at.is_none())
            .map(|reason| {
                (
                    reason,
                    now + Duration::seconds(survey.definition.follow_up_due_seconds),
                )
            });
        let event = imported_at.is_none().then(|| {
            outbox::event(
                "feedback",
                "feedback.survey_answered",
                &profile_id.to_string(),
                Payload::SurveyAnswered(SurveyAnswered {
                    survey_id: survey.id.to_string(),
                    response_id: response_id.clone(),
                    nps_score: scores.nps.unwrap_or(-1),
                    csat_score: scores.csat.unwrap_or(-1),
                    effort_score: scores.effort.unwrap_or(-1),
                    channel: answered_on,
                    nps_category: scores.nps_category().to_string(),
                }),
            )
        });
        let (stored, duplicate) = self
            .store
            .submit_response(
                NewResponse {
                    row,
                    follow_up,
                    comments,
                    churn_reason: scores.churn_reason.clone(),
                    once_since,
                },
                event,
            )
            .await?;
        if !duplicate {
            metrics::counter!(
                "cairn_survey_responses_total",
                "survey" => stored.survey_id.clone(),
                "channel" => channel_name(stored.channel),
            )
            .increment(1);
        }
        Ok(pb::SubmitSurveyResponseResponse {
            response: Some(convert::response_to_proto(&stored)),
            duplicate,
        })
    }
}

/// The idempotency key `key` in the caller's namespace. A system's keys
/// are kept as given; a customer's own token gets a namespace of its own
/// (a SHA-256 of the customer's profile id and the key, which fits the
/// 200-byte column whatever the key), so that one customer's key never
/// meets another's or a system's: a key someone else used answers like a
/// key never used, and says nothing about what exists.
fn scoped_key(caller: &Principal, key: &str) -> String {
    use sha2::Digest;
    match caller.customer() {
        None => key.to_string(),
        Some(customer) => {
            let mut digest = sha2::Sha256::new();
            digest.update(customer.as_bytes());
            digest.update([0u8]);
            digest.update(key.as_bytes());
            let hash: String = digest
                .finalize()
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            format!("customer:{hash}")
        }
    }
}

/// The fields of a ticket that belong to the operator, refused on a
/// customer's own token (the contract lists them on `Ticket`): the
/// operator's ticketing-system id, the status (a ticket opened resolved
/// would count as resolved on first contact), the priority, severity, due
/// time and required skills (they order and route the shared queue).
fn refuse_operator_fields(wire: &pb::Ticket) -> Result<()> {
    let set: Vec<&str> = [
        ("ticket.external_id", !wire.external_id.is_empty()),
        ("ticket.status", wire.status != 0),
        ("ticket.priority", wire.priority != 0),
        ("ticket.severity", !wire.severity.is_empty()),
        ("ticket.due_time", wire.due_time.is_some()),
        ("ticket.required_skills", !wire.required_skills.is_empty()),
    ]
    .into_iter()
    .filter_map(|(field, set)| set.then_some(field))
    .collect();
    if set.is_empty() {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "{}: set by the operator's systems, not by a customer's own token; leave {} unset",
            set.join(", "),
            if set.len() == 1 { "it" } else { "them" }
        )))
    }
}

fn required<T>(field: &str, value: Option<T>) -> Result<T> {
    value.ok_or_else(|| Error::invalid(field, "required"))
}

fn not_future(field: &str, time: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if time > Utc::now() + MAX_FUTURE_SKEW {
        Err(Error::invalid(
            field,
            "more than 5 minutes in the future; check the sender's clock",
        ))
    } else {
        Ok(time)
    }
}

fn checked<T>(value: Option<T>) -> Result<T> {
    value.ok_or_else(|| Error::internal("a checked field is missing"))
}

fn channel_name(raw: i32) -> String {
    Channel::try_from(raw)
        .map(|c| c.as_str_name().to_string())
        .unwrap_or_else(|_| raw.to_string())
}

fn bucket(raw: i32) -> Result<Bucket> {
    match pb::Bucket::try_from(raw) {
        Ok(pb::Bucket::Unspecified) => Ok(Bucket::Whole),
        Ok(pb::Bucket::Day) => Ok(Bucket::Day),
        Ok(pb::Bucket::Week) => Ok(Bucket::Week),
        Ok(pb::Bucket::Month) => Ok(Bucket::Month),
        Err(_) => Err(Error::invalid(
            "bucket",
            format!("{raw} is not a Bucket value"),
        )),
    }
}

fn priority(field: &str, raw: i32) -> Result<i32> {
    match pb::TicketPriority::try_from(raw) {
        Ok(pb::TicketPriority::Unspecified) => Ok(pb::TicketPriority::Normal as i32),
        Ok(priority) => Ok(priority as i32),
        Err(_) => Err(Error::invalid(
            field,
            format!("{raw} is not a TicketPriority value"),
        )),
    }
}

fn status(field: &str, raw: i32) -> Result<TicketStatus> {
    TicketStatus::from_number(raw)
        .ok_or_else(|| Error::invalid(field, "required: one of the TicketStatus values"))
}

fn skills(field: &str, raw: &[String], violations: &mut Violations) -> Vec<String> {
    if raw.len() > MAX_SKILLS {
        violations.add(field, format!("at most {MAX_SKILLS} skills"));
    }
    for (index, skill) in raw.iter().enumerate() {
        violations.check(check_name(&format!("{field}[{index}]"), skill));
    }
    raw.to_vec()
}

fn language(field: &str, raw: &str) -> Result<String> {
    bounded(field, raw, MAX_LANGUAGE_BYTES)?;
    Ok(raw.to_ascii_lowercase())
}

fn mask_paths(mask: Option<prost_types::FieldMask>) -> Result<Vec<String>> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        return Err(Error::invalid(
            "update_mask",
            "required: the fields to change",
        ));
    }
    Ok(paths)
}

#[tonic::async_trait]
impl FeedbackService for FeedbackApi {
    async fn get_kpis(
        &self,
        request: Request<pb::GetKpisRequest>,
    ) -> Result<Response<pb::GetKpisResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        if request.time_range.is_none() {
            violations.add("time_range", "required: the window");
        }
        let (start, end) = convert::time_range("time_range", request.time_range, &mut violations);
        if start.is_none() {
            violations.add("time_range.start_time", "required");
        }
        let bucket = violations.check(bucket(request.bucket));
        let breakdown = pb::Breakdown::try_from(request.breakdown).ok();
        if breakdown.is_none() {
            violations.add("breakdown", "not a Breakdown value");
        }
        if request.customers_at_start < 0 {
            violations.add("customers_at_start", "must not be negative");
        }
        violations.finish()?;
        let start = checked(start)?;
        let end = end.unwrap_or_else(Utc::now);
        let bucket = checked(bucket)?;
        let breakdown = checked(breakdown)?;
        let responses = self.store.response_facts(start, end).await?;
        let tickets = self.store.resolved_tickets(start, end).await?;
        let or_none = |values: Vec<String>| {
            if values.is_empty() {
                vec![NO_GROUP.to_string()]
            } else {
                values
            }
        };
        let response_groups = |fact: &ResponseFact| -> Vec<String> {
            match breakdown {
                pb::Breakdown::Unspecified => vec![String::new()],
                pb::Breakdown::Channel => vec![channel_name(fact.channel)],
                pb::Breakdown::Segment => or_none(fact.segments.clone()),
                pb::Breakdown::JourneyStage => or_none(
                    [fact.stage.clone()]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect(),
                ),
                pb::Breakdown::Survey => vec![fact.survey_id.clone()],
                pb::Breakdown::Agent => vec![],
            }
        };
        let ticket_facts: Vec<TicketFact> = tickets
            .into_iter()
            .map(|t| TicketFact {
                time: t.resolve_time,
                groups: match breakdown {
                    pb::Breakdown::Unspecified => vec![String::new()],
                    pb::Breakdown::Channel => vec![channel_name(t.channel)],
                    pb::Breakdown::Segment => or_none(t.segments),
                    pb::Breakdown::Agent => {
                        or_none([t.assignee].into_iter().filter(|a| !a.is_empty()).collect())
                    }
                    pb::Breakdown::JourneyStage | pb::Breakdown::Survey => vec![],
                },
                first_contact: t.first_contact_resolution,
            })
            .collect();
        let churn = if request.customers_at_start > 0 && breakdown == pb::Breakdown::Unspecified {
            Some((
                request.customers_at_start,
                self.store.churn_times(start, end).await?,
            ))
        } else {
            None
        };
        let rows = kpi::rows(
            bucket,
            start,
            end,
            &responses,
            response_groups,
            &ticket_facts,
            churn,
        );
        Ok(Response::new(pb::GetKpisResponse {
            rows: rows.iter().map(convert::kpi_row_to_proto).collect(),
        }))
    }

    async fn create_survey(
        &self,
        request: Request<pb::CreateSurveyRequest>,
    ) -> Result<Response<pb::CreateSurveyResponse>, Status> {
        let request = request.into_inner();
        let wire = required("survey", request.survey)?;
        let request_id = key("request_id", &request.request_id)?;
        let survey = convert::new_survey(wire, Utc::now())?;
        let stored = self.store.create_survey(survey, request_id).await?;
        Ok(Response::new(pb::CreateSurveyResponse {
            survey: Some(convert::survey_to_proto(&stored)),
        }))
    }

    async fn get_survey(
        &self,
        request: Request<pb::GetSurveyRequest>,
    ) -> Result<Response<pb::GetSurveyResponse>, Status> {
        let survey = self
            .survey("survey_id", &request.into_inner().survey_id)
            .await?;
        Ok(Response::new(pb::GetSurveyResponse {
            survey: Some(convert::survey_to_proto(&survey)),
        }))
    }

    async fn list_surveys(
        &self,
        request: Request<pb::ListSurveysRequest>,
    ) -> Result<Response<pb::ListSurveysResponse>, Status> {
        let request = request.into_inner();
        let page_listing = listing("feedback.list_surveys", &request);
        let mut violations = Violations::new();
        let limit = violations.check(page_size(request.page_size));
        let after = violations.check(self.tokens.decode(&page_listing, &request.page_token));
        violations.finish()?;
        let (surveys, next) = self
            .store
            .list_surveys(checked(limit)?, checked(after)?)
            .await?;
        Ok(Response::new(pb::ListSurveysResponse {
            surveys: surveys.iter().map(convert::survey_to_proto).collect(),
            next_page_token: self.tokens.next(&page_listing, next),
        }))
    }

    async fn update_survey(
        &self,
        request: Request<pb::UpdateSurveyRequest>,
    ) -> Result<Response<pb::UpdateSurveyResponse>, Status> {
        let request = request.into_inner();
        let wire = required("survey", request.survey)?;
        let paths = mask_paths(request.update_mask)?;
        let mut survey = self.survey("survey.survey_id", &wire.survey_id).await?;
        if survey.closed {
            return Err(Error::FailedPrecondition("survey_id: the survey is closed".into()).into());
        }
        // The new values are checked as a whole survey, then the masked ones taken.
        let candidate = convert::new_survey(
            pb::Survey {
                questions: if paths.iter().any(|p| p == "questions") {
                    wire.questions.clone()
                } else {
                    convert::survey_to_proto(&survey).questions
                },
                ..wire.clone()
            },
            survey.create_time,
        );
        let candidate = match candidate {
            Ok(candidate) => candidate,
            Err(Error::InvalidArgument(violations)) => {
                let relevant: Vec<_> = violations
                    .into_iter()
                    .filter(|v| {
                        paths.iter().any(|p| {
                            let top = v.field.trim_start_matches("survey.");
                            top == p
                                || top.starts_with(&format!("{p}["))
                                || top.starts_with(&format!("{p}."))
                        })
                    })
                    .collect();
                if !relevant.is_empty() {
                    return Err(Error::InvalidArgument(relevant).into());
                }
                // Fields outside the mask may be unset in the request.
                let mut fallback = convert::survey_to_proto(&survey);
                for path in &paths {
                    match path.as_str() {
                        "display_name" => fallback.display_name = wire.display_name.clone(),
                        "questions" => fallback.questions = wire.questions.clone(),
                        "triggers" => fallback.triggers = wire.triggers.clone(),
                        "channel" => fallback.channel = wire.channel,
                        "consent_purpose" => {
                            fallback.consent_purpose = wire.consent_purpose.clone()
                        }
                        "minimum_period" => fallback.minimum_period = wire.minimum_period,
                        "global_period" => fallback.global_period = wire.global_period,
                        "follow_up_due" => fallback.follow_up_due = wire.follow_up_due,
                        _ => {}
                    }
                }
                convert::new_survey(fallback, survey.create_time)?
            }
            Err(other) => return Err(other.into()),
        };
        for path in &paths {
            match path.as_str() {
                "display_name" => survey.display_name = candidate.display_name.clone(),
                "questions" => {
                    if self.store.has_responses(&survey.id.to_string()).await? {
                        for (index, question) in candidate.definition.questions.iter().enumerate() {
                            if let Some(old) = survey.question(&question.id)
                                && old.kind != question.kind
                            {
                                return Err(Error::FailedPrecondition(format!(
                                    "survey.questions[{index}].type: question {:?} has answers; its type cannot change",
                                    question.id
                                ))
                                .into());
                            }
                        }
                    }
                    survey.definition.questions = candidate.definition.questions.clone();
                }
                "triggers" => survey.definition.triggers = candidate.definition.triggers.clone(),
                "channel" => survey.channel = candidate.channel,
                "consent_purpose" => survey.consent_purpose = candidate.consent_purpose.clone(),
                "minimum_period" => {
                    survey.minimum_period_seconds = candidate.minimum_period_seconds
                }
                "global_period" => survey.global_period = candidate.global_period,
                "follow_up_due" => {
                    survey.definition.follow_up_due_seconds =
                        candidate.definition.follow_up_due_seconds
                }
                other => {
                    return Err(Error::invalid(
                        "update_mask",
                        format!(
                            "{other:?} cannot change; paths: display_name, questions, triggers, channel, consent_purpose, minimum_period, global_period, follow_up_due"
                        ),
                    )
                    .into());
                }
            }
        }
        let stored = self.store.save_survey(&survey).await?;
        Ok(Response::new(pb::UpdateSurveyResponse {
            survey: Some(convert::survey_to_proto(&stored)),
        }))
    }

    async fn close_survey(
        &self,
        request: Request<pb::CloseSurveyRequest>,
    ) -> Result<Response<pb::CloseSurveyResponse>, Status> {
        let mut survey = self
            .survey("survey_id", &request.into_inner().survey_id)
            .await?;
        if !survey.closed {
            survey.closed = true;
            survey = self.store.save_survey(&survey).await?;
        }
        Ok(Response::new(pb::CloseSurveyResponse {
            survey: Some(convert::survey_to_proto(&survey)),
        }))
    }

    async fn invite_to_survey(
        &self,
        request: Request<pb::InviteToSurveyRequest>,
    ) -> Result<Response<pb::InviteToSurveyResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        if Uuid::parse_str(&request.survey_id).is_err() {
            violations.add("survey_id", "required: a survey id (UUID)");
        }
        let customer =
            violations.check(CustomerReference::from_proto("customer", request.customer));
        let request_key = violations.check(key("request_id", &request.request_id));
        violations.check(bounded(
            "touchpoint_id",
            &request.touchpoint_id,
            MAX_KEY_BYTES,
        ));
        violations.finish()?;
        let survey = self.inviter.survey(&request.survey_id).await?;
        let profile_id = self.profiles.find("customer", &checked(customer)?).await?;
        let request_key = checked(request_key)?
            .map(|key| format!("request:{key}"))
            .unwrap_or_else(|| format!("once:{}", Uuid::now_v7()));
        let decision = self
            .inviter
            .decide(
                &survey,
                InvitationRequest {
                    profile_id,
                    touchpoint_id: request.touchpoint_id,
                    request_key,
                    sampling_rate: 1.0,
                    send_after: Utc::now(),
                },
            )
            .await?;
        let invitation = decision.invitation;
        Ok(Response::new(pb::InviteToSurveyResponse {
            invited: invitation.invited,
            invitation_id: if invitation.invited {
                invitation.id
            } else {
                String::new()
            },
            refusal: invitation.refusal,
            language: invitation.language,
            refusal_detail: invitation.refusal_detail,
            allowed_from: decision
                .allowed_from
                .map(cairn_runtime::common::timestamp_to_proto),
        }))
    }

    async fn submit_survey_response(
        &self,
        request: Request<pb::SubmitSurveyResponseRequest>,
    ) -> Result<Response<pb::SubmitSurveyResponseResponse>, Status> {
        let caller = Principal::of(&request)?;
        let answered = self
            .store_answer(&caller, request.into_inner(), None)
            .await?;
        Ok(Response::new(answered))
    }

    async fn import_survey_response(
        &self,
        request: Request<pb::ImportSurveyResponseRequest>,
    ) -> Result<Response<pb::ImportSurveyResponseResponse>, Status> {
        let caller = Principal::of(&request)?;
        // The layer refuses customers' tokens already (the contract does
        // not open this RPC to them); this keeps it so if that changed.
        caller.require_not_customer("importing answers with their original time")?;
        let request = request.into_inner();
        let submit_time = match &request.submit_time {
            None => Err(Error::invalid(
                "submit_time",
                "required: when the answer was given, in the other tool",
            )),
            Some(time) => timestamp_from_proto("submit_time", time)
                .and_then(|time| not_future("submit_time", time)),
        }?;
        let answered = self
            .store_answer(
                &caller,
                pb::SubmitSurveyResponseRequest {
                    response: request.response,
                    request_id: request.request_id,
                },
                Some(submit_time),
            )
            .await?;
        Ok(Response::new(pb::ImportSurveyResponseResponse {
            response: answered.response,
            duplicate: answered.duplicate,
        }))
    }

    async fn list_survey_responses(
        &self,
        request: Request<pb::ListSurveyResponsesRequest>,
    ) -> Result<Response<pb::ListSurveyResponsesResponse>, Status> {
        let request = request.into_inner();
        let page_listing = listing("feedback.list_survey_responses", &request);
        let mut violations = Violations::new();
        if !request.survey_id.is_empty() && Uuid::parse_str(&request.survey_id).is_err() {
            violations.add("survey_id", "a survey id (UUID)");
        }
        let customer = request
            .customer
            .map(|c| violations.check(CustomerReference::from_proto("customer", Some(c))));
        let (start, end) = convert::time_range("time_range", request.time_range, &mut violations);
        let limit = violations.check(page_size(request.page_size));
        let after = violations.check(self.tokens.decode(&page_listing, &request.page_token));
        violations.finish()?;
        let profile_id = match customer.flatten() {
            Some(customer) => Some(self.profiles.find("customer", &customer).await?.to_string()),
            None => None,
        };
        let filter = ResponseFilter {
            survey_id: (!request.survey_id.is_empty()).then_some(request.survey_id),
            profile_id,
            start,
            end,
        };
        let (rows, next) = self
            .store
            .list_responses(&filter, checked(limit)?, checked(after)?)
            .await?;
        Ok(Response::new(pb::ListSurveyResponsesResponse {
            responses: rows.iter().map(convert::response_to_proto).collect(),
            next_page_token: self.tokens.next(&page_listing, next),
        }))
    }

    async fn create_comment(
        &self,
        request: Request<pb::CreateCommentRequest>,
    ) -> Result<Response<pb::CreateCommentResponse>, Status> {
        let request = request.into_inner();
        let wire = required("comment", request.comment)?;
        let mut violations = Violations::new();
        let source = match pb::CommentSource::try_from(wire.source) {
            Ok(pb::CommentSource::Unspecified) | Err(_) => {
                violations.add(
                    "comment.source",
                    "required: one of the CommentSource values",
                );
                None
            }
            Ok(source) => Some(source),
        };
        if wire.channel != 0 {
            violations.check(channel("comment.channel", wire.channel));
        }
        if wire.text.trim().is_empty() {
            violations.add("comment.text", "required");
        }
        violations.check(bounded("comment.text", &wire.text, MAX_TEXT_BYTES));
        if !(0..=5).contains(&wire.rating) {
            violations.add(
                "comment.rating",
                format!("between 1 and 5, or 0 for none; got {}", wire.rating),
            );
        }
        let language = violations.check(language("comment.language", &wire.language));
        let customer = wire
            .customer
            .map(|c| violations.check(CustomerReference::from_proto("comment.customer", Some(c))));
        let write_time = match &wire.write_time {
            Some(t) => violations.check(
                timestamp_from_proto("comment.write_time", t)
                    .and_then(|t| not_future("comment.write_time", t)),
            ),
            None => Some(Utc::now()),
        };
        let request_id = violations.check(key("request_id", &request.request_id));
        violations.finish()?;
        let profile_id = match customer.flatten() {
            Some(customer) => Some(self.profiles.resolve("comment.customer", &customer).await?),
            None => None,
        };
        let new = Self::comment_row(
            profile_id,
            checked(source)?,
            wire.channel,
            &wire.text,
            wire.rating,
            &checked(language)?,
            checked(write_time)?,
            None,
            checked(request_id)?,
        );
        let stored = self.store.create_comment(new).await?;
        Ok(Response::new(pb::CreateCommentResponse {
            comment: Some(convert::comment_to_proto(&stored)),
        }))
    }

    async fn list_comments(
        &self,
        request: Request<pb::ListCommentsRequest>,
    ) -> Result<Response<pb::ListCommentsResponse>, Status> {
        let request = request.into_inner();
        let page_listing = listing("feedback.list_comments", &request);
        let mut violations = Violations::new();
        let customer = request
            .customer
            .map(|c| violations.check(CustomerReference::from_proto("customer", Some(c))));
        let (start, end) = convert::time_range("time_range", request.time_range, &mut violations);
        let limit = violations.check(page_size(request.page_size));
        let after = violations.check(self.tokens.decode(&page_listing, &request.page_token));
        violations.finish()?;
        let profile_id = match customer.flatten() {
            Some(customer) => Some(self.profiles.find("customer", &customer).await?.to_string()),
            None => None,
        };
        let filter = CommentFilter {
            profile_id,
            theme: (!request.theme.is_empty()).then_some(request.theme),
            start,
            end,
        };
        let (rows, next) = self
            .store
            .list_comments(&filter, checked(limit)?, checked(after)?)
            .await?;
        Ok(Response::new(pb::ListCommentsResponse {
            comments: rows.iter().map(convert::comment_to_proto).collect(),
            next_page_token: self.tokens.next(&page_listing, next),
        }))
    }

    async fn create_ticket(
        &self,
        request: Request<pb::CreateTicketRequest>,
    ) -> Result<Response<pb::CreateTicketResponse>, Status> {
        let caller = Principal::of(&request)?;
        let request = request.into_inner();
        let wire = required("ticket", request.ticket)?;
        if caller.is_customer() {
            refuse_operator_fields(&wire)?;
        }
        let mut violations = Violations::new();
        let customer = violations.check(CustomerReference::from_proto(
            "ticket.customer",
            wire.customer,
        ));
        let opened_on = violations.check(channel("ticket.channel", wire.channel));
        let external_id = violations.check(key("ticket.external_id", &wire.external_id));
        let request_id = violations.check(key("request_id", &request.request_id));
        violations.check(bounded("ticket.category", &wire.category, 128));
        let priority = violations.check(priority("ticket.priority", wire.priority));
        violations.check(bounded("ticket.severity", &wire.severity, 64));
        violations.check(bounded(
            "ticket.description",
            &wire.description,
            MAX_NOTE_BYTES,
        ));
        violations.check(bounded("ticket.decision_id", &wire.decision_id, 128));
        violations.check(bounded("ticket.action_id", &wire.action_id, 128));
        let initial = if wire.status == 0 {
            Some(TicketStatus::Acknowledged)
        } else {
            violations.check(status("ticket.status", wire.status))
        };
        let language = violations.check(language("ticket.language", &wire.language));
        let skills = skills(
            "ticket.required_skills",
            &wire.required_skills,
            &mut violations,
        );
        let due_time = wire
            .due_time
            .as_ref()
            .and_then(|t| violations.check(timestamp_from_proto("ticket.due_time", t)));
        violations.finish()?;
        let profile_id = self
            .customer_of(&caller, "ticket.customer", &checked(customer)?, true)
            .await?;
        self.admit_decision(&caller, "ticket.decision_id", &wire.decision_id)
            .await?;
        let segments = self.profiles.segments(profile_id).await?;
        let now = Utc::now();
        let initial = checked(initial)?;
        let row = ticket::Model {
            id: Uuid::now_v7().to_string(),
            external_id: checked(external_id)?,
            request_id: checked(request_id)?.map(|key| scoped_key(&caller, &key)),
            profile_id: profile_id.to_string(),
            channel: checked(opened_on)? as i32,
            category: wire.category.trim().to_lowercase(),
            priority: checked(priority)?,
            severity: wire.severity,
            description: wire.description,
            complaint: wire.complaint,
            status: initial as i32,
            language: checked(language)?,
            due_time,
            assignee: String::new(),
            segments: serde_json::json!(segments),
            inbound_contacts: 1,
            reopened: false,
            decision_id: wire.decision_id,
            action_id: wire.action_id,
            first_response_time: None,
            resolve_time: (initial == TicketStatus::Resolved || initial == TicketStatus::Closed)
                .then_some(now),
            create_time: now,
            update_time: now,
        };
        // A reused request id answers the ticket it made: only to its customer.
        let view = caller.admit(
            self.store.create_ticket(NewTicket { row, skills }).await,
            |view| Uuid::parse_str(&view.ticket.profile_id).unwrap_or_default(),
        )?;
        Ok(Response::new(pb::CreateTicketResponse {
            ticket: Some(convert::ticket_to_proto(&view)),
        }))
    }

    async fn get_ticket(
        &self,
        request: Request<pb::GetTicketRequest>,
    ) -> Result<Response<pb::GetTicketResponse>, Status> {
        let caller = Principal::of(&request)?;
        let reference = request.into_inner().ticket_id;
        if reference.is_empty() {
            return Err(Error::invalid("ticket_id", "required").into());
        }
        let row = caller.admit(self.store.find_ticket(&reference).await, |row| {
            Uuid::parse_str(&row.profile_id).unwrap_or_default()
        })?;
        let view = self.store.ticket_view(row).await?;
        Ok(Response::new(pb::GetTicketResponse {
            ticket: Some(convert::ticket_to_proto(&view)),
        }))
    }

    async fn list_tickets(
        &self,
        request: Request<pb::ListTicketsRequest>,
    ) -> Result<Response<pb::ListTicketsResponse>, Status> {
        let caller = Principal::of(&request)?;
        let request = request.into_inner();
        let page_listing = listing("feedback.list_tickets", &request);
        let mut violations = Violations::new();
        let customer = request
            .customer
            .map(|c| violations.check(CustomerReference::from_proto("customer", Some(c))));
        let statuses: Vec<i32> = request
            .statuses
            .iter()
            .enumerate()
            .filter_map(|(index, raw)| {
                violations
                    .check(status(&format!("statuses[{index}]"), *raw))
                    .map(|s| s as i32)
            })
            .collect();
        let channel_filter = if request.channel == 0 {
            None
        } else {
            violations
                .check(channel("channel", request.channel))
                .map(|c| c as i32)
        };
        let limit = violations.check(page_size(request.page_size));
        let after = violations.check(self.tokens.decode(&page_listing, &request.page_token));
        violations.finish()?;
        let profile_id = match customer.flatten() {
            Some(customer) => Some(
                self.customer_of(&caller, "customer", &customer, false)
                    .await?
                    .to_string(),
            ),
            None => {
                caller.require_not_customer("listing tickets without a customer")?;
                None
            }
        };
        let filter = TicketFilter {
            profile_id,
            statuses,
            category: (!request.category.is_empty()).then(|| request.category.to_lowercase()),
            channel: channel_filter,
        };
        let (views, next) = self
            .store
            .list_tickets(&filter, checked(limit)?, checked(after)?)
            .await?;
        Ok(Response::new(pb::ListTicketsResponse {
            tickets: views.iter().map(convert::ticket_to_proto).collect(),
            next_page_token: self.tokens.next(&page_listing, next),
        }))
    }

    async fn update_ticket(
        &self,
        request: Request<pb::UpdateTicketRequest>,
    ) -> Result<Response<pb::UpdateTicketResponse>, Status> {
        let request = request.into_inner();
        let wire = required("ticket", request.ticket)?;
        if wire.ticket_id.is_empty() {
            return Err(Error::invalid("ticket.ticket_id", "required").into());
        }
        let paths = mask_paths(request.update_mask)?;
        let mut violations = Violations::new();
        violations.check(bounded("reason", &request.reason, MAX_LABEL_BYTES));
        let mut changes = TicketChanges::default();
        for path in &paths {
            match path.as_str() {
                "status" => changes.status = violations.check(status("ticket.status", wire.status)),
                "priority" => changes.priority = violations.check(priority("ticket.priority", wire.priority)),
                "category" => {
                    violations.check(bounded("ticket.category", &wire.category, 128));
                    changes.category = Some(wire.category.trim().to_lowercase());
                }
                "severity" => {
                    violations.check(bounded("ticket.severity", &wire.severity, 64));
                    changes.severity = Some(wire.severity.clone());
                }
                "description" => {
                    violations.check(bounded("ticket.description", &wire.description, MAX_NOTE_BYTES));
                    changes.description = Some(wire.description.clone());
                }
                "complaint" => changes.complaint = Some(wire.complaint),
                "due_time" => {
                    changes.due_time = Some(wire.due_time.as_ref().and_then(|t| {
                        violations.check(timestamp_from_proto("ticket.due_time", t))
                    }))
                }
                "required_skills" => {
                    changes.skills = Some(skills("ticket.required_skills", &wire.required_skills, &mut violations))
                }
                "language" => changes.language = violations.check(language("ticket.language", &wire.language)),
                other => violations.add(
                    "update_mask",
                    format!("{other:?} cannot change; paths: status, priority, category, severity, description, complaint, due_time, required_skills, language"),
                ),
            }
        }
        violations.finish()?;
        let view = self
            .store
            .update_ticket(&wire.ticket_id, changes, &request.reason)
            .await?;
        Ok(Response::new(pb::UpdateTicketResponse {
            ticket: Some(convert::ticket_to_proto(&view)),
        }))
    }

    async fn add_ticket_contact(
        &self,
        request: Request<pb::AddTicketContactRequest>,
    ) -> Result<Response<pb::AddTicketContactResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        if request.ticket_id.is_empty() {
            violations.add("ticket_id", "required");
        }
        let Some(contact) = request.contact else {
            violations.add("contact", "required");
            violations.finish()?;
            return Err(Error::internal("unreachable").into());
        };
        let contacted_on = violations.check(channel("contact.channel", contact.channel));
        violations.check(bounded("contact.handled_by", &contact.handled_by, 128));
        violations.check(bounded("contact.note", &contact.note, MAX_NOTE_BYTES));
        let contact_time = match &contact.contact_time {
            Some(t) => violations.check(
                timestamp_from_proto("contact.contact_time", t)
                    .and_then(|t| not_future("contact.contact_time", t)),
            ),
            None => Some(Utc::now()),
        };
        violations.finish()?;
        let view = self
            .store
            .add_contact(
                &request.ticket_id,
                ticket_contact::Model {
                    id: 0,
                    ticket_id: String::new(),
                    channel: checked(contacted_on)? as i32,
                    handled_by: contact.handled_by,
                    contact_time: checked(contact_time)?,
                    note: contact.note,
                    outbound: contact.outbound,
                },
            )
            .await?;
        Ok(Response::new(pb::AddTicketContactResponse {
            ticket: Some(convert::ticket_to_proto(&view)),
        }))
    }

    async fn claim_next_ticket(
        &self,
        request: Request<pb::ClaimNextTicketRequest>,
    ) -> Result<Response<pb::ClaimNextTicketResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        if request.agent_id.trim().is_empty() {
            violations.add("agent_id", "required");
        }
        violations.check(bounded("agent_id", &request.agent_id, 128));
        let channels: Vec<i32> = request
            .channels
            .iter()
            .enumerate()
            .filter_map(|(index, raw)| {
                violations
                    .check(channel(&format!("channels[{index}]"), *raw))
                    .map(|c| c as i32)
            })
            .collect();
        let languages: Vec<String> = request
            .languages
            .iter()
            .enumerate()
            .filter_map(|(index, raw)| {
                violations.check(language(&format!("languages[{index}]"), raw))
            })
            .collect();
        let skills = skills("skills", &request.skills, &mut violations);
        violations.finish()?;
        let claimed = self
            .store
            .claim_next(
                &request.agent_id,
                &QueueFilter {
                    channels,
                    languages,
                    skills,
                },
            )
            .await?
            .ok_or_else(|| {
                Error::not_found(
                    "ticket",
                    "waiting for this agent's channels, languages and skills",
                )
            })?;
        Ok(Response::new(pb::ClaimNextTicketResponse {
            ticket: Some(convert::ticket_to_proto(&claimed)),
        }))
    }

    async fn release_ticket(
        &self,
        request: Request<pb::ReleaseTicketRequest>,
    ) -> Result<Response<pb::ReleaseTicketResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        if request.ticket_id.is_empty() {
            violations.add("ticket_id", "required");
        }
        if request.agent_id.is_empty() {
            violations.add("agent_id", "required");
        }
        violations.finish()?;
        let view = self
            .store
            .release(&request.ticket_id, &request.agent_id)
            .await?;
        Ok(Response::new(pb::ReleaseTicketResponse {
            ticket: Some(convert::ticket_to_proto(&view)),
        }))
    }

    async fn list_trends(
        &self,
        request: Request<pb::ListTrendsRequest>,
    ) -> Result<Response<pb::ListTrendsResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        if request.time_range.is_none() {
            violations.add("time_range", "required: the window");
        }
        let (start, end) = convert::time_range("time_range", request.time_range, &mut violations);
        if start.is_none() {
            violations.add("time_range.start_time", "required");
        }
        let bucket = violations.check(bucket(request.bucket));
        let limit = match request.limit {
            0 => 20,
            1..=100 => request.limit as usize,
            other => {
                violations.add(
                    "limit",
                    format!("between 1 and 100, or 0 for 20; got {other}"),
                );
                0
            }
        };
        violations.finish()?;
        let start = checked(start)?;
        let end = end.unwrap_or_else(Utc::now);
        let bucket = checked(bucket)?;
        let starts = bucket.starts(start, end);
        let mut volumes: BTreeMap<String, (Vec<i64>, BTreeSet<String>)> = BTreeMap::new();
        for mention in self.store.theme_mentions(start, end).await? {
            let at = bucket.start_of(mention.time, start);
            let index = starts.iter().rposition(|s| *s <= at).unwrap_or(0);
            let entry = volumes
                .entry(mention.theme)
                .or_insert_with(|| (vec![0; starts.len()], BTreeSet::new()));
            entry.0[index] += 1;
            if !mention.language.is_empty() {
                entry.1.insert(mention.language);
            }
        }
        let mut trends: Vec<pb::Trend> = volumes
            .into_iter()
            .map(|(theme, (volume, languages))| pb::Trend {
                growth: kpi::growth(&volume),
                theme,
                volume,
                examples: vec![],
                languages: languages.into_iter().collect(),
            })
            .collect();
        trends.sort_by(|a, b| {
            b.growth
                .total_cmp(&a.growth)
                .then_with(|| {
                    b.volume
                        .iter()
                        .sum::<i64>()
                        .cmp(&a.volume.iter().sum::<i64>())
                })
                .then_with(|| a.theme.cmp(&b.theme))
        });
        trends.truncate(limit);
        for trend in &mut trends {
            trend.examples = self
                .store
                .theme_examples(&trend.theme, start, end, 3)
                .await?;
        }
        Ok(Response::new(pb::ListTrendsResponse { trends }))
    }

    async fn list_churn_reasons(
        &self,
        request: Request<pb::ListChurnReasonsRequest>,
    ) -> Result<Response<pb::ListChurnReasonsResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let (start, end) = convert::time_range("time_range", request.time_range, &mut violations);
        violations.finish()?;
        let reasons = self.store.churn_reasons(start, end).await?;
        Ok(Response::new(pb::ListChurnReasonsResponse {
            reasons: reasons
                .into_iter()
                .map(|(reason, count)| pb::ChurnReason { reason, count })
                .collect(),
        }))
    }

    async fn record_churn(
        &self,
        request: Request<pb::RecordChurnRequest>,
    ) -> Result<Response<pb::RecordChurnResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let customer =
            violations.check(CustomerReference::from_proto("customer", request.customer));
        violations.check(bounded("reason", &request.reason, MAX_REASON_BYTES));
        let churn_time = match &request.churn_time {
            Some(t) => violations.check(
                timestamp_from_proto("churn_time", t).and_then(|t| not_future("churn_time", t)),
            ),
            None => Some(Utc::now()),
        };
        let request_id = violations.check(key("request_id", &request.request_id));
        violations.finish()?;
        let profile_id = self
            .profiles
            .resolve("customer", &checked(customer)?)
            .await?;
        self.store
            .record_churn(churn::Model {
                id: Uuid::now_v7().to_string(),
                profile_id: profile_id.to_string(),
                reason: request.reason.trim().to_string(),
                source: "record".into(),
                request_id: checked(request_id)?,
                churn_time: checked(churn_time)?,
            })
            .await?;
        Ok(Response::new(pb::RecordChurnResponse {}))
    }

    async fn create_feature_request(
        &self,
        request: Request<pb::CreateFeatureRequestRequest>,
    ) -> Result<Response<pb::CreateFeatureRequestResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        if request.text.trim().is_empty() {
            violations.add("text", "required");
        }
        violations.check(bounded("text", &request.text, MAX_FEATURE_REQUEST_BYTES));
        let customer = request
            .customer
            .map(|c| violations.check(CustomerReference::from_proto("customer", Some(c))));
        violations.finish()?;
        let voter = match customer.flatten() {
            Some(customer) => self
                .profiles
                .resolve("customer", &customer)
                .await?
                .to_string(),
            None => Uuid::now_v7().to_string(),
        };
        let text = request.text.trim();
        let language = text::detect_language(text);
        let signature = Signature::of(text, &language);
        let (stored, merged) = self
            .store
            .request_feature(text, &language, signature, voter)
            .await?;
        Ok(Response::new(pb::CreateFeatureRequestResponse {
            feature_request: Some(convert::feature_request_to_proto(&stored)),
            merged,
        }))
    }

    async fn list_feature_requests(
        &self,
        request: Request<pb::ListFeatureRequestsRequest>,
    ) -> Result<Response<pb::ListFeatureRequestsResponse>, Status> {
        let request = request.into_inner();
        let page_listing = listing("feedback.list_feature_requests", &request);
        let mut violations = Violations::new();
        let limit = violations.check(page_size(request.page_size));
        let after = violations.check(self.tokens.decode(&page_listing, &request.page_token));
        violations.finish()?;
        let (rows, next) = self
            .store
            .list_feature_requests(checked(limit)?, checked(after)?)
            .await?;
        Ok(Response::new(pb::ListFeatureRequestsResponse {
            feature_requests: rows.iter().map(convert::feature_request_to_proto).collect(),
            next_page_token: self.tokens.next(&page_listing, next),
        }))
    }

    async fn list_follow_up_tasks(
        &self,
        request: Request<pb::ListFollowUpTasksRequest>,
    ) -> Result<Response<pb::ListFollowUpTasksResponse>, Status> {
        let request = request.into_inner();
        let page_listing = listing("feedback.list_follow_up_tasks", &request);
        let mut violations = Violations::new();
        let limit = violations.check(page_size(request.page_size));
        let after = violations.check(self.tokens.decode(&page_listing, &request.page_token));
        violations.finish()?;
        let (rows, next) = self
            .store
            .list_follow_ups(
                request.overdue_only,
                (!request.assignee.is_empty()).then_some(request.assignee),
                checked(limit)?,
                checked(after)?,
            )
            .await?;
        Ok(Response::new(pb::ListFollowUpTasksResponse {
            tasks: rows.iter().map(convert::follow_up_to_proto).collect(),
            next_page_token: self.tokens.next(&page_listing, next),
        }))
    }

    async fn update_follow_up_task(
        &self,
        request: Request<pb::UpdateFollowUpTaskRequest>,
    ) -> Result<Response<pb::UpdateFollowUpTaskResponse>, Status> {
        let request = request.into_inner();
        let wire = required("task", request.task)?;
        let paths = mask_paths(request.update_mask)?;
        if Uuid::parse_str(&wire.task_id).is_err() {
            return Err(Error::invalid("task.task_id", "required: a task id (UUID)").into());
        }
        let mut violations = Violations::new();
        for path in &paths {
            match path.as_str() {
                "assignee" => {
                    violations.check(bounded("task.assignee", &wire.assignee, 128));
                }
                "answer" => {
                    violations.check(bounded("task.answer", &wire.answer, MAX_NOTE_BYTES));
                }
                "status" => {
                    if !["open", "answered", "closed"].contains(&wire.status.as_str()) {
                        violations.add("task.status", "one of \"open\", \"answered\", \"closed\"");
                    }
                }
                other => violations.add(
                    "update_mask",
                    format!("{other:?} cannot change; paths: assignee, answer, status"),
                ),
            }
        }
        violations.finish()?;
        let mut task = self.store.follow_up(&wire.task_id).await?;
        if task.status == "closed" {
            return Err(Error::FailedPrecondition(
                "task.status: the task is closed; it cannot change".into(),
            )
            .into());
        }
        for path in &paths {
            match path.as_str() {
                "assignee" => task.assignee = wire.assignee.clone(),
                "answer" => task.answer = wire.answer.clone(),
                "status" => task.status = wire.status.clone(),
                _ => {}
            }
        }
        if task.status == "answered" && task.answer.trim().is_empty() {
            return Err(Error::invalid(
                "task.answer",
                "an answered task needs the answer given to the customer",
            )
            .into());
        }
        let stored = self.store.save_follow_up(task).await?;
        Ok(Response::new(pb::UpdateFollowUpTaskResponse {
            task: Some(convert::follow_up_to_proto(&stored)),
        }))
    }

    async fn export_customer_feedback(
        &self,
        request: Request<pb::ExportCustomerFeedbackRequest>,
    ) -> Result<Response<pb::ExportCustomerFeedbackResponse>, Status> {
        let customer = CustomerReference::from_proto("customer", request.into_inner().customer)?;
        let profile_id = self.profiles.find("customer", &customer).await?;
        let held = self.store.export(&profile_id.to_string()).await?;
        Ok(Response::new(pb::ExportCustomerFeedbackResponse {
            responses: held
                .responses
                .iter()
                .map(convert::response_to_proto)
                .collect(),
            comments: held
                .comments
                .iter()
                .map(convert::comment_to_proto)
                .collect(),
            tickets: held.tickets.iter().map(convert::ticket_to_proto).collect(),
        }))
    }
}

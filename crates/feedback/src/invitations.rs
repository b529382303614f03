//! Deciding an invitation: survey open, consent, the once-per-period rule,
//! the sampling draw and the shared contact budget, in that order, so the
//! cheap refusals cost no budget and the budget is counted only for an
//! invitation that is really made.

use cairn_contract::common::v1::Channel;
use cairn_contract::events::v1::SurveyInvited;
use cairn_contract::events::v1::change_event::Payload;
use cairn_contract::feedback::v1::InvitationRefusal;
use cairn_runtime::common::timestamp_to_proto;
use cairn_runtime::outbox;
use cairn_runtime::{Error, Result};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::survey::{Survey, sampled};
use crate::peers::{ContactBudget, ProfileDirectory};
use crate::storage::entity::invitation;
use crate::storage::{FeedbackStore, InvitationRefusals, NewInvitation};

/// What decides invitations.
#[derive(Clone)]
pub struct Inviter {
    store: FeedbackStore,
    profiles: ProfileDirectory,
    budget: ContactBudget,
}

/// One invitation to decide.
#[derive(Debug, Clone)]
pub struct InvitationRequest {
    /// The customer.
    pub profile_id: Uuid,
    /// The triggering touchpoint, or empty.
    pub touchpoint_id: String,
    /// The idempotency key.
    pub request_key: String,
    /// The sampling rate of the trigger (1 for a direct invitation).
    pub sampling_rate: f64,
    /// When the invitation should go out.
    pub send_after: DateTime<Utc>,
}

/// A decision with the quiet hours' end when they were why not.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The stored decision.
    pub invitation: invitation::Model,
    /// When quiet hours end.
    pub allowed_from: Option<DateTime<Utc>>,
}

impl Inviter {
    /// An inviter over `store`, asking `profiles` and `budget`.
    pub fn new(store: FeedbackStore, profiles: ProfileDirectory, budget: ContactBudget) -> Self {
        Self {
            store,
            profiles,
            budget,
        }
    }

    /// Decides whether to invite; a repeated request key returns the first decision.
    pub async fn decide(&self, survey: &Survey, request: InvitationRequest) -> Result<Decision> {
        if let Some(first) = self
            .store
            .invitation_for(survey.id, &request.request_key)
            .await?
        {
            return Ok(Decision {
                invitation: first,
                allowed_from: None,
            });
        }
        let new = |language: String| NewInvitation {
            id: Uuid::now_v7(),
            profile_id: request.profile_id,
            touchpoint_id: request.touchpoint_id.clone(),
            request_key: request.request_key.clone(),
            language,
        };
        if survey.closed {
            let refused = self
                .store
                .refuse(
                    survey,
                    &new(survey.language_for("")),
                    InvitationRefusal::SurveyClosed as i32,
                    "survey_id: the survey is closed".into(),
                )
                .await?;
            return Ok(Decision {
                invitation: refused,
                allowed_from: None,
            });
        }
        let contact = self
            .profiles
            .check_contact(request.profile_id, survey.channel, &survey.consent_purpose)
            .await?;
        let new = new(survey.language_for(&contact.language));
        let channel = Channel::try_from(survey.channel)
            .map(|c| c.as_str_name())
            .unwrap_or("CHANNEL_UNSPECIFIED");
        if !contact.allowed {
            let (refusal, detail) = if contact.quiet_hours {
                (
                    InvitationRefusal::QuietHours,
                    format!("customer: in quiet hours on {channel}"),
                )
            } else {
                (
                    InvitationRefusal::NoConsent,
                    format!(
                        "customer: no consent for the purpose {:?} on {channel}",
                        survey.consent_purpose
                    ),
                )
            };
            let refused = self
                .store
                .refuse(survey, &new, refusal as i32, detail)
                .await?;
            return Ok(Decision {
                invitation: refused,
                allowed_from: contact.allowed_from.filter(|_| contact.quiet_hours),
            });
        }
        if !sampled(survey.id, &request.request_key, request.sampling_rate) {
            let refused = self
                .store
                .refuse(
                    survey,
                    &new,
                    InvitationRefusal::NotSampled as i32,
                    format!(
                        "touchpoint_id: not drawn at the sampling rate {}",
                        request.sampling_rate
                    ),
                )
                .await?;
            return Ok(Decision {
                invitation: refused,
                allowed_from: None,
            });
        }
        let event = outbox::event(
            "feedback",
            "feedback.survey_invited",
            &request.profile_id.to_string(),
            Payload::SurveyInvited(SurveyInvited {
                survey_id: survey.id.to_string(),
                invitation_id: new.id.to_string(),
                channel: survey.channel,
                language: new.language.clone(),
                touchpoint_id: request.touchpoint_id.clone(),
                send_after: Some(timestamp_to_proto(request.send_after)),
            }),
        );
        let period = if survey.global_period {
            "any survey"
        } else {
            "this survey"
        };
        let recently = (
            InvitationRefusal::SurveyedRecently as i32,
            format!(
                "customer: invited to {period} within the last {} seconds",
                survey.minimum_period_seconds
            ),
        );
        let reference = format!("survey:{}", survey.id);
        let reservation_key = format!("feedback:{}:{}", survey.id, request.request_key);
        let reserve = self.budget.reserve(
            request.profile_id,
            survey.channel,
            &survey.consent_purpose,
            &reference,
            &reservation_key,
        );
        let refusals = InvitationRefusals {
            recently,
            budget: InvitationRefusal::ContactBudget as i32,
            quiet_hours: InvitationRefusal::QuietHours as i32,
        };
        let (invitation, allowed_from) = self
            .store
            .invite(survey, &new, refusals, event, reserve)
            .await?;
        Ok(Decision {
            invitation,
            allowed_from,
        })
    }

    /// The survey `id`, for a caller that names it.
    pub async fn survey(&self, id: &str) -> Result<Survey> {
        if Uuid::parse_str(id).is_err() {
            return Err(Error::invalid("survey_id", "a survey id (UUID)"));
        }
        self.store.survey(id).await
    }
}

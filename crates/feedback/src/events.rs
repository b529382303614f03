//! What the feedback service does on other services' events: a journey
//! touchpoint may trigger surveys, a stage change is remembered for KPIs by
//! stage, a profile merge moves the merged profile's feedback to the
//! survivor, and `profile.erased` deletes the person's feedback.

use cairn_contract::common::v1::Channel;
use cairn_contract::events::v1::ChangeEvent;
use cairn_contract::events::v1::change_event::Payload;
use cairn_runtime::bus::EventHandler;
use cairn_runtime::common::timestamp_from_proto;
use cairn_runtime::rules::Rule;
use cairn_runtime::{Error, Result};
use chrono::{Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::invitations::{InvitationRequest, Inviter};
use crate::storage::FeedbackStore;

/// The variables a trigger's condition may name.
pub const TRIGGER_VARIABLES: &[&str] = &["touchpoint"];

/// The touchpoint type of a ticket of this service being resolved.
pub const TICKET_RESOLVED: &str = "ticket_resolved";

/// Handles touchpoints, resolved tickets, stage changes, merges and erasures.
pub struct FeedbackEvents {
    store: FeedbackStore,
    inviter: Inviter,
}

impl FeedbackEvents {
    /// A handler over `store` inviting through `inviter`.
    pub fn new(store: FeedbackStore, inviter: Inviter) -> Self {
        Self { store, inviter }
    }

    /// A journey touchpoint.
    async fn touchpoint(&self, event: &ChangeEvent) -> Result<()> {
        let Some(Payload::TouchpointRecorded(touchpoint)) = &event.payload else {
            return Ok(());
        };
        let occurred_at = touchpoint
            .occurred_at
            .as_ref()
            .and_then(|t| timestamp_from_proto("occurred_at", t).ok())
            .unwrap_or_else(Utc::now);
        self.trigger(
            &event.profile_id,
            &touchpoint.touchpoint_id,
            &touchpoint.r#type,
            touchpoint.channel,
            occurred_at,
        )
        .await
    }

    /// A ticket of this service resolved: the touchpoint type
    /// `ticket_resolved`, so a CSAT survey can follow a resolution.
    async fn ticket(&self, event: &ChangeEvent) -> Result<()> {
        let Some(Payload::TicketChanged(ticket)) = &event.payload else {
            return Ok(());
        };
        if ticket.status != "resolved" || ticket.previous_status == "resolved" {
            return Ok(());
        }
        let occurred_at = event
            .occurred_at
            .as_ref()
            .and_then(|t| timestamp_from_proto("occurred_at", t).ok())
            .unwrap_or_else(Utc::now);
        self.trigger(
            &event.profile_id,
            &format!("ticket:{}", ticket.ticket_id),
            TICKET_RESOLVED,
            ticket.channel,
            occurred_at,
        )
        .await
    }

    /// Invites to every open survey whose trigger matches a touchpoint.
    async fn trigger(
        &self,
        profile_id: &str,
        touchpoint_id: &str,
        kind: &str,
        channel_number: i32,
        occurred_at: chrono::DateTime<Utc>,
    ) -> Result<()> {
        let Ok(profile_id) = Uuid::parse_str(profile_id) else {
            return Ok(());
        };
        let channel = Channel::try_from(channel_number)
            .map(|c| {
                c.as_str_name()
                    .trim_start_matches("CHANNEL_")
                    .to_lowercase()
            })
            .unwrap_or_default();
        let variables = json!({
            "touchpoint": {
                "type": kind,
                "channel": channel,
                "touchpoint_id": touchpoint_id,
            }
        });
        let variables = variables.as_object().cloned().unwrap_or_default();
        for survey in self.store.open_surveys().await? {
            for trigger in &survey.definition.triggers {
                if trigger.touchpoint_type != kind {
                    continue;
                }
                if !trigger.condition.is_empty() {
                    let holds = Rule::compile("condition", &trigger.condition, TRIGGER_VARIABLES)
                        .map_err(|error| Error::internal(format!("a stored trigger: {error}")))
                        .map(|rule| rule.evaluate(&variables));
                    match holds {
                        Ok(Ok(true)) => {}
                        Ok(Ok(false)) => continue,
                        Ok(Err(reason)) | Err(Error::Internal(reason)) => {
                            tracing::warn!(survey = %survey.id, %reason, "a trigger condition failed; not invited");
                            continue;
                        }
                        Err(_) => continue,
                    }
                }
                let request = InvitationRequest {
                    profile_id,
                    touchpoint_id: touchpoint_id.to_string(),
                    request_key: format!("touchpoint:{touchpoint_id}"),
                    sampling_rate: trigger.sampling_rate,
                    send_after: occurred_at + Duration::seconds(trigger.delay_seconds),
                };
                let decision = self.inviter.decide(&survey, request).await?;
                tracing::debug!(
                    survey = %survey.id,
                    invited = decision.invitation.invited,
                    refusal = decision.invitation.refusal,
                    "a touchpoint triggered a survey"
                );
                // One invitation per touchpoint and survey, whatever triggers match.
                break;
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl EventHandler for FeedbackEvents {
    fn topics(&self) -> Vec<String> {
        vec![
            "journey.touchpoint_recorded".into(),
            "journey.stage_changed".into(),
            "profile.erased".into(),
            "profile.merged".into(),
            "feedback.ticket_changed".into(),
        ]
    }

    async fn handle(&self, event: &ChangeEvent) -> Result<()> {
        match &event.payload {
            Some(Payload::TouchpointRecorded(_)) => self.touchpoint(event).await,
            Some(Payload::TicketChanged(_)) => self.ticket(event).await,
            // The stage most recently entered, in whichever journey: leaving
            // a journey (no stage entered) keeps the last stage known.
            Some(Payload::StageChanged(changed)) if !changed.to_stage.is_empty() => {
                self.store
                    .record_stage(&event.event_id, &event.profile_id, &changed.to_stage)
                    .await
            }
            Some(Payload::ProfileMerged(merged)) => {
                let moved = self
                    .store
                    .follow_merge(
                        &event.event_id,
                        &event.profile_id,
                        &merged.merged_profile_id,
                    )
                    .await?;
                tracing::debug!(event_id = %event.event_id, moved, "feedback followed a profile merge");
                Ok(())
            }
            Some(Payload::ProfileErased(erased)) => {
                let mut profile_ids = vec![event.profile_id.clone()];
                profile_ids.extend(erased.merged_profile_ids.iter().cloned());
                let deleted = self.store.erase(&event.event_id, &profile_ids).await?;
                tracing::info!(event_id = %event.event_id, deleted, "erased a person's feedback");
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

//! What the recommendation service does on other services' events:
//! - `profile.erased`: deletes the person's decisions, outcomes, counters,
//!   cool-downs, complaints and stages (the learned model holds no personal
//!   data: only sums over features);
//! - `profile.merged` / `profile.unmerged`: decisions follow the customer;
//! - `feedback.ticket_changed`: open complaints, for complaint suppression,
//!   and a complaint about an offer of a decision as its decline;
//! - `journey.stage_changed`: the customer's stage in each journey, for
//!   eligibility rules and features;
//! - `journey.touchpoint_recorded`: offer shown, accepted and declined
//!   touchpoints that carry a decision id, as outcomes.
//!
//! An event records an outcome only on a decision of the event's own
//! customer (following merges, [`Engine::decision_is_of`]): a complaint or
//! touchpoint naming another customer's decision changes nothing.
//!
//! Each handler is idempotent: by the inbox for state changes, by the
//! outcome's own uniqueness for outcomes.

use std::sync::Arc;

use cairn_contract::events::v1::ChangeEvent;
use cairn_contract::events::v1::change_event::Payload;
use cairn_contract::recommendation::v1::{OutcomeSource, OutcomeType};
use cairn_runtime::bus::EventHandler;
use cairn_runtime::common::timestamp_from_proto;
use cairn_runtime::{Error, Result};
use uuid::Uuid;

use crate::engine::Engine;

/// Handles the events the service listens to.
pub struct EventsHandler {
    engine: Arc<Engine>,
}

impl EventsHandler {
    /// A handler acting through `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    /// Records `kind` on the decision an event of `profile_id` names, when
    /// the decision is that customer's; an event naming another
    /// customer's decision (or none that exists) changes nothing.
    #[allow(clippy::too_many_arguments)]
    async fn outcome(
        &self,
        profile_id: &str,
        decision_id: &str,
        action_id: &str,
        kind: OutcomeType,
        channel: i32,
        occur_time: Option<chrono::DateTime<chrono::Utc>>,
        source: OutcomeSource,
    ) -> Result<()> {
        let Ok(decision) = Uuid::parse_str(decision_id) else {
            tracing::info!("an event carried a decision id that is not a UUID; ignored");
            return Ok(());
        };
        if !self.engine.decision_is_of(decision, profile_id).await? {
            tracing::warn!(
                %decision,
                "an event named a decision that is not its customer's; ignored"
            );
            metrics::counter!("cairn_foreign_decision_references_total").increment(1);
            return Ok(());
        }
        let channel = (channel != 0).then_some(channel);
        match self
            .engine
            .record_outcome(
                decision,
                action_id,
                kind as i32,
                channel,
                occur_time,
                source,
            )
            .await
        {
            Ok(_) => Ok(()),
            // The decision is gone, expired, or already has another final
            // outcome: nothing to learn, and retrying would not change that.
            Err(
                error @ (Error::NotFound { .. }
                | Error::FailedPrecondition(_)
                | Error::InvalidArgument(_)),
            ) => {
                tracing::info!(%error, "an outcome event was not applied");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

/// The outcome a touchpoint type reports, if it reports one.
fn touchpoint_outcome(kind: &str) -> Option<OutcomeType> {
    match kind
        .trim_start_matches("TOUCHPOINT_TYPE_")
        .to_lowercase()
        .as_str()
    {
        "offer_shown" => Some(OutcomeType::Shown),
        "offer_accepted" => Some(OutcomeType::Accepted),
        "offer_declined" => Some(OutcomeType::Declined),
        _ => None,
    }
}

#[async_trait::async_trait]
impl EventHandler for EventsHandler {
    fn topics(&self) -> Vec<String> {
        vec![
            "profile.erased".into(),
            "profile.merged".into(),
            "profile.unmerged".into(),
            "feedback.ticket_changed".into(),
            "journey.stage_changed".into(),
            "journey.touchpoint_recorded".into(),
        ]
    }

    async fn handle(&self, event: &ChangeEvent) -> Result<()> {
        let store = self.engine.store();
        match &event.payload {
            Some(Payload::ProfileErased(erased)) => {
                let mut profile_ids = vec![event.profile_id.clone()];
                profile_ids.extend(erased.merged_profile_ids.iter().cloned());
                // Counters first: if this fails the event is retried, and
                // the database part below runs once by the inbox.
                for id in &profile_ids {
                    if let Ok(profile) = Uuid::parse_str(id) {
                        self.engine.counters().erase(profile).await?;
                    }
                }
                let deleted = store.erase(&event.event_id, &profile_ids).await?;
                tracing::info!(event_id = %event.event_id, deleted, "erased a person's decisions");
                Ok(())
            }
            Some(Payload::ProfileMerged(merged)) => {
                store
                    .follow_merge(
                        &event.event_id,
                        &event.profile_id,
                        &merged.merged_profile_id,
                    )
                    .await
            }
            Some(Payload::ProfileUnmerged(unmerged)) => {
                store
                    .follow_unmerge(
                        &event.event_id,
                        &event.profile_id,
                        &unmerged.restored_profile_id,
                    )
                    .await
            }
            Some(Payload::TicketChanged(ticket)) => {
                if !ticket.decision_id.is_empty()
                    && !ticket.action_id.is_empty()
                    && ticket.open_complaint
                {
                    self.outcome(
                        &event.profile_id,
                        &ticket.decision_id,
                        &ticket.action_id,
                        OutcomeType::Declined,
                        0,
                        None,
                        OutcomeSource::FeedbackEvent,
                    )
                    .await?;
                }
                if event.profile_id.is_empty() {
                    return Ok(());
                }
                store
                    .set_complaint(
                        &event.event_id,
                        &event.profile_id,
                        &ticket.ticket_id,
                        ticket.open_complaint,
                    )
                    .await
            }
            Some(Payload::StageChanged(stage)) => {
                if event.profile_id.is_empty() {
                    return Ok(());
                }
                store
                    .set_stage(
                        &event.event_id,
                        &event.profile_id,
                        &stage.journey_id,
                        &stage.to_stage,
                    )
                    .await
            }
            Some(Payload::TouchpointRecorded(touchpoint)) => {
                let Some(kind) = touchpoint_outcome(&touchpoint.r#type) else {
                    return Ok(());
                };
                if touchpoint.decision_id.is_empty() || touchpoint.action_id.is_empty() {
                    return Ok(());
                }
                let occur_time = touchpoint
                    .occurred_at
                    .as_ref()
                    .and_then(|time| timestamp_from_proto("occurred_at", time).ok());
                self.outcome(
                    &event.profile_id,
                    &touchpoint.decision_id,
                    &touchpoint.action_id,
                    kind,
                    touchpoint.channel,
                    occur_time,
                    OutcomeSource::JourneyEvent,
                )
                .await
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_touchpoints_report_outcomes() {
        assert_eq!(
            touchpoint_outcome("offer_accepted"),
            Some(OutcomeType::Accepted)
        );
        assert_eq!(
            touchpoint_outcome("TOUCHPOINT_TYPE_OFFER_DECLINED"),
            Some(OutcomeType::Declined)
        );
        assert_eq!(touchpoint_outcome("purchase"), None);
    }
}

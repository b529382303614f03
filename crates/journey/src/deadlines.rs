//! The deadline worker: every replica runs one; each pass claims positions
//! whose due time passed and abandonments whose re-engagement is due, with
//! `FOR UPDATE SKIP LOCKED`, so that with any number of replicas (and one
//! of them restarted) each deadline is handled exactly once. The deadlines
//! live in the database with the positions, never in process memory or
//! only in Redis, so nothing is missed when a replica or Redis restarts.

use cairn_runtime::storage::BeginWrite;
use std::sync::Arc;
use std::time::Duration;

use cairn_contract::events::v1::change_event::Payload;
use cairn_contract::events::v1::{AbandonmentDetected, ReengagementDecided};
use cairn_runtime::outbox::{self, Outbox};
use cairn_runtime::{Error, Result};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::progress;
use crate::recommendations::Recommendations;
use crate::storage::abandonments::{self, Abandonment};
use crate::storage::journeys::{JourneyStore, position_of};

/// Positions or abandonments claimed in one transaction.
const BATCH: u64 = 100;
/// Longest wait between two re-engagement attempts.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(3600);
/// Channels a re-engagement may go out on, in order of preference after the
/// channel the customer used last (the recommendation service applies consent).
const OUTREACH_CHANNELS: &[i32] = &[
    cairn_contract::common::v1::Channel::Push as i32,
    cairn_contract::common::v1::Channel::Email as i32,
    cairn_contract::common::v1::Channel::Sms as i32,
];

/// What the worker needs.
#[derive(Clone)]
pub struct DeadlineWorker {
    journeys: JourneyStore,
    outbox: Outbox,
    recommendations: Recommendations,
    retry: Duration,
}

impl DeadlineWorker {
    /// A worker over `journeys`, publishing through `outbox`, asking
    /// `recommendations`, retrying failures after `retry` (doubling).
    pub fn new(
        journeys: JourneyStore,
        outbox: Outbox,
        recommendations: Recommendations,
        retry: Duration,
    ) -> Self {
        Self {
            journeys,
            outbox,
            recommendations,
            retry,
        }
    }

    /// Runs passes every `every` until `shutdown`.
    pub fn spawn(self, every: Duration, shutdown: CancellationToken) {
        tokio::spawn(async move {
            loop {
                if let Err(error) = self.expire(Utc::now()).await {
                    tracing::warn!(%error, "deadline pass failed; retrying at the next");
                }
                if let Err(error) = self.reengage(Utc::now()).await {
                    tracing::warn!(%error, "re-engagement pass failed; retrying at the next");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        });
    }

    /// Handles every position whose due time passed by `now`: abandonments
    /// are recorded (once) and exits for inactivity applied. Returns how many
    /// positions were handled.
    pub async fn expire(&self, now: DateTime<Utc>) -> Result<usize> {
        let transaction = self.journeys.database().begin_write().await?;
        let due = self.journeys.claim_due(&transaction, now, BATCH).await?;
        let mut published = false;
        for row in &due {
            let definition = self
                .journeys
                .version(&transaction, &row.journey_id, row.version)
                .await?;
            let position = position_of(row)?;
            let Some(change) = progress::on_deadline(&definition, &position, now) else {
                // Nothing is due after all (the definition changed): move the due time on.
                let unchanged = progress::Move {
                    position,
                    transition: None,
                    abandonment_key: None,
                };
                let mut next = unchanged.clone();
                if progress::due_at(&definition, &next.position).is_some_and(|due| due <= now) {
                    next.position.status = progress::JourneyStatus::Exited;
                }
                self.journeys
                    .apply(
                        &transaction,
                        &row.customer_id,
                        &row.profile_id,
                        &definition,
                        &next,
                    )
                    .await?;
                continue;
            };
            self.journeys
                .apply(
                    &transaction,
                    &row.customer_id,
                    &row.profile_id,
                    &definition,
                    &change,
                )
                .await?;
            published |= change.transition.is_some();
            if let Some(key) = &change.abandonment_key {
                let stage = position.stage.clone().unwrap_or_default();
                if let Some(id) = abandonments::record(
                    &transaction,
                    &row.customer_id,
                    &row.profile_id,
                    &row.journey_id,
                    &stage,
                    key,
                    now,
                )
                .await?
                {
                    let event = outbox::event(
                        "journey",
                        "journey.abandonment_detected",
                        &row.customer_id,
                        Payload::AbandonmentDetected(AbandonmentDetected {
                            journey_id: row.journey_id.clone(),
                            stage,
                            abandonment_id: id,
                        }),
                    );
                    self.outbox.enqueue(&transaction, &event).await?;
                    published = true;
                    metrics::counter!("cairn_abandonments_detected_total").increment(1);
                }
            }
        }
        transaction.commit().await?;
        if published {
            self.outbox.committed();
        }
        Ok(due.len())
    }

    /// Asks the recommendation service for the next best action of every
    /// abandonment whose re-engagement is due; a failure is retried later
    /// with a growing wait. Returns how many were attempted.
    pub async fn reengage(&self, now: DateTime<Utc>) -> Result<usize> {
        let transaction = self.journeys.database().begin_write().await?;
        let due = abandonments::claim_due(&transaction, now, BATCH).await?;
        let mut published = false;
        for row in &due {
            let outcome = self.choose(row).await;
            let mut updated = row.clone();
            updated.attempts += 1;
            match outcome {
                Ok(Some((channel, decision_id, action_id))) => {
                    updated.status = "sent".into();
                    updated.decision_id = Some(decision_id.clone());
                    updated.action_id = Some(action_id.clone());
                    updated.channel = Some(channel);
                    updated.next_attempt_at = None;
                    let event = outbox::event(
                        "journey",
                        "journey.reengagement_decided",
                        &row.customer_id,
                        Payload::ReengagementDecided(ReengagementDecided {
                            abandonment_id: row.id.clone(),
                            decision_id,
                            action_id,
                            channel,
                            journey_id: row.journey_id.clone(),
                            stage: row.stage.clone(),
                        }),
                    );
                    self.outbox.enqueue(&transaction, &event).await?;
                    published = true;
                }
                Ok(None) => {
                    updated.status = "nothing_to_send".into();
                    updated.next_attempt_at = None;
                }
                Err(error) => {
                    tracing::warn!(%error, abandonment = %row.id, attempts = updated.attempts, "re-engagement failed; will retry");
                    let wait = self
                        .retry
                        .saturating_mul(1u32 << (updated.attempts - 1).clamp(0, 16))
                        .min(MAX_RETRY_WAIT);
                    updated.status = "retrying".into();
                    updated.next_attempt_at =
                        Some(now + chrono::Duration::from_std(wait).unwrap_or_default());
                }
            }
            abandonments::save(&transaction, updated).await?;
        }
        transaction.commit().await?;
        if published {
            self.outbox.committed();
        }
        Ok(due.len())
    }

    /// The first channel on which the recommendation service has an action
    /// for the customer: (channel, decision id, action id); `None` when none has.
    async fn choose(&self, row: &Abandonment) -> Result<Option<(i32, String, String)>> {
        let profile_id = Uuid::parse_str(&row.customer_id).map_err(Error::internal)?;
        let mut channels = Vec::new();
        if let Some(last) = self.journeys.last_channel(&row.customer_id).await? {
            channels.push(last);
        }
        for channel in OUTREACH_CHANNELS {
            if !channels.contains(channel) {
                channels.push(*channel);
            }
        }
        for channel in channels {
            let request_id = format!("abandonment:{}:{channel}", row.id);
            let best = self
                .recommendations
                .decide(
                    profile_id,
                    channel,
                    &row.journey_id,
                    &row.stage,
                    &request_id,
                )
                .await?;
            if let Some(action_id) = best.action_id {
                return Ok(Some((channel, best.decision_id, action_id)));
            }
        }
        Ok(None)
    }
}

/// Keeps the worker's shared pieces together for `start`.
pub type SharedWorker = Arc<DeadlineWorker>;

//! Erasure reaches the bus: the events about an erased person (every event
//! carries its person's profile id) are deleted from the log once every
//! service has handled them, the `profile.erased` event included, so that a
//! listener resuming later, or anyone reading Redis, finds nothing of them.

use std::sync::Arc;
use std::time::Duration;

use cairn_contract::events::v1::ChangeEvent;
use cairn_contract::events::v1::change_event::Payload;

use super::{EventBus, EventHandler};
use crate::error::{Error, Result};

/// The consumer group of [`ForgetErased`].
pub const FORGET_GROUP: &str = "bus-forget";

/// How long one handling waits for the other services before it gives up
/// (the event is then retried when the consumer reclaims it).
const PATIENCE: Duration = Duration::from_secs(15);

/// On `profile.erased`, deletes the person's events from the bus once every
/// other consumer group has handled them. Runs in its own group
/// ([`FORGET_GROUP`]); the profile service starts it.
pub struct ForgetErased {
    bus: Arc<dyn EventBus>,
    outbox: Option<(sea_orm::DatabaseConnection, crate::outbox::Outbox)>,
}

impl ForgetErased {
    /// A handler deleting from `bus`.
    pub fn new(bus: Arc<dyn EventBus>) -> Self {
        Self { bus, outbox: None }
    }

    /// Also deletes the erasure event (and any other event about the
    /// person) from the outbox that published it, once the bus forgot them:
    /// until then it is kept, so that a bus that loses its log replays it
    /// to every service that had yet to handle it.
    pub fn with_outbox(
        mut self,
        db: sea_orm::DatabaseConnection,
        outbox: crate::outbox::Outbox,
    ) -> Self {
        self.outbox = Some((db, outbox));
        self
    }
}

#[async_trait::async_trait]
impl EventHandler for ForgetErased {
    fn topics(&self) -> Vec<String> {
        vec!["profile.erased".into()]
    }

    async fn handle(&self, event: &ChangeEvent) -> Result<()> {
        let mut profile_ids = vec![event.profile_id.clone()];
        if let Some(Payload::ProfileErased(erased)) = &event.payload {
            profile_ids.extend(erased.merged_profile_ids.iter().cloned());
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut pause = Duration::from_millis(100);
        loop {
            if self.bus.forget(&profile_ids, FORGET_GROUP).await? {
                if let Some((db, outbox)) = &self.outbox {
                    outbox.forget(db, &profile_ids, None).await?;
                }
                tracing::info!(event_id = %event.event_id, "the bus forgot an erased person's events");
                return Ok(());
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(Error::Unavailable(
                    "some services have not handled an erased person's events yet".into(),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

//! Erasure: on `profile.erased`, the journey service deletes what it holds
//! about the person (touchpoints now; journey states and sessions as they arrive).

use cairn_contract::events::v1::ChangeEvent;
use cairn_contract::events::v1::change_event::Payload;
use cairn_runtime::Result;
use cairn_runtime::bus::EventHandler;

use crate::storage::TouchpointStore;

/// Handles `profile.erased` events.
pub struct ErasureHandler {
    store: TouchpointStore,
}

impl ErasureHandler {
    /// A handler erasing from `store`.
    pub fn new(store: TouchpointStore) -> Self {
        Self { store }
    }
}

#[async_trait::async_trait]
impl EventHandler for ErasureHandler {
    fn topics(&self) -> Vec<String> {
        vec!["profile.erased".into()]
    }

    async fn handle(&self, event: &ChangeEvent) -> Result<()> {
        let mut profile_ids = vec![event.profile_id.clone()];
        if let Some(Payload::ProfileErased(erased)) = &event.payload {
            profile_ids.extend(erased.merged_profile_ids.iter().cloned());
        }
        let deleted = self.store.erase(&event.event_id, &profile_ids).await?;
        tracing::info!(event_id = %event.event_id, deleted, "erased a person's touchpoints");
        Ok(())
    }
}

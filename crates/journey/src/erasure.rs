//! What the journey service does on the profile service's events: on
//! `profile.erased` it deletes what it holds about the person; on
//! `profile.merged` and `profile.unmerged` timelines follow the profiles.

use cairn_contract::events::v1::ChangeEvent;
use cairn_contract::events::v1::change_event::Payload;
use cairn_runtime::Result;
use cairn_runtime::bus::EventHandler;

use crate::storage::TouchpointStore;

/// Handles `profile.erased`, `profile.merged` and `profile.unmerged` events.
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
        vec![
            "profile.erased".into(),
            "profile.merged".into(),
            "profile.unmerged".into(),
        ]
    }

    async fn handle(&self, event: &ChangeEvent) -> Result<()> {
        match &event.payload {
            Some(Payload::ProfileMerged(merged)) => {
                return self
                    .store
                    .follow_merge(
                        &event.event_id,
                        &event.profile_id,
                        &merged.merged_profile_id,
                    )
                    .await;
            }
            Some(Payload::ProfileUnmerged(unmerged)) => {
                return self
                    .store
                    .follow_unmerge(
                        &event.event_id,
                        &event.profile_id,
                        &unmerged.restored_profile_id,
                    )
                    .await;
            }
            _ => {}
        }
        let mut profile_ids = vec![event.profile_id.clone()];
        if let Some(Payload::ProfileErased(erased)) = &event.payload {
            profile_ids.extend(erased.merged_profile_ids.iter().cloned());
        }
        let deleted = self.store.erase(&event.event_id, &profile_ids).await?;
        tracing::info!(event_id = %event.event_id, deleted, "erased a person's touchpoints");
        Ok(())
    }
}

/// Keeps sessions with their people: on `profile.erased` the sessions of
/// the person's profiles are deleted; on `profile.merged` the merged
/// profile's session goes to the survivor. Its own consumer group, so that
/// a state-store outage delays only this work, never the database's.
pub struct SessionFollower {
    sessions: crate::storage::sessions::SessionStore,
}

impl SessionFollower {
    /// A follower of `sessions`.
    pub fn new(sessions: crate::storage::sessions::SessionStore) -> Self {
        Self { sessions }
    }
}

#[async_trait::async_trait]
impl EventHandler for SessionFollower {
    fn topics(&self) -> Vec<String> {
        vec!["profile.erased".into(), "profile.merged".into()]
    }

    async fn handle(&self, event: &ChangeEvent) -> Result<()> {
        match &event.payload {
            Some(Payload::ProfileMerged(merged)) => {
                self.sessions
                    .follow_merge(&event.profile_id, &merged.merged_profile_id)
                    .await
            }
            Some(Payload::ProfileErased(erased)) => {
                self.sessions
                    .end(&event.profile_id, &erased.merged_profile_ids)
                    .await?;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

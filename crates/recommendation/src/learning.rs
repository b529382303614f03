//! Online learning in every replica: folds waiting outcomes into the shared
//! statistics and keeps a solved copy of the model for scoring.
//!
//! The copy is a cache of what the database holds (see
//! [`crate::storage::model`]), so replicas learn from each other's outcomes
//! within a refresh interval and a restarted replica starts with everything
//! learnt so far.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cairn_runtime::Result;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use crate::domain::bandit::{Model, StoredStatistics};
use crate::storage::model::{ModelHeader, ModelStore};

/// How often a replica looks for outcomes folded by others.
const REFRESH_INTERVAL: Duration = Duration::from_millis(200);

/// The replica's learner.
pub struct Learner {
    store: ModelStore,
    current: RwLock<Arc<Model>>,
    loaded: Mutex<(i64, HashMap<String, StoredStatistics>)>,
    header: RwLock<ModelHeader>,
    wake: Notify,
}

impl Learner {
    /// A learner over `store`, empty until [`Learner::refresh`].
    pub fn new(store: ModelStore) -> Self {
        Self {
            store,
            current: RwLock::new(Arc::new(Model::empty())),
            loaded: Mutex::new((0, HashMap::new())),
            header: RwLock::new(ModelHeader::default()),
            wake: Notify::new(),
        }
    }

    /// The model as last loaded.
    pub fn model(&self) -> Arc<Model> {
        match self.current.read() {
            Ok(model) => model.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The model's header as last loaded.
    pub fn header(&self) -> ModelHeader {
        match self.header.read() {
            Ok(header) => header.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Tells the learner an outcome waits to be folded.
    pub fn outcome_recorded(&self) {
        self.wake.notify_one();
    }

    /// Folds what waits, then loads what changed.
    pub async fn learn(&self) -> Result<()> {
        while self.store.fold().await? > 0 {}
        self.refresh().await
    }

    /// Loads the statistics changed since the last load and solves the model.
    pub async fn refresh(&self) -> Result<()> {
        let mut loaded = self.loaded.lock().await;
        let (header, rows) = self.store.changed_since(loaded.0).await?;
        let changed = header.version != loaded.0;
        loaded.0 = header.version;
        for row in rows {
            loaded.1.insert(row.key.clone(), row);
        }
        if changed {
            let statistics: Vec<StoredStatistics> = loaded.1.values().cloned().collect();
            let features = header.features.clone();
            let version = header.version;
            let model =
                tokio::task::spawn_blocking(move || Model::solve(version, features, &statistics))
                    .await
                    .map_err(cairn_runtime::Error::internal)?;
            match self.current.write() {
                Ok(mut current) => *current = Arc::new(model),
                Err(poisoned) => *poisoned.into_inner() = Arc::new(model),
            }
        }
        match self.header.write() {
            Ok(mut current) => *current = header,
            Err(poisoned) => *poisoned.into_inner() = header,
        }
        Ok(())
    }

    /// Folds and refreshes until `shutdown`: at once after an outcome, and
    /// every refresh interval for what other replicas folded.
    pub fn spawn(self: &Arc<Self>, shutdown: CancellationToken) {
        let learner = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = learner.learn().await {
                    tracing::warn!(%error, "learning from outcomes failed; retrying");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = learner.wake.notified() => {}
                    _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
                }
            }
        });
    }
}

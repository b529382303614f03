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
use crate::storage::model::{FOLD_BATCH, ModelHeader, ModelStore};

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

    /// Folds one batch of what waits, then loads what changed; true when
    /// the batch was full and more may wait.
    ///
    /// One batch, not everything: while outcomes keep arriving every fold
    /// finds a few new ones, and a learner that folded until nothing waited
    /// would never get to reload the model it scores with.
    pub async fn learn(&self) -> Result<bool> {
        let folded = self.store.fold().await?;
        self.refresh().await?;
        Ok(folded >= FOLD_BATCH)
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
                let more_waiting = match learner.learn().await {
                    Ok(more_waiting) => more_waiting,
                    Err(error) => {
                        tracing::warn!(%error, "learning from outcomes failed; retrying");
                        false
                    }
                };
                if shutdown.is_cancelled() {
                    break;
                }
                if more_waiting {
                    continue;
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

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_runtime::storage;
    use sea_orm::ConnectionTrait;
    use sea_orm_migration::MigratorTrait;
    use secrecy::SecretString;

    use crate::storage::migration::Migrator;

    /// Outcomes that never stop arriving must not keep the learner folding
    /// forever: it reloads the model it scores with after each batch.
    #[tokio::test]
    async fn the_model_is_reloaded_while_outcomes_keep_arriving() {
        let folder = std::env::temp_dir().join(format!("cairn-learning-{}", uuid::Uuid::new_v4()));
        let url = SecretString::from(format!(
            "sqlite://{}?mode=rwc",
            folder.join("recommendation.db").display()
        ));
        // One connection: the writers take turns, as SQLite wants.
        let db = storage::connect(&url, 1)
            .await
            .expect("the SQLite file opens");
        Migrator::up(&db, None).await.expect("migrations apply");
        db.execute_unprepared(
            "INSERT INTO recommendation_model (id, version, features, outcomes_learned) \
             VALUES (1, 0, '[]', 0)",
        )
        .await
        .expect("the model row is written");
        let insert = "INSERT INTO recommendation_learning_events (action_id, group_key, features, reward) \
             VALUES ('upgrade', 'sales_offer:upgrade', '{\"bias\": 1.0, \"channel:web\": 1.0}', 1.0)";
        db.execute_unprepared(insert)
            .await
            .expect("a first outcome");

        // An outcome after every fold, for as long as the test runs.
        let producer = {
            let db = db.clone();
            tokio::spawn(async move {
                loop {
                    if db.execute_unprepared(insert).await.is_err() {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            })
        };
        let learner = Learner::new(ModelStore::new(db.clone()));
        let learned = tokio::time::timeout(Duration::from_secs(10), learner.learn()).await;
        producer.abort();
        let more_waiting = learned
            .expect("learn returns while outcomes keep arriving")
            .expect("learning succeeds");
        assert!(!more_waiting, "far fewer than a batch waited");
        let header = learner.header();
        assert!(header.version >= 1, "the fold is loaded: {header:?}");
        assert!(header.outcomes_learned >= 1);
        assert!(
            header.features.contains(&"channel:web".to_string()),
            "{header:?}"
        );
        assert_eq!(learner.model().version, header.version);
        drop(db);
        let _ = std::fs::remove_dir_all(folder);
    }
}

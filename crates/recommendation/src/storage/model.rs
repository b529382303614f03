//! The learned model in the database, shared by every replica.
//!
//! Final outcomes arrive as learning events (written in the outcome's
//! transaction). A fold, run by any replica, takes a batch of events, adds
//! them to the sufficient statistics of the global, group and action
//! levels, deletes them and raises the model's version, all in one
//! transaction that holds the model row's lock, so folds apply one after
//! another and each event is learnt exactly once. Replicas reload the
//! statistics rows whose version is above the one they hold: because folds
//! are serialised and each commits atomically, a replica never sees half
//! a fold.

use cairn_runtime::storage::BeginWrite;
use std::collections::{BTreeMap, HashMap};

use cairn_runtime::{Error, Result};
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{LockType, OnConflict};
use sea_orm::{DatabaseConnection, QueryOrder, QuerySelect, Set};

use super::entity::{learning_event, model, model_statistics};
use crate::domain::bandit::{
    GLOBAL, MAX_FEATURES, Statistics, StoredStatistics, action_key, group_key,
};
use crate::domain::features::Features;

/// Events folded per transaction: a fold that takes this many may have
/// left more waiting.
pub const FOLD_BATCH: usize = 2000;

/// The model's header: version, feature names, totals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelHeader {
    /// Raised by each fold.
    pub version: i64,
    /// Feature names by index.
    pub features: Vec<String>,
    /// Final outcomes learnt since the model was created.
    pub outcomes_learned: i64,
    /// When the last fold happened.
    pub update_time: Option<DateTime<Utc>>,
}

/// Reads and folds the model's statistics.
#[derive(Clone)]
pub struct ModelStore {
    db: DatabaseConnection,
}

fn header(row: model::Model) -> Result<ModelHeader> {
    Ok(ModelHeader {
        version: row.version,
        features: serde_json::from_value(row.features).map_err(Error::internal)?,
        outcomes_learned: row.outcomes_learned,
        update_time: row.update_time,
    })
}

fn stored(row: model_statistics::Model) -> Result<StoredStatistics> {
    let statistics = Statistics::from_bytes(
        row.dimension.max(0) as usize,
        &row.gram,
        &row.response,
        row.outcomes,
        row.accepted,
    )
    .ok_or_else(|| Error::internal(format!("statistics {} are corrupt", row.model_key)))?;
    Ok(StoredStatistics {
        key: row.model_key,
        group: row.group_key,
        statistics,
    })
}

impl ModelStore {
    /// The model in `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// The model's header.
    pub async fn header(&self) -> Result<ModelHeader> {
        let row = model::Entity::find_by_id(1)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::internal("the model row is missing"))?;
        header(row)
    }

    /// The header and every statistics row changed after `since`.
    pub async fn changed_since(&self, since: i64) -> Result<(ModelHeader, Vec<StoredStatistics>)> {
        let transaction = self.db.begin_write().await?;
        let row = model::Entity::find_by_id(1)
            .one(&transaction)
            .await?
            .ok_or_else(|| Error::internal("the model row is missing"))?;
        let header = header(row)?;
        if header.version <= since {
            return Ok((header, Vec::new()));
        }
        let rows = model_statistics::Entity::find()
            .filter(model_statistics::Column::Version.gt(since))
            .filter(model_statistics::Column::Version.lte(header.version))
            .all(&transaction)
            .await?;
        transaction.commit().await?;
        let rows = rows.into_iter().map(stored).collect::<Result<Vec<_>>>()?;
        Ok((header, rows))
    }

    /// Folds one batch of learning events into the statistics; returns how
    /// many were folded (0: nothing waited).
    pub async fn fold(&self) -> Result<usize> {
        let transaction = self.db.begin_write().await?;
        let row = model::Entity::find_by_id(1)
            .lock(LockType::Update)
            .one(&transaction)
            .await?
            .ok_or_else(|| Error::internal("the model row is missing"))?;
        let mut header = header(row)?;
        let events = learning_event::Entity::find()
            .order_by_asc(learning_event::Column::Id)
            .limit(FOLD_BATCH as u64)
            .all(&transaction)
            .await?;
        if events.is_empty() {
            return Ok(0);
        }
        let mut index: HashMap<String, usize> = header
            .features
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), i))
            .collect();
        // Feature names first, so every statistics row grows once.
        let mut parsed = Vec::with_capacity(events.len());
        for event in &events {
            let features: Features =
                serde_json::from_value(event.features.clone()).map_err(Error::internal)?;
            for name in features.keys() {
                if !index.contains_key(name) && header.features.len() < MAX_FEATURES {
                    index.insert(name.clone(), header.features.len());
                    header.features.push(name.clone());
                }
            }
            let x: Vec<(usize, f64)> = features
                .iter()
                .filter_map(|(name, value)| index.get(name).map(|&i| (i, *value)))
                .collect();
            parsed.push((event, x));
        }
        let dimension = header.features.len();
        let mut keys: BTreeMap<String, String> = BTreeMap::new();
        keys.insert(GLOBAL.into(), String::new());
        for (event, _) in &parsed {
            keys.insert(group_key(&event.group_key), String::new());
            keys.insert(action_key(&event.action_id), event.group_key.clone());
        }
        let mut statistics: HashMap<String, StoredStatistics> = model_statistics::Entity::find()
            .filter(model_statistics::Column::ModelKey.is_in(keys.keys().cloned()))
            .all(&transaction)
            .await?
            .into_iter()
            .map(|row| stored(row).map(|stored| (stored.key.clone(), stored)))
            .collect::<Result<_>>()?;
        for (key, group) in &keys {
            let entry = statistics
                .entry(key.clone())
                .or_insert_with(|| StoredStatistics {
                    key: key.clone(),
                    group: group.clone(),
                    statistics: Statistics::new(dimension),
                });
            entry.statistics.grow(dimension);
            if !group.is_empty() {
                entry.group = group.clone();
            }
        }
        for (event, x) in &parsed {
            for key in [
                GLOBAL.to_string(),
                group_key(&event.group_key),
                action_key(&event.action_id),
            ] {
                if let Some(entry) = statistics.get_mut(&key) {
                    entry.statistics.add(x, event.reward);
                }
            }
        }
        header.version += 1;
        header.outcomes_learned += parsed.len() as i64;
        let now = Utc::now();
        for entry in statistics.values() {
            let (gram, response) = entry.statistics.to_bytes();
            model_statistics::Entity::insert(model_statistics::ActiveModel {
                model_key: Set(entry.key.clone()),
                group_key: Set(entry.group.clone()),
                version: Set(header.version),
                dimension: Set(entry.statistics.dimension as i32),
                gram: Set(gram),
                response: Set(response),
                outcomes: Set(entry.statistics.outcomes),
                accepted: Set(entry.statistics.accepted),
            })
            .on_conflict(
                OnConflict::column(model_statistics::Column::ModelKey)
                    .update_columns([
                        model_statistics::Column::GroupKey,
                        model_statistics::Column::Version,
                        model_statistics::Column::Dimension,
                        model_statistics::Column::Gram,
                        model_statistics::Column::Response,
                        model_statistics::Column::Outcomes,
                        model_statistics::Column::Accepted,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&transaction)
            .await?;
        }
        let ids: Vec<i64> = events.iter().map(|event| event.id).collect();
        learning_event::Entity::delete_many()
            .filter(learning_event::Column::Id.is_in(ids))
            .exec(&transaction)
            .await?;
        model::Entity::update(model::ActiveModel {
            id: Set(1),
            version: Set(header.version),
            features: Set(serde_json::to_value(&header.features).map_err(Error::internal)?),
            outcomes_learned: Set(header.outcomes_learned),
            update_time: Set(Some(now)),
        })
        .exec(&transaction)
        .await?;
        transaction.commit().await?;
        Ok(parsed.len())
    }
}

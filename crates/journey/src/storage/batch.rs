//! Touchpoints stored a batch at a time: the touchpoints of one stream
//! message or one RecordTouchpoints call in one transaction, with one
//! multi-row insert each for the touchpoints, their events, the customers'
//! new positions and the transitions, instead of a transaction per
//! touchpoint (issue 8: a one-row transaction costs PostgreSQL about as much
//! as a multi-row insert of twenty rows).

use cairn_runtime::storage::BeginWrite;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cairn_runtime::Result;
use sea_orm::DatabaseTransaction;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;

use super::journeys::Step;
use super::{TouchpointStore, recorded_event, to_domain, touchpoint, touchpoint_row};
use crate::domain::Touchpoint;
use crate::domain::definition::JourneyDefinition;
use crate::domain::progress::RuleVariables;

/// Ids asked for in one `IN (…)` list.
const IDS_PER_QUERY: usize = 1000;

impl TouchpointStore {
    /// The stored touchpoints among `ids`, by id.
    pub async fn find_all(&self, ids: &[&str]) -> Result<HashMap<String, Touchpoint>> {
        let mut found = HashMap::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let rows = touchpoint::Entity::find()
                .filter(touchpoint::Column::Id.is_in(chunk.iter().map(|id| String::from(*id))))
                .all(&self.db)
                .await?;
            for row in rows {
                found.insert(row.id.clone(), to_domain(row)?);
            }
        }
        Ok(found)
    }

    /// Stores `touchpoints` (resolved, in the order received) with their
    /// events, and moves their customers through the journeys `heads`, in
    /// one transaction; `profiles` holds the `profile` variable of each
    /// profile when some condition reads it. Answers, for each touchpoint in
    /// order, the stored touchpoint and whether it was stored before (by an
    /// earlier call, or earlier in the same batch): a touchpoint is stored
    /// once however often it is sent.
    ///
    /// Either the whole batch is durable when this returns, or (on an error)
    /// none of it is and the caller may send it again.
    pub async fn record_batch(
        &self,
        touchpoints: Vec<Touchpoint>,
        heads: &[Arc<JourneyDefinition>],
        profiles: &HashMap<Uuid, serde_json::Value>,
    ) -> Result<Vec<Result<(Touchpoint, bool)>>> {
        // The first of several touchpoints with one id is the one stored.
        let mut seen = HashSet::new();
        let first: Vec<bool> = touchpoints
            .iter()
            .map(|touchpoint| seen.insert(touchpoint.id.clone()))
            .collect();
        let fresh: Vec<&Touchpoint> = touchpoints
            .iter()
            .zip(&first)
            .filter_map(|(touchpoint, &first)| first.then_some(touchpoint))
            .collect();
        let transaction = self.db.begin_write().await?;
        if !self.insert_all(&transaction, &fresh).await? {
            // Another call stored one of these ids after the caller looked:
            // the one-at-a-time path sorts out which, touchpoint by touchpoint.
            drop(transaction);
            return self.record_each(touchpoints, heads, profiles).await;
        }
        let events: Vec<_> = fresh
            .iter()
            .map(|touchpoint| recorded_event(touchpoint))
            .collect();
        self.outbox.enqueue_all(&transaction, &events).await?;
        let variables: Vec<(String, RuleVariables)> = fresh
            .iter()
            .map(|touchpoint| {
                let profile = profiles
                    .get(&touchpoint.profile_id)
                    .cloned()
                    .unwrap_or_else(crate::profiles::empty_rule_variable);
                (
                    touchpoint.profile_id.to_string(),
                    super::rule_variables(touchpoint, profile),
                )
            })
            .collect();
        let steps: Vec<Step<'_>> = fresh
            .iter()
            .zip(&variables)
            .map(|(touchpoint, (customer, variables))| Step {
                customer,
                touchpoint,
                variables,
            })
            .collect();
        self.journeys
            .progress_batch(&transaction, heads, &steps)
            .await?;
        transaction.commit().await?;
        self.outbox.committed();
        metrics::counter!("cairn_touchpoints_ingested_total").increment(fresh.len() as u64);
        let stored: HashMap<&str, &Touchpoint> = fresh
            .iter()
            .map(|touchpoint| (touchpoint.id.as_str(), *touchpoint))
            .collect();
        Ok(touchpoints
            .iter()
            .zip(&first)
            .map(|(touchpoint, &first)| {
                let original = stored
                    .get(touchpoint.id.as_str())
                    .copied()
                    .unwrap_or(touchpoint);
                Ok((original.clone(), !first))
            })
            .collect())
    }

    /// Inserts `touchpoints` unless their ids exist; false when some id
    /// already did (nothing is left half-done: the caller drops the
    /// transaction).
    async fn insert_all(
        &self,
        transaction: &DatabaseTransaction,
        touchpoints: &[&Touchpoint],
    ) -> Result<bool> {
        for chunk in touchpoints.chunks(IDS_PER_QUERY) {
            let rows = chunk
                .iter()
                .map(|touchpoint| touchpoint_row(touchpoint))
                .collect::<Result<Vec<_>>>()?;
            let inserted = touchpoint::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::column(touchpoint::Column::Id)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(transaction)
                .await?;
            if inserted != chunk.len() as u64 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The batch one touchpoint at a time, each in its own transaction.
    async fn record_each(
        &self,
        touchpoints: Vec<Touchpoint>,
        heads: &[Arc<JourneyDefinition>],
        profiles: &HashMap<Uuid, serde_json::Value>,
    ) -> Result<Vec<Result<(Touchpoint, bool)>>> {
        let mut results = Vec::with_capacity(touchpoints.len());
        for touchpoint in touchpoints {
            let profile = profiles
                .get(&touchpoint.profile_id)
                .cloned()
                .unwrap_or_else(crate::profiles::empty_rule_variable);
            results.push(self.record(touchpoint, heads, profile).await);
        }
        Ok(results)
    }
}

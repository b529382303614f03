//! Resolving many customer references at once (BatchResolveProfiles), with
//! the answer [`ProfileStore::resolve`] and [`ProfileStore::get`] give for
//! each one, at the cost of a few statements per batch instead of a few per
//! reference: one query for every identifier of the batch, one per level of
//! merges followed, one for suppressions, and the profiles of identifiers
//! seen for the first time created in one transaction of multi-row inserts.

use std::collections::{BTreeMap, HashMap, HashSet};

use cairn_contract::events::v1::ProfileCreated;
use cairn_contract::events::v1::change_event::Payload;
use cairn_runtime::outbox;
use cairn_runtime::storage::BeginWrite;
use cairn_runtime::{Error, Result};
use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::entity::{identifier, profile};
use super::{ProfileStore, SOURCE, attributes_to_json, parse_id, times_to_json};
use crate::domain::{Attributes, Identifier, IdentifierKind, ProfileState};

/// Longest merge chain followed, as [`super::live_row`] follows it: a
/// longer one would mean a cycle, which merges never make.
const MAX_MERGE_CHAIN: usize = 32;

/// One customer reference of a batch, checked and normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Wanted {
    /// By profile id: followed to the merge survivor, never created.
    ProfileId(Uuid),
    /// By identifier: its current holder, or a new profile when asked.
    Identifier(Identifier),
}

/// What a batch resolve found for one reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    /// The live profile (a merged-away id gives the survivor).
    pub profile_id: Uuid,
    /// True when this call created the profile, for the first reference
    /// to its identifier only.
    pub created: bool,
}

/// Why an identifier of a batch got no profile, decided before answering.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// It belongs to an erased person whose suppression is in force.
    Suppressed,
    /// Another call took it between our insert and our read.
    Moved,
}

impl Refusal {
    /// The error of [`ProfileStore::resolve`] for the same case.
    fn error(self) -> Error {
        match self {
            Self::Suppressed => Error::FailedPrecondition(
                "the identifier belongs to a person whose data was erased; it stays suppressed \
                 until an operator lifts the suppression"
                    .into(),
            ),
            Self::Moved => {
                Error::Aborted("the identifier changed owner during the call; retry".into())
            }
        }
    }
}

impl ProfileStore {
    /// The profile of each reference of `wanted`, in its order, as
    /// [`Self::resolve`] (identifiers, creating the missing ones when
    /// `create` is set) and [`Self::get`] (profile ids) answer one: an
    /// unknown reference is NOT_FOUND, an identifier of an erased person
    /// FAILED_PRECONDITION, each on its own. The outer error means the
    /// store failed and nothing is answered. Two concurrent batches naming
    /// one new identifier create one profile.
    pub async fn resolve_many(
        &self,
        wanted: &[Wanted],
        create: bool,
    ) -> Result<Vec<Result<Resolution>>> {
        let mut seen = HashSet::new();
        let identifiers: Vec<&Identifier> = wanted
            .iter()
            .filter_map(|reference| match reference {
                Wanted::Identifier(identifier) => Some(identifier),
                Wanted::ProfileId(_) => None,
            })
            .filter(|identifier| seen.insert(*identifier))
            .collect();
        let mut holders = self.holders(&identifiers).await?;
        let mut created: HashMap<Identifier, Uuid> = HashMap::new();
        let mut refused: HashMap<Identifier, Refusal> = HashMap::new();
        if create {
            let unknown: Vec<&Identifier> = identifiers
                .iter()
                .copied()
                .filter(|identifier| !holders.contains_key(*identifier))
                .collect();
            let suppressed = self.suppressor.suppressed(&self.db, &unknown).await?;
            let fresh: Vec<&Identifier> = unknown
                .into_iter()
                .filter(|identifier| !suppressed.contains(*identifier))
                .collect();
            for identifier in suppressed {
                refused.insert(identifier.clone(), Refusal::Suppressed);
            }
            let (won, lost) = self.create_for(&fresh).await?;
            // Another call created these first: use theirs.
            let theirs = self.holders(&lost).await?;
            for identifier in lost {
                if !theirs.contains_key(identifier) {
                    refused.insert(identifier.clone(), Refusal::Moved);
                }
            }
            holders.extend(theirs);
            for (identifier, id) in &won {
                holders.insert(identifier.clone(), id.to_string());
            }
            created = won;
        }
        let starts: HashSet<String> = holders
            .values()
            .cloned()
            .chain(wanted.iter().filter_map(|reference| match reference {
                Wanted::ProfileId(id) => Some(id.to_string()),
                Wanted::Identifier(_) => None,
            }))
            .collect();
        let live = self.live_ids(starts).await?;
        let mut announced = HashSet::new();
        Ok(wanted
            .iter()
            .map(|reference| match reference {
                Wanted::ProfileId(id) => live
                    .get(&id.to_string())
                    .map(|profile_id| Resolution {
                        profile_id: *profile_id,
                        created: false,
                    })
                    .ok_or_else(|| Error::not_found("profile", id.to_string())),
                Wanted::Identifier(identifier) => {
                    if let Some(refusal) = refused.get(identifier) {
                        return Err(refusal.error());
                    }
                    let holder = holders
                        .get(identifier)
                        .ok_or_else(|| Error::not_found("profile with", identifier.to_string()))?;
                    let profile_id = live
                        .get(holder)
                        .ok_or_else(|| Error::not_found("profile", holder.clone()))?;
                    Ok(Resolution {
                        profile_id: *profile_id,
                        created: created.contains_key(identifier)
                            && announced.insert(identifier.clone()),
                    })
                }
            })
            .collect())
    }

    /// The profile id (as stored) holding each of `identifiers` now, in one
    /// query: per kind, the values are one `IN` list over the index of held
    /// identifiers.
    async fn holders(&self, identifiers: &[&Identifier]) -> Result<HashMap<Identifier, String>> {
        if identifiers.is_empty() {
            return Ok(HashMap::new());
        }
        let mut by_kind: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for identifier in identifiers {
            by_kind
                .entry(identifier.kind().storage_name())
                .or_default()
                .push(identifier.value().to_string());
        }
        let mut any_kind = Condition::any();
        for (kind, values) in by_kind {
            any_kind = any_kind.add(
                Condition::all()
                    .add(identifier::Column::Kind.eq(kind))
                    .add(identifier::Column::Value.is_in(values)),
            );
        }
        let rows: Vec<(String, String, String)> = identifier::Entity::find()
            .select_only()
            .columns([
                identifier::Column::Kind,
                identifier::Column::Value,
                identifier::Column::ProfileId,
            ])
            .filter(identifier::Column::ValidUntil.is_null())
            .filter(any_kind)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(kind, value, profile_id)| {
                let kind = IdentifierKind::from_storage_name(&kind)?;
                Some((Identifier::from_stored(kind, value), profile_id))
            })
            .collect())
    }

    /// The live profile of each of `starts` (stored profile ids), following
    /// merges one level per query; a profile that does not exist (erased,
    /// never created) is absent from the answer.
    async fn live_ids(&self, starts: HashSet<String>) -> Result<HashMap<String, Uuid>> {
        let mut merged_into: HashMap<String, Option<String>> = HashMap::new();
        let mut pending: Vec<String> = starts.iter().cloned().collect();
        for _ in 0..=MAX_MERGE_CHAIN {
            if pending.is_empty() {
                break;
            }
            let rows: Vec<(String, Option<String>)> = profile::Entity::find()
                .select_only()
                .columns([profile::Column::Id, profile::Column::MergedInto])
                .filter(profile::Column::Id.is_in(std::mem::take(&mut pending)))
                .into_tuple()
                .all(&self.db)
                .await?;
            for (id, survivor) in rows {
                if let Some(survivor) = &survivor
                    && !merged_into.contains_key(survivor)
                {
                    pending.push(survivor.clone());
                }
                merged_into.insert(id, survivor);
            }
        }
        let mut live = HashMap::with_capacity(starts.len());
        for start in starts {
            let mut current = start.clone();
            let mut steps = 0;
            let found = loop {
                match merged_into.get(&current) {
                    None => break None,
                    Some(None) => break Some(current),
                    Some(Some(survivor)) if steps < MAX_MERGE_CHAIN => {
                        current = survivor.clone();
                        steps += 1;
                    }
                    Some(Some(_)) => {
                        return Err(Error::internal(format!(
                            "the merge chain of profile {start} does not end"
                        )));
                    }
                }
            };
            if let Some(id) = found {
                live.insert(start, parse_id(&id)?);
            }
        }
        Ok(live)
    }

    /// Creates one profile for each of `fresh` (identifiers no profile held
    /// when asked), as [`Self::resolve`] creates one, in one transaction:
    /// the profiles in one multi-row insert, their identifiers in another
    /// that skips any a concurrent call claimed in the meantime (whose
    /// profiles are dropped again), and their `profile.created` events.
    /// Returns the profiles created, and the identifiers another call won.
    async fn create_for<'a>(
        &self,
        fresh: &[&'a Identifier],
    ) -> Result<(HashMap<Identifier, Uuid>, Vec<&'a Identifier>)> {
        if fresh.is_empty() {
            return Ok((HashMap::new(), Vec::new()));
        }
        // Rows go in one order for every call, so that two calls inserting
        // the same identifiers wait for each other instead of deadlocking.
        let mut planned: Vec<(&Identifier, Uuid)> = fresh
            .iter()
            .map(|identifier| (*identifier, Uuid::now_v7()))
            .collect();
        planned.sort_by(|(a, _), (b, _)| {
            (a.kind().storage_name(), a.value()).cmp(&(b.kind().storage_name(), b.value()))
        });
        let now = Utc::now();
        let no_attributes = attributes_to_json(&Attributes::new())?;
        let no_times = times_to_json(std::iter::empty());
        let transaction = self.db.begin_write().await?;
        let mut profiles = Query::insert()
            .into_table(profile::Entity)
            .columns([
                profile::Column::Id,
                profile::Column::State,
                profile::Column::Attributes,
                profile::Column::AttributeTimes,
                profile::Column::CreatedAt,
                profile::Column::UpdatedAt,
            ])
            .to_owned();
        for (identifier, id) in &planned {
            let state = if identifier.is_personal() {
                ProfileState::Known
            } else {
                ProfileState::Anonymous
            };
            profiles
                .values([
                    id.to_string().into(),
                    state.storage_name().to_string().into(),
                    no_attributes.clone().into(),
                    no_times.clone().into(),
                    now.into(),
                    now.into(),
                ])
                .map_err(Error::internal)?;
        }
        transaction.execute(&profiles).await?;
        let mut identifiers = Query::insert()
            .into_table(identifier::Entity)
            .columns([
                identifier::Column::ProfileId,
                identifier::Column::Kind,
                identifier::Column::Value,
                identifier::Column::Shared,
                identifier::Column::ValidFrom,
            ])
            .on_conflict(
                OnConflict::columns([identifier::Column::Kind, identifier::Column::Value])
                    .target_and_where(Expr::col(identifier::Column::ValidUntil).is_null())
                    .do_nothing()
                    .to_owned(),
            )
            .returning_col(identifier::Column::ProfileId)
            .to_owned();
        for (identifier, id) in &planned {
            identifiers
                .values([
                    id.to_string().into(),
                    identifier.kind().storage_name().into(),
                    identifier.value().to_string().into(),
                    false.into(),
                    now.into(),
                ])
                .map_err(Error::internal)?;
        }
        let inserted: HashSet<String> = transaction
            .query_all(&identifiers)
            .await?
            .into_iter()
            .map(|row| row.try_get_by_index::<String>(0))
            .collect::<std::result::Result<_, _>>()?;
        let (won, lost): (Vec<_>, Vec<_>) = planned
            .into_iter()
            .partition(|(_, id)| inserted.contains(&id.to_string()));
        if !lost.is_empty() {
            profile::Entity::delete_many()
                .filter(profile::Column::Id.is_in(lost.iter().map(|(_, id)| id.to_string())))
                .exec(&transaction)
                .await?;
        }
        let events: Vec<_> = won
            .iter()
            .map(|(identifier, id)| {
                outbox::event(
                    SOURCE,
                    "profile.created",
                    &id.to_string(),
                    Payload::ProfileCreated(ProfileCreated {
                        anonymous: !identifier.is_personal(),
                    }),
                )
            })
            .collect();
        self.outbox.enqueue_all(&transaction, &events).await?;
        transaction.commit().await?;
        self.outbox.committed();
        let ids: Vec<Uuid> = won.iter().map(|(_, id)| *id).collect();
        self.refresh_after_creation(&ids).await;
        let lost = lost.into_iter().map(|(identifier, _)| identifier).collect();
        Ok((
            won.into_iter()
                .map(|(identifier, id)| (identifier.clone(), id))
                .collect(),
            lost,
        ))
    }
}

//! Merging, identifying and unmerging profiles, each in one transaction:
//! a crash leaves both profiles as they were or the merged one, never a mix.
//!
//! Profiles are locked in id order (`FOR UPDATE` on PostgreSQL) so that two
//! concurrent merges of the same pair cannot deadlock, and a call that lost
//! a race retries from the start and finds the merge already made.

use cairn_runtime::storage::BeginWrite;
use std::collections::{BTreeMap, HashMap};

use cairn_contract::events::v1::change_event::Payload;
use cairn_contract::events::v1::{ProfileMerged, ProfileUnmerged};
use cairn_runtime::outbox;
use cairn_runtime::{Error, Result};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::entity::{identifier, merge as merge_row, profile};
use super::{
    ProfileStore, SOURCE, attributes_to_json, insert_identifier, live_row, parse_id,
    times_from_json, times_to_json, unique_violation,
};
use crate::domain::{Attributes, Identifier, IdentifierKind, MergeRule, Profile, ProfileState};

/// Attempts of an identify or merge that lost a race before giving up with ABORTED.
const ATTEMPTS: usize = 5;

/// One merge of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeRecord {
    /// The merge id.
    pub id: Uuid,
    /// The profile that survived.
    pub survivor_id: Uuid,
    /// The profile merged into it.
    pub merged_id: Uuid,
    /// Why.
    pub reason: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When it was undone, if it was.
    pub undone_at: Option<DateTime<Utc>>,
}

/// What an identify call did.
#[derive(Debug, Clone)]
pub struct IdentifyOutcome {
    /// The customer's profile after the call.
    pub profile: Profile,
    /// True when the call created it.
    pub created: bool,
    /// Merges the call made.
    pub merges: Vec<MergeRecord>,
    /// Profiles the call linked but did not merge, and why.
    pub refused: Vec<(Uuid, String)>,
}

/// What a merge moved, kept to undo it.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    merged_identifier_ids: Vec<i64>,
    survivor_state: String,
    survivor_attributes: Attributes,
    merged_state: String,
    merged_attributes: Attributes,
    merged_times: BTreeMap<String, DateTime<Utc>>,
    #[serde(default)]
    merged_consent_ids: Vec<i64>,
    #[serde(default)]
    preferences_moved: bool,
}

impl ProfileStore {
    /// Merges profile `merged` into `survivor` on an operator's word: no
    /// safeguards apply. FAILED_PRECONDITION when they are one profile already.
    pub async fn merge(&self, survivor: Uuid, merged: Uuid, reason: &str) -> Result<MergeRecord> {
        if survivor == merged {
            return Err(Error::invalid(
                "merged_profile_id",
                "a profile cannot be merged with itself",
            ));
        }
        let transaction = self.db.begin_write().await?;
        let (survivor, merged) = lock_pair(&transaction, survivor, merged).await?;
        let record = self
            .merge_locked(&transaction, &survivor, &merged, reason)
            .await?;
        transaction.commit().await?;
        self.outbox.committed();
        self.refresh_after_change(record.survivor_id).await;
        Ok(record)
    }

    /// Links `identifiers` as one person's: attaches the unknown ones, and
    /// merges the profiles holding the others when `rule` allows (see
    /// [`MergeRule`]). Concurrent identify calls over the same identifiers
    /// end with one profile and lose nothing.
    pub async fn identify(
        &self,
        identifiers: &[Identifier],
        rule: &MergeRule,
    ) -> Result<IdentifyOutcome> {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            match self.identify_once(identifiers, rule).await {
                Err(Error::Aborted(reason)) => last = Some(reason),
                outcome => return outcome,
            }
        }
        Err(Error::Aborted(last.unwrap_or_else(|| {
            "concurrent changes kept winning; retry".into()
        })))
    }

    async fn identify_once(
        &self,
        identifiers: &[Identifier],
        rule: &MergeRule,
    ) -> Result<IdentifyOutcome> {
        let transaction = self.db.begin_write().await?;
        // Who owns each identifier now.
        let mut owners: Vec<(usize, Uuid, bool)> = Vec::new();
        for (index, wanted) in identifiers.iter().enumerate() {
            let row = identifier::Entity::find()
                .filter(identifier::Column::Kind.eq(wanted.kind().storage_name()))
                .filter(identifier::Column::Value.eq(wanted.value()))
                .filter(identifier::Column::ValidUntil.is_null())
                .one(&transaction)
                .await?;
            if let Some(row) = row {
                let owner = live_row(&transaction, parse_id(&row.profile_id)?).await?;
                owners.push((index, parse_id(&owner.id)?, row.shared));
            }
        }
        let mut profiles: Vec<Uuid> = owners.iter().map(|(_, owner, _)| *owner).collect();
        profiles.sort();
        profiles.dedup();

        if profiles.is_empty() {
            drop(transaction);
            let anonymous = !identifiers.iter().any(Identifier::is_personal);
            let new = crate::domain::NewProfile {
                identifiers: identifiers.to_vec(),
                attributes: Attributes::new(),
                anonymous,
                request_id: None,
            };
            return match self.create(new).await {
                Ok((profile, created)) => Ok(IdentifyOutcome {
                    profile,
                    created,
                    merges: Vec::new(),
                    refused: Vec::new(),
                }),
                Err(Error::AlreadyExists(_)) => Err(Error::Aborted(
                    "an identifier was claimed concurrently".into(),
                )),
                Err(other) => Err(other),
            };
        }

        // The survivor holds the call's strongest identifier.
        let strongest = owners
            .iter()
            .max_by_key(|(index, _, _)| rule.priority(identifiers[*index].kind()))
            .map(|(_, owner, _)| *owner)
            .ok_or_else(|| Error::internal("no owner"))?;
        let mut merges = Vec::new();
        let mut refused = Vec::new();
        for other in profiles.iter().copied().filter(|p| *p != strongest) {
            let link = owners
                .iter()
                .filter(|(_, owner, shared)| *owner == other && !shared)
                .map(|(index, _, _)| rule.priority(identifiers[*index].kind()))
                .max();
            let Some(link) = link else {
                refused.push((
                    other,
                    "linked only by identifiers marked shared".to_string(),
                ));
                continue;
            };
            let held = current_identifiers(&transaction, other).await?;
            let strongest_held = held
                .iter()
                .filter_map(|row| IdentifierKind::from_storage_name(&row.kind))
                .map(|kind| rule.priority(&kind))
                .max()
                .unwrap_or(0);
            if !rule.link_is_strong_enough(link, strongest_held) {
                refused.push((
                    other,
                    "the evidence is weaker than the identifiers the profile holds".to_string(),
                ));
                continue;
            }
            let survivor_held = current_identifiers(&transaction, strongest).await?;
            let mut per_kind: HashMap<&str, usize> = HashMap::new();
            for row in held.iter().chain(survivor_held.iter()) {
                *per_kind.entry(row.kind.as_str()).or_default() += 1;
            }
            if per_kind.values().any(|count| *count > rule.max_per_kind) {
                refused.push((
                    other,
                    format!(
                        "the merged profile would hold more than {} identifiers of one kind",
                        rule.max_per_kind
                    ),
                ));
                continue;
            }
            let (survivor_row, other_row) = lock_pair(&transaction, strongest, other)
                .await
                .map_err(|error| match error {
                    Error::FailedPrecondition(_) => Error::Aborted("merged concurrently".into()),
                    other => other,
                })?;
            merges.push(
                self.merge_locked(&transaction, &survivor_row, &other_row, "identify")
                    .await?,
            );
        }

        // Attach the identifiers nobody held, unless they are an erased person's.
        let unowned: Vec<Identifier> = identifiers
            .iter()
            .enumerate()
            .filter(|(index, _)| !owners.iter().any(|(owned, _, _)| owned == index))
            .map(|(_, identifier)| identifier.clone())
            .collect();
        self.suppressor.check(&transaction, &unowned).await?;
        let now = Utc::now();
        let mut attached_personal = false;
        for (index, wanted) in identifiers.iter().enumerate() {
            if owners.iter().any(|(owned, _, _)| *owned == index) {
                continue;
            }
            let inserted = insert_identifier(&transaction, strongest, wanted, now).await;
            match inserted {
                Ok(_) => attached_personal |= wanted.is_personal(),
                Err(error) if unique_violation(&error) => {
                    return Err(Error::Aborted(
                        "an identifier was claimed concurrently".into(),
                    ));
                }
                Err(error) => return Err(error.into()),
            }
        }
        if attached_personal {
            profile::Entity::update_many()
                .col_expr(
                    profile::Column::State,
                    Expr::value(ProfileState::Known.storage_name()),
                )
                .col_expr(profile::Column::UpdatedAt, Expr::value(now))
                .filter(profile::Column::Id.eq(strongest.to_string()))
                .exec(&transaction)
                .await?;
        }
        transaction.commit().await?;
        if !merges.is_empty() {
            self.outbox.committed();
            self.refresh_after_change(strongest).await;
        }
        Ok(IdentifyOutcome {
            profile: self.get(strongest).await?,
            created: false,
            merges,
            refused,
        })
    }

    /// Merges the locked, live `merged` into the locked, live `survivor`.
    async fn merge_locked(
        &self,
        transaction: &DatabaseTransaction,
        survivor: &profile::Model,
        merged: &profile::Model,
        reason: &str,
    ) -> Result<MergeRecord> {
        let now = Utc::now();
        let moved: Vec<i64> = current_identifiers(transaction, parse_id(&merged.id)?)
            .await?
            .iter()
            .map(|row| row.id)
            .collect();
        identifier::Entity::update_many()
            .col_expr(
                identifier::Column::ProfileId,
                Expr::value(survivor.id.clone()),
            )
            .filter(identifier::Column::Id.is_in(moved.clone()))
            .exec(transaction)
            .await?;

        let (survivor_attributes, survivor_times) = attributes_of(survivor)?;
        let (merged_attributes, merged_times) = attributes_of(merged)?;
        // Most recent observation wins, name by name.
        let mut attributes = survivor_attributes.clone();
        let mut times = survivor_times.clone();
        for (name, value) in &merged_attributes {
            let theirs = merged_times.get(name).copied().unwrap_or(merged.updated_at);
            let newer = times.get(name).is_none_or(|ours| theirs > *ours);
            if newer {
                attributes.insert(name.clone(), value.clone());
                times.insert(name.clone(), theirs);
            }
        }
        let known = survivor.state == ProfileState::Known.storage_name()
            || merged.state == ProfileState::Known.storage_name();
        let state = if known {
            ProfileState::Known
        } else {
            ProfileState::Anonymous
        };
        profile::ActiveModel {
            id: Set(survivor.id.clone()),
            state: Set(state.storage_name().into()),
            attributes: Set(attributes_to_json(&attributes)?),
            attribute_times: Set(Some(times_to_json(times.into_iter()))),
            updated_at: Set(now),
            ..Default::default()
        }
        .update(transaction)
        .await?;
        profile::ActiveModel {
            id: Set(merged.id.clone()),
            merged_into: Set(Some(survivor.id.clone())),
            updated_at: Set(now),
            ..Default::default()
        }
        .update(transaction)
        .await?;

        let id = Uuid::now_v7();
        let (merged_consent_ids, preferences_moved) =
            super::consent::merge_consents(transaction, &survivor.id, &merged.id, &id.to_string())
                .await?;
        super::segments::carry_memberships(transaction, &self.outbox, &survivor.id, &merged.id)
            .await?;
        super::groups::carry_groups(transaction, &survivor.id, &merged.id).await?;
        let snapshot = Snapshot {
            merged_consent_ids,
            preferences_moved,
            merged_identifier_ids: moved,
            survivor_state: survivor.state.clone(),
            survivor_attributes,
            merged_state: merged.state.clone(),
            merged_attributes,
            merged_times,
        };
        merge_row::ActiveModel {
            id: Set(id.to_string()),
            survivor_id: Set(survivor.id.clone()),
            merged_id: Set(merged.id.clone()),
            reason: Set(reason.to_string()),
            created_at: Set(now),
            snapshot: Set(serde_json::to_value(&snapshot).map_err(Error::internal)?),
            undone_at: Set(None),
        }
        .insert(transaction)
        .await?;
        let event = outbox::event(
            SOURCE,
            "profile.merged",
            &survivor.id,
            Payload::ProfileMerged(ProfileMerged {
                merged_profile_id: merged.id.clone(),
                merge_id: id.to_string(),
                reason: reason.to_string(),
            }),
        );
        self.outbox.enqueue(transaction, &event).await?;
        Ok(MergeRecord {
            id,
            survivor_id: parse_id(&survivor.id)?,
            merged_id: parse_id(&merged.id)?,
            reason: reason.to_string(),
            created_at: now,
            undone_at: None,
        })
    }

    /// Undoes merge `merge_id`: the merged profile gets back what it had;
    /// what was learned after the merge stays with the survivor (the stated
    /// rule: nobody can tell whose it was). Returns (survivor, restored).
    pub async fn unmerge(&self, merge_id: Uuid) -> Result<(Profile, Profile)> {
        let transaction = self.db.begin_write().await?;
        let record = merge_row::Entity::find_by_id(merge_id.to_string())
            .one(&transaction)
            .await?
            .ok_or_else(|| Error::not_found("merge", merge_id.to_string()))?;
        if record.undone_at.is_some() {
            return Err(Error::FailedPrecondition(format!(
                "merge {merge_id} was already undone"
            )));
        }
        let survivor_id = parse_id(&record.survivor_id)?;
        let merged_id = parse_id(&record.merged_id)?;
        let locked = profile::Entity::find()
            .filter(
                profile::Column::Id.is_in([record.survivor_id.clone(), record.merged_id.clone()]),
            )
            .order_by_asc(profile::Column::Id)
            .lock_exclusive()
            .all(&transaction)
            .await?;
        let survivor = locked
            .iter()
            .find(|row| row.id == record.survivor_id)
            .cloned();
        let merged = locked
            .iter()
            .find(|row| row.id == record.merged_id)
            .cloned();
        let (Some(survivor), Some(merged)) = (survivor, merged) else {
            return Err(Error::FailedPrecondition(
                "a profile of this merge was erased; it cannot be undone".into(),
            ));
        };
        if let Some(later) = &survivor.merged_into {
            return Err(Error::FailedPrecondition(format!(
                "profile {survivor_id} was merged into {later} after this merge; undo that merge first"
            )));
        }
        if merged.merged_into.as_deref() != Some(record.survivor_id.as_str()) {
            return Err(Error::FailedPrecondition(
                "the merged profile no longer points at the survivor".into(),
            ));
        }
        let snapshot: Snapshot =
            serde_json::from_value(record.snapshot.clone()).map_err(Error::internal)?;
        let now = Utc::now();

        identifier::Entity::update_many()
            .col_expr(
                identifier::Column::ProfileId,
                Expr::value(record.merged_id.clone()),
            )
            .filter(identifier::Column::Id.is_in(snapshot.merged_identifier_ids.clone()))
            .filter(identifier::Column::ProfileId.eq(record.survivor_id.clone()))
            .filter(identifier::Column::ValidUntil.is_null())
            .exec(&transaction)
            .await?;

        super::consent::unmerge_consents(
            &transaction,
            &record.survivor_id,
            &record.merged_id,
            &record.id,
            &snapshot.merged_consent_ids,
            snapshot.preferences_moved,
        )
        .await?;
        // The survivor keeps what it had, and what was observed after the merge.
        let (current, current_times) = attributes_of(&survivor)?;
        let mut attributes = Attributes::new();
        let mut times = BTreeMap::new();
        for (name, value) in current {
            let observed = current_times
                .get(&name)
                .copied()
                .unwrap_or(survivor.updated_at);
            if observed > record.created_at {
                attributes.insert(name.clone(), value);
                times.insert(name, observed);
            } else if let Some(before) = snapshot.survivor_attributes.get(&name) {
                attributes.insert(name.clone(), before.clone());
                times.insert(name, Ord::min(observed, record.created_at));
            }
        }
        let holds_personal = current_identifiers(&transaction, survivor_id)
            .await?
            .iter()
            .filter_map(|row| IdentifierKind::from_storage_name(&row.kind))
            .any(|kind| !matches!(kind, IdentifierKind::CookieId | IdentifierKind::DeviceId));
        let survivor_state = if holds_personal {
            ProfileState::Known.storage_name().to_string()
        } else {
            snapshot.survivor_state.clone()
        };
        profile::ActiveModel {
            id: Set(survivor.id.clone()),
            state: Set(survivor_state),
            attributes: Set(attributes_to_json(&attributes)?),
            attribute_times: Set(Some(times_to_json(times.into_iter()))),
            updated_at: Set(now),
            ..Default::default()
        }
        .update(&transaction)
        .await?;
        profile::ActiveModel {
            id: Set(merged.id.clone()),
            state: Set(snapshot.merged_state.clone()),
            attributes: Set(attributes_to_json(&snapshot.merged_attributes)?),
            attribute_times: Set(Some(times_to_json(
                snapshot.merged_times.clone().into_iter(),
            ))),
            merged_into: Set(None),
            updated_at: Set(now),
            ..Default::default()
        }
        .update(&transaction)
        .await?;
        merge_row::ActiveModel {
            id: Set(record.id.clone()),
            undone_at: Set(Some(now)),
            ..Default::default()
        }
        .update(&transaction)
        .await?;
        let event = outbox::event(
            SOURCE,
            "profile.unmerged",
            &record.survivor_id,
            Payload::ProfileUnmerged(ProfileUnmerged {
                restored_profile_id: record.merged_id.clone(),
                merge_id: record.id.clone(),
            }),
        );
        self.outbox.enqueue(&transaction, &event).await?;
        transaction.commit().await?;
        self.outbox.committed();
        Ok((self.get(survivor_id).await?, self.get(merged_id).await?))
    }

    /// The merges that involve profile `id` (as survivor or as merged), newest first.
    pub async fn merges_of(&self, id: Uuid) -> Result<Vec<MergeRecord>> {
        let rows = merge_row::Entity::find()
            .filter(
                merge_row::Column::SurvivorId
                    .eq(id.to_string())
                    .or(merge_row::Column::MergedId.eq(id.to_string())),
            )
            .order_by_desc(merge_row::Column::CreatedAt)
            .all(&self.db)
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(MergeRecord {
                    id: parse_id(&row.id)?,
                    survivor_id: parse_id(&row.survivor_id)?,
                    merged_id: parse_id(&row.merged_id)?,
                    reason: row.reason,
                    created_at: row.created_at,
                    undone_at: row.undone_at,
                })
            })
            .collect()
    }
}

async fn current_identifiers(
    db: &impl ConnectionTrait,
    profile: Uuid,
) -> Result<Vec<identifier::Model>> {
    Ok(identifier::Entity::find()
        .filter(identifier::Column::ProfileId.eq(profile.to_string()))
        .filter(identifier::Column::ValidUntil.is_null())
        .all(db)
        .await?)
}

fn attributes_of(row: &profile::Model) -> Result<(Attributes, BTreeMap<String, DateTime<Utc>>)> {
    let attributes: Attributes =
        serde_json::from_value(row.attributes.clone()).map_err(Error::internal)?;
    let times = times_from_json(
        row.attribute_times.as_ref(),
        row.updated_at,
        attributes.keys().cloned(),
    );
    Ok((attributes, times))
}

/// Locks the live profiles of `survivor` and `merged` in id order.
/// FAILED_PRECONDITION when they are one profile already; ABORTED when a
/// concurrent merge changed them between the read and the lock.
async fn lock_pair(
    transaction: &DatabaseTransaction,
    survivor: Uuid,
    merged: Uuid,
) -> Result<(profile::Model, profile::Model)> {
    let survivor_live = live_row(transaction, survivor).await?;
    let merged_live = live_row(transaction, merged).await?;
    if survivor_live.id == merged_live.id {
        return Err(Error::FailedPrecondition(format!(
            "profiles {survivor} and {merged} are already one profile ({})",
            survivor_live.id
        )));
    }
    let locked = profile::Entity::find()
        .filter(profile::Column::Id.is_in([survivor_live.id.clone(), merged_live.id.clone()]))
        .order_by_asc(profile::Column::Id)
        .lock_exclusive()
        .all(transaction)
        .await?;
    let find = |id: &str| {
        locked
            .iter()
            .find(|row| row.id == id && row.merged_into.is_none())
            .cloned()
    };
    match (find(&survivor_live.id), find(&merged_live.id)) {
        (Some(survivor), Some(merged)) => Ok((survivor, merged)),
        _ => Err(Error::Aborted(
            "a concurrent merge changed these profiles; retry".into(),
        )),
    }
}

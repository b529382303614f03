//! Erasure of a person: every row of the profile and the profiles merged
//! into it goes, in one transaction with the `profile.erased` event that
//! tells the other services to erase theirs. What stays is a suppression
//! record per identifier, a keyed hash and nothing readable, so that a late
//! or replayed event cannot re-create the person until the operator lifts it.

use cairn_contract::events::v1::ProfileErased;
use cairn_contract::events::v1::change_event::Payload;
use cairn_runtime::outbox;
use cairn_runtime::storage::BeginWrite;
use cairn_runtime::{Error, Result};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use uuid::Uuid;

use super::entity::{
    erasure, export, identifier, import_record, merge as merge_row, profile, request, suppression,
};
use super::{ProfileStore, SOURCE, live_row};
use crate::domain::{Identifier, IdentifierKind};

/// Computes the keyed hashes of identifiers and checks them against the
/// suppression records.
#[derive(Clone)]
pub struct Suppressor {
    key: SecretString,
}

impl Suppressor {
    /// Hashes with `key` (keep it secret: with it, a guessed identifier can
    /// be checked against the records).
    pub fn new(key: SecretString) -> Self {
        Self { key }
    }

    /// The keyed hash of an identifier, hex.
    pub fn hash(&self, kind: &IdentifierKind, value: &str) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes()) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        mac.update(kind.storage_name().as_bytes());
        mac.update(b"\x00");
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The keyed hash of a profile id, hex: what erasure records and the
    /// audit log keep instead of the id.
    pub fn hash_profile(&self, profile_id: &str) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes()) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        mac.update(b"profile_id\x00");
        mac.update(profile_id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// FAILED_PRECONDITION when any of `identifiers` belongs to an erased
    /// person whose suppression is in force.
    pub async fn check(&self, db: &impl ConnectionTrait, identifiers: &[Identifier]) -> Result<()> {
        if identifiers.is_empty() {
            return Ok(());
        }
        let hashes: Vec<String> = identifiers
            .iter()
            .map(|i| self.hash(i.kind(), i.value()))
            .collect();
        let suppressed = suppression::Entity::find()
            .filter(suppression::Column::IdentifierHash.is_in(hashes.clone()))
            .filter(suppression::Column::LiftedAt.is_null())
            .one(db)
            .await?;
        match suppressed {
            Some(row) => {
                let index = hashes
                    .iter()
                    .position(|h| *h == row.identifier_hash)
                    .unwrap_or(0);
                Err(Error::FailedPrecondition(format!(
                    "identifiers[{index}] belongs to a person whose data was erased; it stays suppressed until an operator lifts the suppression"
                )))
            }
            None => Ok(()),
        }
    }
}

impl Suppressor {
    /// Those of `identifiers` that belong to an erased person whose
    /// suppression is in force, in one query: what a batch resolve checks
    /// before creating profiles, as [`Self::check`] does for one.
    pub async fn suppressed<'a>(
        &self,
        db: &impl ConnectionTrait,
        identifiers: &[&'a Identifier],
    ) -> Result<std::collections::HashSet<&'a Identifier>> {
        if identifiers.is_empty() {
            return Ok(std::collections::HashSet::new());
        }
        let mut by_hash: std::collections::HashMap<String, &'a Identifier> = identifiers
            .iter()
            .map(|identifier| {
                (
                    self.hash(identifier.kind(), identifier.value()),
                    *identifier,
                )
            })
            .collect();
        let hashes: Vec<String> = suppression::Entity::find()
            .select_only()
            .column(suppression::Column::IdentifierHash)
            .filter(suppression::Column::IdentifierHash.is_in(by_hash.keys().cloned()))
            .filter(suppression::Column::LiftedAt.is_null())
            .into_tuple()
            .all(db)
            .await?;
        Ok(hashes
            .into_iter()
            .filter_map(|hash| by_hash.remove(&hash))
            .collect())
    }
}

/// An erasure request as recorded.
#[derive(Debug, Clone)]
pub struct Erasure {
    /// The request id.
    pub id: Uuid,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// When this service completed it.
    pub completed_at: Option<DateTime<Utc>>,
    /// The profile ids erased (the survivor and every profile merged into it).
    pub profile_ids: Vec<Uuid>,
}

impl ProfileStore {
    /// Erases the person of profile `id` (following merges to the survivor).
    pub async fn erase(&self, id: Uuid) -> Result<Erasure> {
        let received_at = Utc::now();
        let transaction = self.db.begin_write().await?;
        let live = live_row(&transaction, id).await?;
        // The survivor and, level by level, every profile merged into it.
        let mut all = vec![live.id.clone()];
        let mut frontier = vec![live.id.clone()];
        while !frontier.is_empty() {
            let children: Vec<String> = profile::Entity::find()
                .filter(profile::Column::MergedInto.is_in(frontier.clone()))
                .all(&transaction)
                .await?
                .into_iter()
                .map(|row| row.id)
                .collect();
            all.extend(children.iter().cloned());
            frontier = children;
        }
        let erasure_id = Uuid::now_v7();
        let held = identifier::Entity::find()
            .filter(identifier::Column::ProfileId.is_in(all.clone()))
            .all(&transaction)
            .await?;
        for row in &held {
            let Some(kind) = IdentifierKind::from_storage_name(&row.kind) else {
                continue;
            };
            // Released identifiers are someone else's now (a recycled number): not suppressed.
            if row.valid_until.is_some() {
                continue;
            }
            suppression::Entity::insert(suppression::ActiveModel {
                identifier_hash: Set(self.suppressor.hash(&kind, &row.value)),
                erasure_id: Set(erasure_id.to_string()),
                created_at: Set(received_at),
                lifted_at: Set(None),
            })
            .on_conflict(
                OnConflict::column(suppression::Column::IdentifierHash)
                    .update_columns([
                        suppression::Column::ErasureId,
                        suppression::Column::CreatedAt,
                        suppression::Column::LiftedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&transaction)
            .await?;
        }
        identifier::Entity::delete_many()
            .filter(identifier::Column::ProfileId.is_in(all.clone()))
            .exec(&transaction)
            .await?;
        merge_row::Entity::delete_many()
            .filter(
                merge_row::Column::SurvivorId
                    .is_in(all.clone())
                    .or(merge_row::Column::MergedId.is_in(all.clone())),
            )
            .exec(&transaction)
            .await?;
        super::consent::erase_consents(&transaction, &all).await?;
        super::segments::erase_segments(&transaction, &all).await?;
        super::groups::erase_groups(&transaction, &all).await?;
        import_record::Entity::delete_many()
            .filter(import_record::Column::ProfileId.is_in(all.clone()))
            .exec(&transaction)
            .await?;
        export::Entity::delete_many()
            .filter(export::Column::ProfileId.is_in(all.clone()))
            .exec(&transaction)
            .await?;
        request::Entity::delete_many()
            .filter(request::Column::ProfileId.is_in(all.clone()))
            .exec(&transaction)
            .await?;
        // Tombstones of merged profiles point at the survivor: drop them first.
        profile::Entity::update_many()
            .col_expr(
                profile::Column::MergedInto,
                Expr::value(Option::<String>::None),
            )
            .filter(profile::Column::Id.is_in(all.clone()))
            .exec(&transaction)
            .await?;
        profile::Entity::delete_many()
            .filter(profile::Column::Id.is_in(all.clone()))
            .exec(&transaction)
            .await?;
        let completed_at = Utc::now();
        erasure::ActiveModel {
            id: Set(erasure_id.to_string()),
            profile_hash: Set(self.suppressor.hash_profile(&live.id)),
            received_at: Set(received_at),
            completed_at: Set(Some(completed_at)),
        }
        .insert(&transaction)
        .await?;
        let merged: Vec<String> = all.iter().skip(1).cloned().collect();
        let event = outbox::event(
            SOURCE,
            "profile.erased",
            &live.id,
            Payload::ProfileErased(ProfileErased {
                merged_profile_ids: merged,
                erasure_request_id: erasure_id.to_string(),
            }),
        );
        self.outbox.enqueue(&transaction, &event).await?;
        transaction.commit().await?;
        self.outbox.committed();
        let profile_ids = all
            .iter()
            .filter_map(|id| Uuid::parse_str(id).ok())
            .collect();
        Ok(Erasure {
            id: erasure_id,
            received_at,
            completed_at: Some(completed_at),
            profile_ids,
        })
    }

    /// Lifts the suppression of `identifier`, so it can be claimed again.
    /// NOT_FOUND when it is not suppressed.
    pub async fn lift_suppression(&self, identifier: &Identifier) -> Result<()> {
        let hash = self.suppressor.hash(identifier.kind(), identifier.value());
        let lifted = suppression::Entity::update_many()
            .col_expr(suppression::Column::LiftedAt, Expr::value(Some(Utc::now())))
            .filter(suppression::Column::IdentifierHash.eq(hash))
            .filter(suppression::Column::LiftedAt.is_null())
            .exec(&self.db)
            .await?;
        if lifted.rows_affected == 0 {
            return Err(Error::not_found("suppression of", identifier.to_string()));
        }
        Ok(())
    }

    /// The erasure request `id`; its profile ids are not kept (only their
    /// keyed hash), so `profile_ids` is empty.
    pub async fn erasure(&self, id: Uuid) -> Result<Erasure> {
        let row = erasure::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("erasure request", id.to_string()))?;
        Ok(Erasure {
            id,
            received_at: row.received_at,
            completed_at: row.completed_at,
            profile_ids: Vec::new(),
        })
    }
}

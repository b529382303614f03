//! The audit log of access to personal data: every read of a profile, every
//! export and erasure, with who (the token's subject, and the customer a
//! front end acted for), what (the RPC) and when; never the data, and the
//! person only as a keyed hash of their profile id, so that the log itself
//! holds nothing an erasure must remove.
//!
//! Cairn's own services reading profiles to do their work (the journey
//! service resolving a touchpoint's customer) are not logged: they would
//! write a row per touchpoint, and their access follows from the calls that
//! are logged where they enter the suite.

use cairn_runtime::Result;
use cairn_runtime::ServiceKind;
use cairn_runtime::auth::Principal;
use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use super::ProfileStore;
use super::entity::audit;

/// One entry of the audit log, as read back.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// When.
    pub occurred_at: chrono::DateTime<Utc>,
    /// Who: the token's subject.
    pub subject: String,
    /// The keyed hash of the customer a customer-facing token acted for.
    pub acting_for: Option<String>,
    /// What: the RPC.
    pub action: String,
    /// Whose: the keyed hash of the person's profile id.
    pub person_hash: Option<String>,
    /// How many profiles the access returned.
    pub records: i32,
}

/// True for the tokens Cairn's services mint for their calls to each other.
fn is_cairn_service(caller: &Principal) -> bool {
    ServiceKind::ALL
        .iter()
        .any(|service| caller.subject == format!("cairn-{}", service.name()))
}

impl ProfileStore {
    /// Writes that `caller` did `action` on the data of `person` (none: a
    /// list), returning `records` profiles. An error fails the access: data
    /// is not handed out unrecorded.
    pub async fn audit(
        &self,
        caller: &Principal,
        action: &str,
        person: Option<Uuid>,
        records: usize,
    ) -> Result<()> {
        if is_cairn_service(caller) {
            return Ok(());
        }
        audit::ActiveModel {
            id: Set(Uuid::now_v7().to_string()),
            occurred_at: Set(Utc::now()),
            subject: Set(caller.subject.chars().take(256).collect()),
            acting_for: Set(caller
                .customer()
                .map(|id| self.suppressor.hash_profile(&id.to_string()))),
            action: Set(action.to_string()),
            person_hash: Set(person.map(|id| self.suppressor.hash_profile(&id.to_string()))),
            records: Set(i32::try_from(records).unwrap_or(i32::MAX)),
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    /// Writes that `caller` did `action` on the data of each of `persons`,
    /// one profile each, in one multi-row insert: what a batch read (a
    /// batch resolve) records, as [`Self::audit`] records a single read.
    /// An error fails the access.
    pub async fn audit_each(
        &self,
        caller: &Principal,
        action: &str,
        persons: &[Uuid],
    ) -> Result<()> {
        if is_cairn_service(caller) || persons.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let subject: String = caller.subject.chars().take(256).collect();
        let acting_for = caller
            .customer()
            .map(|id| self.suppressor.hash_profile(&id.to_string()));
        let entries = persons.iter().map(|person| audit::ActiveModel {
            id: Set(Uuid::now_v7().to_string()),
            occurred_at: Set(now),
            subject: Set(subject.clone()),
            acting_for: Set(acting_for.clone()),
            action: Set(action.to_string()),
            person_hash: Set(Some(self.suppressor.hash_profile(&person.to_string()))),
            records: Set(1),
        });
        audit::Entity::insert_many(entries)
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    /// The audit entries about `person`, oldest first: what an auditor (or
    /// the person, asking who saw their data) reads.
    pub async fn audit_trail(&self, person: Uuid) -> Result<Vec<AuditEntry>> {
        let rows = audit::Entity::find()
            .filter(audit::Column::PersonHash.eq(self.suppressor.hash_profile(&person.to_string())))
            .order_by_asc(audit::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| AuditEntry {
                occurred_at: row.occurred_at,
                subject: row.subject,
                acting_for: row.acting_for,
                action: row.action,
                person_hash: row.person_hash,
                records: row.records,
            })
            .collect())
    }
}

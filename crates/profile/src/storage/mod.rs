//! The profile service's storage: profiles and identifiers in PostgreSQL or
//! SQLite, every write in one transaction with its change events.

mod attributes;
mod audit;
mod consent;
mod entity;
mod erasure;
mod groups;
mod identifiers;
mod merge;
pub mod migration;
mod portability;
mod resolution;
mod segments;

pub use audit::AuditEntry;
pub use consent::parse_time_zone;
pub use erasure::{Erasure, Suppressor};
pub use groups::{GroupRecord, ReferralRecord};
pub use merge::{IdentifyOutcome, MergeRecord};
pub use portability::PersonalData;
pub use resolution::{Resolution, Wanted};
pub use segments::{SEGMENT_VARIABLES, SegmentRecord};

use cairn_contract::events::v1::ProfileCreated;
use cairn_contract::events::v1::change_event::Payload;
use cairn_runtime::outbox::{self, Outbox};
use cairn_runtime::storage::BeginWrite;
use cairn_runtime::{Error, Result};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, SqlErr,
};
use uuid::Uuid;

use crate::domain::{
    Attributes, Identifier, IdentifierKind, NewProfile, Profile, ProfileIdentifier, ProfileState,
};
use entity::{identifier, profile, request};

/// The name this service publishes under.
const SOURCE: &str = "profile";

/// Profiles in the database.
#[derive(Clone)]
pub struct ProfileStore {
    db: DatabaseConnection,
    outbox: Outbox,
    suppressor: Suppressor,
    audit_writer: audit::AuditWriter,
}

/// What ListProfiles keeps.
#[derive(Debug, Clone, Default)]
pub struct ProfileFilter {
    /// Only profiles in this state.
    pub state: Option<ProfileState>,
    /// Only members of this segment.
    pub segment_id: Option<String>,
    /// Only profiles holding an identifier of this kind now.
    pub identifier_kind: Option<IdentifierKind>,
}

/// One page of profiles.
pub struct ProfilePage {
    /// The profiles.
    pub profiles: Vec<Profile>,
    /// Where the next page starts, if there is one.
    pub next: Option<String>,
}

impl ProfileStore {
    /// A store on `db`, writing change events to `outbox` and hashing
    /// erased identifiers with `suppressor`. Starts the store's audit-log
    /// writer (group commit, see `audit.rs`), so it must be called inside
    /// the Tokio runtime; the writer ends when the last clone is dropped.
    pub fn new(db: DatabaseConnection, outbox: Outbox, suppressor: Suppressor) -> Self {
        let (audit_writer, _) = audit::AuditWriter::start(db.clone());
        Self {
            db,
            outbox,
            suppressor,
            audit_writer,
        }
    }

    /// The database, for readiness checks.
    pub fn database(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Creates a profile. ALREADY_EXISTS when an identifier belongs to
    /// another profile; a repeated `request_id` returns the first profile.
    pub async fn create(&self, new: NewProfile) -> Result<(Profile, bool)> {
        if let Some(request_id) = &new.request_id
            && let Some(existing) = request::Entity::find_by_id(request_id.clone())
                .one(&self.db)
                .await?
        {
            return Ok((self.get(parse_id(&existing.profile_id)?).await?, false));
        }
        self.suppressor.check(&self.db, &new.identifiers).await?;
        crate::domain::check_types(
            "attributes",
            &new.attributes,
            &self.attribute_definitions().await?,
        )?;
        let transaction = self.db.begin_write().await?;
        let now = Utc::now();
        let id = Uuid::now_v7();
        let state = if new.anonymous {
            ProfileState::Anonymous
        } else {
            ProfileState::Known
        };
        profile::ActiveModel {
            id: Set(id.to_string()),
            state: Set(state.storage_name().into()),
            attributes: Set(attributes_to_json(&new.attributes)?),
            attribute_times: Set(Some(times_to_json(
                new.attributes.keys().map(|name| (name.clone(), now)),
            ))),
            created_at: Set(now),
            updated_at: Set(now),
            merged_into: Set(None),
        }
        .insert(&transaction)
        .await?;
        for (index, identifier) in new.identifiers.iter().enumerate() {
            let inserted = insert_identifier(&transaction, id, identifier, now).await;
            if let Err(error) = inserted {
                return Err(match unique_violation(&error) {
                    true => Error::AlreadyExists(format!(
                        "identifiers[{index}] ({identifier}) already belongs to another profile; resolve it or merge the profiles"
                    )),
                    false => error.into(),
                });
            }
        }
        if let Some(request_id) = &new.request_id {
            let recorded = request::ActiveModel {
                request_id: Set(request_id.clone()),
                profile_id: Set(id.to_string()),
                created_at: Set(now),
            }
            .insert(&transaction)
            .await;
            if let Err(error) = recorded {
                // A concurrent retry with the same key won: answer with its profile.
                if unique_violation(&error) {
                    drop(transaction);
                    return Box::pin(self.create(new)).await;
                }
                return Err(error.into());
            }
        }
        let event = outbox::event(
            SOURCE,
            "profile.created",
            &id.to_string(),
            Payload::ProfileCreated(ProfileCreated {
                anonymous: new.anonymous,
            }),
        );
        self.outbox.enqueue(&transaction, &event).await?;
        transaction.commit().await?;
        self.outbox.committed();
        self.refresh_after_change(id).await;
        Ok((self.get(id).await?, true))
    }

    /// The profile `id`, or the survivor it was merged into; NOT_FOUND when
    /// there is none.
    pub async fn get(&self, id: Uuid) -> Result<Profile> {
        let row = live_row(&self.db, id).await?;
        let id = parse_id(&row.id)?;
        let identifiers = identifier::Entity::find()
            .filter(identifier::Column::ProfileId.eq(id.to_string()))
            .order_by_asc(identifier::Column::Id)
            .all(&self.db)
            .await?;
        to_profile(row, identifiers)
    }

    /// The profile that holds `identifier` now, if any.
    pub async fn find_by_identifier(&self, identifier: &Identifier) -> Result<Option<Profile>> {
        let row = identifier::Entity::find()
            .filter(identifier::Column::Kind.eq(identifier.kind().storage_name()))
            .filter(identifier::Column::Value.eq(identifier.value()))
            .filter(identifier::Column::ValidUntil.is_null())
            .one(&self.db)
            .await?;
        match row {
            Some(row) => Ok(Some(self.get(parse_id(&row.profile_id)?).await?)),
            None => Ok(None),
        }
    }

    /// The profile holding `identifier`, creating an anonymous (or, for a
    /// personal identifier, known) one when `create` is set and none does.
    /// Two concurrent first sights of one identifier create one profile.
    pub async fn resolve(&self, identifier: &Identifier, create: bool) -> Result<(Profile, bool)> {
        if let Some(profile) = self.find_by_identifier(identifier).await? {
            return Ok((profile, false));
        }
        if !create {
            return Err(Error::not_found("profile with", identifier.to_string()));
        }
        let new = NewProfile {
            identifiers: vec![identifier.clone()],
            attributes: Attributes::new(),
            anonymous: !identifier.is_personal(),
            request_id: None,
        };
        match self.create(new).await {
            Ok(created) => Ok(created),
            // Another call created it first: use theirs.
            Err(Error::AlreadyExists(_)) => match self.find_by_identifier(identifier).await? {
                Some(profile) => Ok((profile, false)),
                None => Err(Error::Aborted(
                    "the identifier changed owner during the call; retry".into(),
                )),
            },
            Err(other) => Err(other),
        }
    }

    /// Profiles in creation order, after `after` (a position from a previous page).
    pub async fn list(
        &self,
        limit: u64,
        after: Option<String>,
        filter: &ProfileFilter,
    ) -> Result<ProfilePage> {
        let state = filter.state;
        let mut query = profile::Entity::find()
            .filter(profile::Column::MergedInto.is_null())
            .order_by_asc(profile::Column::CreatedAt)
            .order_by_asc(profile::Column::Id)
            .limit(limit + 1);
        if let Some(state) = state {
            query = query.filter(profile::Column::State.eq(state.storage_name()));
        }
        if let Some(segment_id) = &filter.segment_id {
            let members = Query::select()
                .column(entity::segment_member::Column::ProfileId)
                .from(entity::segment_member::Entity)
                .and_where(
                    Expr::col(entity::segment_member::Column::SegmentId).eq(segment_id.clone()),
                )
                .to_owned();
            query = query.filter(profile::Column::Id.in_subquery(members));
        }
        if let Some(kind) = &filter.identifier_kind {
            let holders = Query::select()
                .column(identifier::Column::ProfileId)
                .from(identifier::Entity)
                .and_where(Expr::col(identifier::Column::Kind).eq(kind.storage_name()))
                .and_where(Expr::col(identifier::Column::ValidUntil).is_null())
                .to_owned();
            query = query.filter(profile::Column::Id.in_subquery(holders));
        }
        if let Some(after) = after {
            let (created_at, id) = parse_position(&after)?;
            query = query.filter(
                Expr::col(profile::Column::CreatedAt)
                    .gt(created_at)
                    .or(Expr::col(profile::Column::CreatedAt)
                        .eq(created_at)
                        .and(Expr::col(profile::Column::Id).gt(id))),
            );
        }
        let mut rows = query.all(&self.db).await?;
        let next = if rows.len() as u64 > limit {
            rows.truncate(limit as usize);
            rows.last()
                .map(|row| format!("{}|{}", row.created_at.to_rfc3339(), row.id))
        } else {
            None
        };
        let ids: Vec<String> = rows.iter().map(|row| row.id.clone()).collect();
        let mut identifiers = identifier::Entity::find()
            .filter(identifier::Column::ProfileId.is_in(ids))
            .order_by_asc(identifier::Column::Id)
            .all(&self.db)
            .await?;
        let mut profiles = Vec::with_capacity(rows.len());
        for row in rows {
            let (own, rest): (Vec<_>, Vec<_>) = identifiers
                .into_iter()
                .partition(|i| i.profile_id == row.id);
            identifiers = rest;
            profiles.push(to_profile(row, own)?);
        }
        Ok(ProfilePage { profiles, next })
    }
}

/// Gives `identifier` to profile `id` from `now` on. A unique violation
/// means another profile holds it.
pub(crate) async fn insert_identifier(
    db: &impl ConnectionTrait,
    id: Uuid,
    identifier: &Identifier,
    now: DateTime<Utc>,
) -> std::result::Result<(), DbErr> {
    identifier::ActiveModel {
        profile_id: Set(id.to_string()),
        kind: Set(identifier.kind().storage_name()),
        value: Set(identifier.value().to_string()),
        shared: Set(false),
        valid_from: Set(now),
        valid_until: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await
    .map(|_| ())
}

/// The live row of profile `id`, following merges to the survivor.
pub(crate) async fn live_row(db: &impl ConnectionTrait, id: Uuid) -> Result<profile::Model> {
    let mut current = id.to_string();
    // A chain longer than this would mean a cycle, which merges never make.
    for _ in 0..32 {
        let row = profile::Entity::find_by_id(current.clone())
            .one(db)
            .await?
            .ok_or_else(|| Error::not_found("profile", id.to_string()))?;
        match &row.merged_into {
            Some(survivor) => current = survivor.clone(),
            None => return Ok(row),
        }
    }
    Err(Error::internal(format!(
        "the merge chain of profile {id} does not end"
    )))
}

pub(crate) fn times_to_json(
    times: impl Iterator<Item = (String, DateTime<Utc>)>,
) -> serde_json::Value {
    serde_json::Value::Object(
        times
            .map(|(name, time)| (name, serde_json::Value::String(time.to_rfc3339())))
            .collect(),
    )
}

pub(crate) fn times_from_json(
    json: Option<&serde_json::Value>,
    fallback: DateTime<Utc>,
    names: impl Iterator<Item = String>,
) -> std::collections::BTreeMap<String, DateTime<Utc>> {
    names
        .map(|name| {
            let time = json
                .and_then(|json| json.get(&name))
                .and_then(|value| value.as_str())
                .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
                .map(|time| time.with_timezone(&Utc))
                .unwrap_or(fallback);
            (name, time)
        })
        .collect()
}

pub(crate) fn unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

pub(crate) fn parse_id(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text)
        .map_err(|_| Error::internal(format!("stored profile id {text} is not a UUID")))
}

fn parse_position(position: &str) -> Result<(DateTime<Utc>, String)> {
    let invalid = || Error::invalid("page_token", "not a token of this listing");
    let (time, id) = position.split_once('|').ok_or_else(invalid)?;
    let time = DateTime::parse_from_rfc3339(time)
        .map_err(|_| invalid())?
        .with_timezone(&Utc);
    Ok((time, id.to_string()))
}

pub(crate) fn attributes_to_json(attributes: &Attributes) -> Result<serde_json::Value> {
    serde_json::to_value(attributes).map_err(Error::internal)
}

pub(crate) fn to_profile(
    row: profile::Model,
    identifiers: Vec<identifier::Model>,
) -> Result<Profile> {
    let attributes: Attributes = serde_json::from_value(row.attributes).map_err(Error::internal)?;
    let identifiers = identifiers
        .into_iter()
        .filter_map(|row| {
            let kind = IdentifierKind::from_storage_name(&row.kind)?;
            Some(ProfileIdentifier {
                identifier: Identifier::from_stored(kind, row.value),
                shared: row.shared,
                valid_from: row.valid_from,
                valid_until: row.valid_until,
            })
        })
        .collect();
    Ok(Profile {
        id: parse_id(&row.id)?,
        state: ProfileState::from_storage_name(&row.state),
        identifiers,
        attributes,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Ok when the database answers.
pub async fn ping(db: &impl ConnectionTrait) -> Result<()> {
    db.execute_unprepared("SELECT 1")
        .await
        .map(|_| ())
        .map_err(|_| Error::Unavailable("the profile database does not answer".into()))
}

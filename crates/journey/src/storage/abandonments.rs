//! Detected abandonments and the re-engagement work they carry.
//!
//! A row is written once per customer, journey, stage and key (the unique
//! index), in the transaction that marks the position abandoned; its
//! `next_attempt_at` makes it work for whichever replica claims it first
//! (FOR UPDATE SKIP LOCKED), and a failed attempt only moves that time on,
//! so re-engagement is retried, never dropped.

use cairn_runtime::Result;
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, QueryOrder,
    QuerySelect, Set,
};

/// `journey_abandonments` rows.
pub mod abandonment {
    use sea_orm::entity::prelude::*;

    /// One detected abandonment.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "journey_abandonments")]
    pub struct Model {
        /// Its id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The customer it belongs to now.
        pub customer_id: String,
        /// The profile that stalled.
        pub profile_id: String,
        /// The journey.
        pub journey_id: String,
        /// The stage stalled in.
        pub stage: String,
        /// The stage's key (cart, order) or the time the stage was entered.
        pub stage_key: String,
        /// When it was detected.
        pub detected_at: DateTimeUtc,
        /// "pending", "retrying", "sent" or "nothing_to_send".
        pub status: String,
        /// The decision asked for.
        pub decision_id: Option<String>,
        /// The action chosen.
        pub action_id: Option<String>,
        /// The channel it goes out on.
        pub channel: Option<i32>,
        /// Attempts so far.
        pub attempts: i32,
        /// When to try (again); empty when done.
        pub next_attempt_at: Option<DateTimeUtc>,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use abandonment::Model as Abandonment;

/// Records an abandonment within the caller's transaction; `None` when this
/// one (customer, journey, stage, key) was recorded before.
pub async fn record(
    transaction: &DatabaseTransaction,
    customer: &str,
    profile_id: &str,
    journey_id: &str,
    stage: &str,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>> {
    let id = Uuid::now_v7().to_string();
    let inserted = abandonment::Entity::insert(abandonment::ActiveModel {
        id: Set(id.clone()),
        customer_id: Set(customer.to_string()),
        profile_id: Set(profile_id.to_string()),
        journey_id: Set(journey_id.to_string()),
        stage: Set(stage.to_string()),
        stage_key: Set(key.chars().take(256).collect()),
        detected_at: Set(now),
        status: Set("pending".into()),
        decision_id: Set(None),
        action_id: Set(None),
        channel: Set(None),
        attempts: Set(0),
        next_attempt_at: Set(Some(now)),
    })
    .on_conflict(
        OnConflict::columns([
            abandonment::Column::CustomerId,
            abandonment::Column::JourneyId,
            abandonment::Column::Stage,
            abandonment::Column::StageKey,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(transaction)
    .await?;
    Ok((inserted == 1).then_some(id))
}

/// Claims up to `limit` abandonments whose re-engagement is due, locked for
/// the caller's transaction; other replicas skip them.
pub async fn claim_due(
    transaction: &DatabaseTransaction,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Abandonment>> {
    let mut query = abandonment::Entity::find()
        .filter(abandonment::Column::NextAttemptAt.lte(now))
        .order_by_asc(abandonment::Column::NextAttemptAt)
        .limit(limit);
    if transaction.get_database_backend() == DatabaseBackend::Postgres {
        query = query.lock_with_behavior(
            sea_orm::sea_query::LockType::Update,
            sea_orm::sea_query::LockBehavior::SkipLocked,
        );
    }
    Ok(query.all(transaction).await?)
}

/// Saves what became of an attempt.
pub async fn save(connection: &impl ConnectionTrait, row: Abandonment) -> Result<()> {
    let model: abandonment::ActiveModel = row.into();
    abandonment::Entity::update(model.reset_all())
        .exec(connection)
        .await?;
    Ok(())
}

/// What ListAbandonments selects.
#[derive(Debug, Clone, Default)]
pub struct AbandonmentFilter {
    /// Only this customer's.
    pub customer: Option<String>,
    /// Only this journey's.
    pub journey_id: Option<String>,
    /// Detected from.
    pub start: Option<DateTime<Utc>>,
    /// Detected before.
    pub end: Option<DateTime<Utc>>,
}

/// Abandonments newest first, after the page position `after` (an id).
pub async fn list(
    db: &DatabaseConnection,
    filter: &AbandonmentFilter,
    limit: u64,
    after: Option<String>,
) -> Result<(Vec<Abandonment>, Option<String>)> {
    let mut query = abandonment::Entity::find()
        .order_by_desc(abandonment::Column::Id)
        .limit(limit + 1);
    if let Some(customer) = &filter.customer {
        query = query.filter(abandonment::Column::CustomerId.eq(customer.clone()));
    }
    if let Some(journey_id) = &filter.journey_id {
        query = query.filter(abandonment::Column::JourneyId.eq(journey_id.clone()));
    }
    if let Some(start) = filter.start {
        query = query.filter(abandonment::Column::DetectedAt.gte(start));
    }
    if let Some(end) = filter.end {
        query = query.filter(abandonment::Column::DetectedAt.lt(end));
    }
    if let Some(after) = after {
        query = query.filter(abandonment::Column::Id.lt(after));
    }
    let mut rows = query.all(db).await?;
    let next = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|row| row.id.clone())
    } else {
        None
    };
    Ok((rows, next))
}

/// Moves `merged`'s abandonments to `survivor`.
pub async fn follow_merge(
    transaction: &DatabaseTransaction,
    survivor: &str,
    merged: &str,
) -> Result<()> {
    abandonment::Entity::update_many()
        .col_expr(
            abandonment::Column::CustomerId,
            sea_orm::sea_query::Expr::value(survivor.to_string()),
        )
        .filter(abandonment::Column::CustomerId.eq(merged))
        .exec(transaction)
        .await?;
    Ok(())
}

/// Deletes the abandonments of `profile_ids`.
pub async fn erase(transaction: &DatabaseTransaction, profile_ids: &[String]) -> Result<u64> {
    use sea_orm::sea_query::ExprTrait;
    Ok(abandonment::Entity::delete_many()
        .filter(
            abandonment::Column::CustomerId
                .is_in(profile_ids.to_vec())
                .or(abandonment::Column::ProfileId.is_in(profile_ids.to_vec())),
        )
        .exec(transaction)
        .await?
        .rows_affected)
}

//! The transactional outbox: a service writes the change events of a write
//! into its own `<service>_outbox` table in the same transaction as the
//! write, and a relay publishes them on the bus afterwards.
//!
//! So an event exists exactly when its change does: a crash after the
//! commit publishes it on restart (or from another replica), and a crash
//! after publishing but before the row is marked publishes it again, which
//! consumers absorb because they are idempotent by event id. Replicas share
//! the table; on PostgreSQL each claims rows with `FOR UPDATE SKIP LOCKED`.
//!
//! Redis is the bus, not the record: a published row stays in the outbox,
//! marked with the bus generation it was published in (see
//! [`EventBus::generation`]), for the retention window
//! (`CAIRN_OUTBOX_RETENTION_HOURS`). When the bus loses its log (Redis
//! restarted without its data), its generation changes, and the relay of
//! whichever replica looks first republishes every retained row of an older
//! generation, each with where it was first published ([`Origin`]). A row is
//! claimed with `FOR UPDATE SKIP LOCKED` and marked with the new generation
//! in the same transaction, so three replicas replay each event once between
//! them; consumer groups, recreated from the start of the new log, handle
//! replays they had handled before as no-ops (their inbox).

use crate::storage::BeginWrite;
use std::sync::Arc;
use std::time::Duration;

use cairn_contract::events::v1::ChangeEvent;
use cairn_contract::events::v1::change_event::Payload;
use prost::Message;
use sea_orm::sea_query::{
    ColumnDef, Expr, ExprTrait, LockBehavior, LockType, Order, Query, Table, TableCreateStatement,
};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::{EventBus, EventHandler, Origin, Position};
use crate::error::{Error, Result};

/// Rows published per round.
const BATCH: u64 = 128;
/// How often the relay looks for rows that another replica wrote.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// How often a relay deletes published rows past the retention window.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// A change event ready to be written to the outbox.
pub fn event(source: &str, topic: &str, profile_id: &str, payload: Payload) -> ChangeEvent {
    let now = std::time::SystemTime::now();
    ChangeEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        topic: topic.to_string(),
        occurred_at: Some(prost_types::Timestamp::from(now)),
        source: source.to_string(),
        profile_id: profile_id.to_string(),
        payload: Some(payload),
    }
}

/// The outbox of one service.
#[derive(Clone)]
pub struct Outbox {
    table: String,
    wake: Arc<Notify>,
}

impl Outbox {
    /// The outbox in `table` (created by [`Outbox::create_table`] in a migration).
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            wake: Arc::new(Notify::new()),
        }
    }

    /// The statement that creates an outbox table named `table`.
    pub fn create_table(table: &str) -> TableCreateStatement {
        Table::create()
            .table(table.to_string())
            .if_not_exists()
            .col(
                ColumnDef::new("id")
                    .big_integer()
                    .not_null()
                    .auto_increment()
                    .primary_key(),
            )
            .col(ColumnDef::new("event_id").string_len(64).not_null())
            .col(ColumnDef::new("topic").string_len(128).not_null())
            .col(ColumnDef::new("payload").blob().not_null())
            .to_owned()
    }

    /// The statements that let an outbox created by [`Outbox::create_table`]
    /// keep published events: the person an event is about (so erasure
    /// reaches the outbox), when it was published, the bus generation it is
    /// in now, and where it was first published. Each is one statement
    /// (SQLite alters one column at a time); the partial index keeps the
    /// relay's look for unpublished rows as cheap as when rows were deleted.
    pub fn retention_migration(table: &str) -> Vec<String> {
        let mut statements: Vec<String> = [
            ("profile_id", "VARCHAR(64)"),
            ("published_at", "BIGINT"),
            ("generation", "VARCHAR(64)"),
            ("origin_generation", "VARCHAR(64)"),
            ("origin_position", "VARCHAR(48)"),
        ]
        .iter()
        .map(|(column, kind)| format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))
        .collect();
        statements.push(format!(
            "CREATE INDEX IF NOT EXISTS {table}_unpublished ON {table} (id) WHERE published_at IS NULL"
        ));
        for column in ["generation", "published_at", "profile_id"] {
            statements.push(format!(
                "CREATE INDEX IF NOT EXISTS {table}_by_{column} ON {table} ({column})"
            ));
        }
        statements
    }

    /// Writes `event` to the outbox within the caller's transaction.
    pub async fn enqueue(
        &self,
        transaction: &impl ConnectionTrait,
        event: &ChangeEvent,
    ) -> Result<()> {
        let insert = Query::insert()
            .into_table(self.table.clone())
            .columns(["event_id", "topic", "payload", "profile_id"])
            .values_panic([
                event.event_id.clone().into(),
                event.topic.clone().into(),
                event.encode_to_vec().into(),
                event.profile_id.clone().into(),
            ])
            .to_owned();
        transaction.execute(&insert).await?;
        Ok(())
    }

    /// Writes `events` to the outbox within the caller's transaction, many
    /// rows per statement: what a batch of writes (a message of touchpoints)
    /// uses instead of one round trip per event.
    pub async fn enqueue_all(
        &self,
        transaction: &impl ConnectionTrait,
        events: &[ChangeEvent],
    ) -> Result<()> {
        // Four parameters a row: far below PostgreSQL's 65,535.
        for chunk in events.chunks(1000) {
            let mut insert = Query::insert()
                .into_table(self.table.clone())
                .columns(["event_id", "topic", "payload", "profile_id"])
                .to_owned();
            for event in chunk {
                insert
                    .values([
                        event.event_id.clone().into(),
                        event.topic.clone().into(),
                        event.encode_to_vec().into(),
                        event.profile_id.clone().into(),
                    ])
                    .map_err(Error::internal)?;
            }
            transaction.execute(&insert).await?;
        }
        Ok(())
    }

    /// Tells the relay that a transaction with events committed, so it
    /// publishes them now instead of at its next poll.
    pub fn committed(&self) {
        self.wake.notify_one();
    }

    /// Publishes one batch: first events the bus lost (rows of an older
    /// generation), then new ones. Returns how many events it published.
    pub async fn relay_once(&self, db: &DatabaseConnection, bus: &dyn EventBus) -> Result<usize> {
        // Read before publishing: an event published after the bus lost its
        // log is marked with the generation read here, which is then older
        // than the bus's, and so is replayed (twice at worst, never lost).
        let generation = bus.generation().await?;
        let replayed = self.replay_once(db, bus, &generation).await?;
        if replayed > 0 {
            return Ok(replayed);
        }
        self.publish_once(db, bus, &generation).await
    }

    /// Republishes up to a batch of published rows whose generation is not
    /// `generation` (the bus lost them); returns how many.
    async fn replay_once(
        &self,
        db: &DatabaseConnection,
        bus: &dyn EventBus,
        generation: &str,
    ) -> Result<usize> {
        let transaction = db.begin_write().await?;
        let select = Query::select()
            .columns([
                "id",
                "payload",
                "generation",
                "origin_generation",
                "origin_position",
            ])
            .from(self.table.clone())
            .and_where(Expr::col("published_at").is_not_null())
            .and_where(
                Expr::col("generation")
                    .lt(generation)
                    .or(Expr::col("generation").gt(generation))
                    .or(Expr::col("generation").is_null()),
            )
            .order_by("id", Order::Asc)
            .limit(BATCH)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .to_owned();
        let rows = transaction.query_all(&select).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get("", "id")?;
            let payload: Vec<u8> = row.try_get("", "payload")?;
            let was_in: Option<String> = row.try_get("", "generation")?;
            let first_in: Option<String> = row.try_get("", "origin_generation")?;
            let first_at: Option<String> = row.try_get("", "origin_position")?;
            let origin = Origin {
                generation: first_in.or(was_in).unwrap_or_default(),
                position: first_at
                    .and_then(|text| text.parse::<Position>().ok())
                    .unwrap_or_default(),
            };
            match ChangeEvent::decode(payload.as_slice()) {
                Ok(event) => {
                    bus.publish_replay(&event, &origin).await?;
                }
                Err(error) => {
                    tracing::error!(outbox = %self.table, id, %error, "not replaying an undecodable outbox row")
                }
            }
            ids.push(id);
        }
        let update = Query::update()
            .table(self.table.clone())
            .value("generation", generation)
            .and_where(Expr::col("id").is_in(ids.clone()))
            .to_owned();
        transaction.execute(&update).await?;
        transaction.commit().await?;
        tracing::info!(outbox = %self.table, replayed = ids.len(), "replayed events the bus had lost");
        Ok(ids.len())
    }

    /// Publishes up to a batch of rows never published; returns how many.
    async fn publish_once(
        &self,
        db: &DatabaseConnection,
        bus: &dyn EventBus,
        generation: &str,
    ) -> Result<usize> {
        let transaction = db.begin_write().await?;
        let select = Query::select()
            .columns(["id", "payload"])
            .from(self.table.clone())
            .and_where(Expr::col("published_at").is_null())
            .order_by("id", Order::Asc)
            .limit(BATCH)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .to_owned();
        let rows = transaction.query_all(&select).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut published = Vec::with_capacity(rows.len());
        let mut undecodable = Vec::new();
        for row in &rows {
            let id: i64 = row.try_get("", "id")?;
            let payload: Vec<u8> = row.try_get("", "payload")?;
            match ChangeEvent::decode(payload.as_slice()) {
                Ok(event) => {
                    let position = bus.publish(&event).await?;
                    published.push((id, position));
                }
                Err(error) => {
                    tracing::error!(outbox = %self.table, id, %error, "dropping an undecodable outbox row");
                    undecodable.push(id);
                }
            }
        }
        if !published.is_empty() {
            let ids: Vec<i64> = published.iter().map(|(id, _)| *id).collect();
            let mut positions = sea_orm::sea_query::CaseStatement::new();
            for (id, position) in &published {
                positions = positions.case(Expr::col("id").eq(*id), position.to_string());
            }
            let update = Query::update()
                .table(self.table.clone())
                .value("published_at", chrono::Utc::now().timestamp_millis())
                .value("generation", generation)
                .value("origin_generation", generation)
                .value("origin_position", positions)
                .and_where(Expr::col("id").is_in(ids))
                .to_owned();
            transaction.execute(&update).await?;
        }
        if !undecodable.is_empty() {
            let delete = Query::delete()
                .from_table(self.table.clone())
                .and_where(Expr::col("id").is_in(undecodable.clone()))
                .to_owned();
            transaction.execute(&delete).await?;
        }
        transaction.commit().await?;
        Ok(published.len() + undecodable.len())
    }

    /// Deletes published rows older than `retention`; returns how many.
    pub async fn sweep(&self, db: &DatabaseConnection, retention: Duration) -> Result<u64> {
        let cutoff = chrono::Utc::now().timestamp_millis()
            - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let delete = Query::delete()
            .from_table(self.table.clone())
            .and_where(Expr::col("published_at").is_not_null())
            .and_where(Expr::col("published_at").lt(cutoff))
            .to_owned();
        Ok(db.execute(&delete).await?.rows_affected())
    }

    /// Deletes the events about the people `profile_ids` from the outbox
    /// (erasure reaches the record of the bus too); with `keep_topic`, the
    /// events of that topic stay (the erasure event itself, until every
    /// service has handled it). Returns how many rows went.
    pub async fn forget(
        &self,
        connection: &impl ConnectionTrait,
        profile_ids: &[String],
        keep_topic: Option<&str>,
    ) -> Result<u64> {
        if profile_ids.is_empty() {
            return Ok(0);
        }
        let mut delete = Query::delete()
            .from_table(self.table.clone())
            .and_where(Expr::col("profile_id").is_in(profile_ids.to_vec()))
            .to_owned();
        if let Some(topic) = keep_topic {
            delete.and_where(Expr::col("topic").ne(topic));
        }
        Ok(connection.execute(&delete).await?.rows_affected())
    }

    /// Runs the relay until `shutdown` fires, keeping published events for
    /// `retention`, and forgets erased people's events from the outbox (a
    /// consumer group of its own, `<table>-forget`).
    pub fn spawn_relay(
        &self,
        db: DatabaseConnection,
        bus: Arc<dyn EventBus>,
        retention: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        crate::bus::spawn_consumer(
            bus.clone(),
            crate::bus::ConsumerOptions::new(&format!("{}-forget", self.table)),
            Arc::new(ForgetInOutbox {
                db: db.clone(),
                outbox: self.clone(),
            }),
            shutdown.clone(),
        );
        let outbox = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            let mut last_sweep: Option<tokio::time::Instant> = None;
            loop {
                if last_sweep.is_none_or(|at| at.elapsed() >= SWEEP_INTERVAL) {
                    match outbox.sweep(&db, retention).await {
                        Ok(deleted) if deleted > 0 => {
                            tracing::debug!(outbox = %outbox.table, deleted, "deleted events past the retention window")
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(outbox = %outbox.table, %error, "deleting old outbox events failed; retrying later")
                        }
                    }
                    last_sweep = Some(tokio::time::Instant::now());
                }
                match outbox.relay_once(&db, &*bus).await {
                    Ok(published) if published > 0 => {
                        backoff = Duration::from_millis(100);
                        continue;
                    }
                    Ok(_) => backoff = Duration::from_millis(100),
                    Err(error) => {
                        let level_is_transient = matches!(error, Error::Unavailable(_));
                        tracing::warn!(outbox = %outbox.table, %error, transient = level_is_transient, "publishing outbox events failed; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = outbox.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                }
            }
        })
    }
}

/// On `profile.erased`, deletes the person's events from one outbox, except
/// the erasure event itself (the profile service's [`crate::bus::ForgetErased`]
/// deletes that once every service has handled it).
struct ForgetInOutbox {
    db: DatabaseConnection,
    outbox: Outbox,
}

#[async_trait::async_trait]
impl EventHandler for ForgetInOutbox {
    fn topics(&self) -> Vec<String> {
        vec!["profile.erased".into()]
    }

    async fn handle(&self, event: &ChangeEvent) -> Result<()> {
        let mut profile_ids = vec![event.profile_id.clone()];
        if let Some(Payload::ProfileErased(erased)) = &event.payload {
            profile_ids.extend(erased.merged_profile_ids.iter().cloned());
        }
        let deleted = self
            .outbox
            .forget(&self.db, &profile_ids, Some("profile.erased"))
            .await?;
        tracing::debug!(outbox = %self.outbox.table, deleted, "forgot an erased person's events");
        Ok(())
    }
}

/// The migration that lets an existing outbox keep published events (see
/// [`Outbox::retention_migration`]); each service lists it in its own
/// migrator under its own name.
pub struct KeepPublishedEvents {
    name: &'static str,
    table: &'static str,
}

impl KeepPublishedEvents {
    /// The migration `name` of the outbox `table`.
    pub const fn new(name: &'static str, table: &'static str) -> Self {
        Self { name, table }
    }
}

impl sea_orm_migration::MigrationName for KeepPublishedEvents {
    fn name(&self) -> &str {
        self.name
    }
}

#[async_trait::async_trait]
impl sea_orm_migration::MigrationTrait for KeepPublishedEvents {
    async fn up(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), sea_orm::DbErr> {
        for statement in Outbox::retention_migration(self.table) {
            manager
                .get_connection()
                .execute_unprepared(&statement)
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), sea_orm::DbErr> {
        let table = self.table;
        for index in [
            "unpublished",
            "by_generation",
            "by_published_at",
            "by_profile_id",
        ] {
            manager
                .get_connection()
                .execute_unprepared(&format!("DROP INDEX IF EXISTS {table}_{index}"))
                .await?;
        }
        for column in [
            "profile_id",
            "published_at",
            "generation",
            "origin_generation",
            "origin_position",
        ] {
            manager
                .get_connection()
                .execute_unprepared(&format!("ALTER TABLE {table} DROP COLUMN {column}"))
                .await?;
        }
        Ok(())
    }
}

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
//!
//! The bus's log is also trimmed to about `CAIRN_EVENT_RETENTION` events.
//! A consumer group whose service is down or slow for longer than that
//! would lose the trimmed events it had not read, so each row also keeps
//! its position in the current log, and the relay of each service looks
//! every [`REDELIVERY_CHECK`] for groups the trimming passed
//! ([`EventBus::gaps`]) and redelivers its own rows in each group's gap to
//! that group alone ([`Outbox::redeliver_missed`]). Each service knows only
//! its own outbox, so each redelivers its own share. What was redelivered
//! to a group is recorded in `<table>_redeliveries` (the gap's upper end),
//! so the same gap is redelivered once, whichever replica looks, and after
//! any replica restarts; the look holds an exclusive advisory lock that the
//! publishing transactions hold shared, so every event published before the
//! look has its position recorded when the look reads the log.

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

use crate::bus::{EventBus, EventHandler, Gap, Origin, Position};
use crate::error::{Error, Result};

/// Rows published per round.
const BATCH: u64 = 128;
/// How often the relay looks for rows that another replica wrote.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// How often a relay deletes published rows past the retention window.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How often a relay looks for consumer groups that the log's trimming
/// passed: two `XINFO` calls, and a look at the database only when there is one.
pub const REDELIVERY_CHECK: Duration = Duration::from_secs(2);
/// Rows redelivered to one group per look; the rest follow at the next.
const REDELIVERY_BATCH: u64 = 1000;

/// A position as the two columns that keep it in order.
fn position_columns(position: Position) -> (i64, i64) {
    (
        i64::try_from(position.millis).unwrap_or(i64::MAX),
        i64::try_from(position.sequence).unwrap_or(i64::MAX),
    )
}

/// The rows whose position in the log lies after `after` and before `before`.
fn position_between(after: Position, before: Position) -> sea_orm::sea_query::Condition {
    let (after_millis, after_sequence) = position_columns(after);
    let (before_millis, before_sequence) = position_columns(before);
    sea_orm::sea_query::Condition::all()
        .add(
            Expr::col("position_millis")
                .gt(after_millis)
                .or(Expr::col("position_millis")
                    .eq(after_millis)
                    .and(Expr::col("position_sequence").gt(after_sequence))),
        )
        .add(
            Expr::col("position_millis")
                .lt(before_millis)
                .or(Expr::col("position_millis")
                    .eq(before_millis)
                    .and(Expr::col("position_sequence").lt(before_sequence))),
        )
}

/// Before which position `gap`'s group was already given every event of
/// this outbox (the zero position when never).
fn covered(done: &std::collections::HashMap<String, Position>, gap: &Gap) -> Position {
    done.get(&gap.group).copied().unwrap_or_default()
}

/// The exclusive lower bound of what `gap`'s group still needs: after its
/// last delivery, and from the upper end of what it was given already (the
/// event at that end was still in the log then, and may be trimmed since).
fn still_needed_after(done: &std::collections::HashMap<String, Position>, gap: &Gap) -> Position {
    match done.get(&gap.group) {
        Some(before) => before.just_before().max(gap.after),
        None => gap.after,
    }
}

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

    /// The table that records what was redelivered to each consumer group.
    fn redeliveries_table(&self) -> String {
        format!("{}_redeliveries", self.table)
    }

    /// Takes this outbox's advisory lock until the end of `transaction`:
    /// shared by the transactions that publish (they run side by side),
    /// exclusive for the look for trimmed groups, which so waits until
    /// every publication in flight has recorded its position. SQLite needs
    /// none: its write transactions already run one at a time.
    async fn lock(&self, transaction: &impl ConnectionTrait, exclusive: bool) -> Result<()> {
        if transaction.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        // FNV-1a of the table name: the same key in every replica.
        let hash = self
            .table
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        let key = i64::from_ne_bytes(hash.to_ne_bytes());
        let function = if exclusive {
            "pg_advisory_xact_lock"
        } else {
            "pg_advisory_xact_lock_shared"
        };
        transaction
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                format!("SELECT {function}($1)"),
                [key.into()],
            ))
            .await?;
        Ok(())
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
        self.lock(&transaction, false).await?;
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
        let mut millis = sea_orm::sea_query::CaseStatement::new();
        let mut sequences = sea_orm::sea_query::CaseStatement::new();
        let mut replayed_any = false;
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
                    let position = position_columns(bus.publish_replay(&event, &origin).await?);
                    millis = millis.case(Expr::col("id").eq(id), position.0);
                    sequences = sequences.case(Expr::col("id").eq(id), position.1);
                    replayed_any = true;
                }
                Err(error) => {
                    tracing::error!(outbox = %self.table, id, %error, "not replaying an undecodable outbox row")
                }
            }
            ids.push(id);
        }
        let mut update = Query::update()
            .table(self.table.clone())
            .value("generation", generation)
            .and_where(Expr::col("id").is_in(ids.clone()))
            .to_owned();
        if replayed_any {
            // An undecodable row keeps no position (the CASE has no branch for it).
            update
                .value("position_millis", millis)
                .value("position_sequence", sequences);
        }
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
        self.lock(&transaction, false).await?;
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
            let mut millis = sea_orm::sea_query::CaseStatement::new();
            let mut sequences = sea_orm::sea_query::CaseStatement::new();
            for (id, position) in &published {
                positions = positions.case(Expr::col("id").eq(*id), position.to_string());
                let (at_millis, at_sequence) = position_columns(*position);
                millis = millis.case(Expr::col("id").eq(*id), at_millis);
                sequences = sequences.case(Expr::col("id").eq(*id), at_sequence);
            }
            let update = Query::update()
                .table(self.table.clone())
                .value("published_at", chrono::Utc::now().timestamp_millis())
                .value("generation", generation)
                .value("origin_generation", generation)
                .value("origin_position", positions)
                .value("position_millis", millis)
                .value("position_sequence", sequences)
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

    /// Redelivers this outbox's events that consumer groups missed because
    /// the log was trimmed past them (see [`EventBus::gaps`]), each to its
    /// group alone, once: the upper end of what each group was given is
    /// recorded in `<table>_redeliveries`, and a later look redelivers only
    /// what lies past it. Returns how many events it redelivered.
    pub async fn redeliver_missed(
        &self,
        db: &DatabaseConnection,
        bus: &dyn EventBus,
    ) -> Result<usize> {
        let gaps = bus.gaps().await?;
        if gaps.is_empty() {
            return Ok(0);
        }
        // A cheap look first: most of the time every gap was handled.
        let generation = bus.generation().await?;
        let done = self.redelivered(db, &generation).await?;
        if gaps.iter().all(|gap| covered(&done, gap) >= gap.before) {
            return Ok(0);
        }
        let transaction = db.begin_write().await?;
        self.lock(&transaction, true).await?;
        // Again under the lock, which no publication of this outbox holds
        // now: each row published before these reads has its position.
        let generation = bus.generation().await?;
        let gaps = bus.gaps().await?;
        let done = self.redelivered(&transaction, &generation).await?;
        let mut total = 0;
        for gap in &gaps {
            if covered(&done, gap) >= gap.before {
                continue;
            }
            let after = still_needed_after(&done, gap);
            let select = Query::select()
                .columns([
                    "id",
                    "payload",
                    "origin_generation",
                    "origin_position",
                    "position_millis",
                    "position_sequence",
                ])
                .from(self.table.clone())
                .and_where(Expr::col("generation").eq(generation.as_str()))
                .cond_where(position_between(after, gap.before))
                .order_by("position_millis", Order::Asc)
                .order_by("position_sequence", Order::Asc)
                .limit(REDELIVERY_BATCH)
                .to_owned();
            let rows = transaction.query_all(&select).await?;
            let mut reached = gap.before;
            let mut redelivered = 0_u64;
            for row in &rows {
                let id: i64 = row.try_get("", "id")?;
                let payload: Vec<u8> = row.try_get("", "payload")?;
                let first_in: Option<String> = row.try_get("", "origin_generation")?;
                let first_at: Option<String> = row.try_get("", "origin_position")?;
                let at_millis: i64 = row.try_get("", "position_millis")?;
                let at_sequence: i64 = row.try_get("", "position_sequence")?;
                let position = Position {
                    millis: u64::try_from(at_millis).unwrap_or_default(),
                    sequence: u64::try_from(at_sequence).unwrap_or_default(),
                };
                let origin = Origin {
                    generation: first_in.unwrap_or_else(|| generation.clone()),
                    position: first_at
                        .and_then(|text| text.parse::<Position>().ok())
                        .unwrap_or(position),
                };
                match ChangeEvent::decode(payload.as_slice()) {
                    Ok(event) => {
                        bus.redeliver(&gap.group, &event, &origin).await?;
                        redelivered += 1;
                    }
                    Err(error) => {
                        tracing::error!(outbox = %self.table, id, %error, "not redelivering an undecodable outbox row")
                    }
                }
                if rows.len() as u64 == REDELIVERY_BATCH {
                    // A full batch: the next look goes on after the last row.
                    reached = position.just_after();
                }
            }
            self.record_redelivery(&transaction, &gap.group, &generation, reached, redelivered)
                .await?;
            if redelivered > 0 {
                metrics::counter!(
                    "cairn_events_redelivered_total",
                    "group" => gap.group.clone(),
                    "outbox" => self.table.clone(),
                )
                .increment(redelivered);
                tracing::warn!(
                    outbox = %self.table,
                    group = %gap.group,
                    redelivered,
                    missed = ?gap.missed,
                    after = %after,
                    before = %gap.before,
                    "the event log was trimmed past a lagging consumer group; redelivered its missed events from the outbox"
                );
            }
            total += redelivered as usize;
        }
        transaction.commit().await?;
        Ok(total)
    }

    /// For each consumer group, how far this outbox has redelivered in `generation`.
    async fn redelivered(
        &self,
        connection: &impl ConnectionTrait,
        generation: &str,
    ) -> Result<std::collections::HashMap<String, Position>> {
        let select = Query::select()
            .columns(["consumer_group", "before_millis", "before_sequence"])
            .from(self.redeliveries_table())
            .and_where(Expr::col("generation").eq(generation))
            .to_owned();
        let mut done = std::collections::HashMap::new();
        for row in connection.query_all(&select).await? {
            let group: String = row.try_get("", "consumer_group")?;
            let millis: i64 = row.try_get("", "before_millis")?;
            let sequence: i64 = row.try_get("", "before_sequence")?;
            done.insert(
                group,
                Position {
                    millis: u64::try_from(millis).unwrap_or_default(),
                    sequence: u64::try_from(sequence).unwrap_or_default(),
                },
            );
        }
        Ok(done)
    }

    /// Records that `group` was given every event of this outbox before
    /// `reached` (exclusive: the event at `reached` was still in the log).
    async fn record_redelivery(
        &self,
        connection: &impl ConnectionTrait,
        group: &str,
        generation: &str,
        reached: Position,
        redelivered: u64,
    ) -> Result<()> {
        let table = self.redeliveries_table();
        let (millis, sequence) = position_columns(reached);
        let insert = Query::insert()
            .into_table(table.clone())
            .columns([
                "consumer_group",
                "generation",
                "before_millis",
                "before_sequence",
                "redelivered",
                "updated_at",
            ])
            .values_panic([
                group.into(),
                generation.into(),
                millis.into(),
                sequence.into(),
                i64::try_from(redelivered).unwrap_or(i64::MAX).into(),
                chrono::Utc::now().timestamp_millis().into(),
            ])
            .on_conflict(
                sea_orm::sea_query::OnConflict::column("consumer_group")
                    .update_columns([
                        "generation",
                        "before_millis",
                        "before_sequence",
                        "updated_at",
                    ])
                    .value(
                        "redelivered",
                        Expr::cust(format!("{table}.redelivered + excluded.redelivered")),
                    )
                    .to_owned(),
            )
            .to_owned();
        connection.execute(&insert).await?;
        Ok(())
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
            let mut last_redelivery = tokio::time::Instant::now();
            loop {
                if last_redelivery.elapsed() >= REDELIVERY_CHECK {
                    if let Err(error) = outbox.redeliver_missed(&db, &*bus).await {
                        tracing::warn!(outbox = %outbox.table, %error, "redelivering events to lagging consumer groups failed; retrying later");
                    }
                    last_redelivery = tokio::time::Instant::now();
                }
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

/// The migration that lets an outbox redeliver events to consumer groups
/// the log's trimming passed: each row's position in the current log (two
/// numbers, so that they sort) and the table `<table>_redeliveries`, what
/// each group was given already. Rows published before it keep no position
/// and are not redelivered after a trim (they still are after a reset).
pub struct TrackRedeliveries {
    name: &'static str,
    table: &'static str,
}

impl TrackRedeliveries {
    /// The migration `name` of the outbox `table`.
    pub const fn new(name: &'static str, table: &'static str) -> Self {
        Self { name, table }
    }

    /// Its statements, one a column (SQLite alters one at a time).
    pub fn statements(table: &str) -> Vec<String> {
        vec![
            format!("ALTER TABLE {table} ADD COLUMN position_millis BIGINT"),
            format!("ALTER TABLE {table} ADD COLUMN position_sequence BIGINT"),
            format!(
                "CREATE INDEX IF NOT EXISTS {table}_by_position ON {table} (generation, position_millis, position_sequence)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {table}_redeliveries (\
                 consumer_group VARCHAR(255) NOT NULL PRIMARY KEY, \
                 generation VARCHAR(64) NOT NULL, \
                 before_millis BIGINT NOT NULL, \
                 before_sequence BIGINT NOT NULL, \
                 redelivered BIGINT NOT NULL, \
                 updated_at BIGINT NOT NULL)"
            ),
        ]
    }
}

impl sea_orm_migration::MigrationName for TrackRedeliveries {
    fn name(&self) -> &str {
        self.name
    }
}

#[async_trait::async_trait]
impl sea_orm_migration::MigrationTrait for TrackRedeliveries {
    async fn up(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), sea_orm::DbErr> {
        for statement in Self::statements(self.table) {
            manager
                .get_connection()
                .execute_unprepared(&statement)
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), sea_orm::DbErr> {
        let table = self.table;
        for statement in [
            format!("DROP TABLE IF EXISTS {table}_redeliveries"),
            format!("DROP INDEX IF EXISTS {table}_by_position"),
            format!("ALTER TABLE {table} DROP COLUMN position_millis"),
            format!("ALTER TABLE {table} DROP COLUMN position_sequence"),
        ] {
            manager
                .get_connection()
                .execute_unprepared(&statement)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> Position {
        Position {
            millis,
            sequence: 0,
        }
    }

    #[test]
    fn a_later_look_includes_the_event_that_ended_the_previous_gap() {
        let gap = Gap {
            group: "journey".into(),
            after: at(10),
            before: at(300),
            missed: None,
        };
        let mut done = std::collections::HashMap::new();
        assert_eq!(still_needed_after(&done, &gap), at(10));
        // An earlier look gave the group everything before 200; the event at
        // 200 was still in the log then and has been trimmed since.
        done.insert("journey".to_string(), at(200));
        let after = still_needed_after(&done, &gap);
        assert!(after < at(200) && after > at(199));
        assert!(covered(&done, &gap) < gap.before);
        // A look that reached the gap's end leaves nothing for the next.
        done.insert("journey".to_string(), at(300));
        assert!(covered(&done, &gap) >= gap.before);
    }
}

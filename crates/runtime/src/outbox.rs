//! The transactional outbox: a service writes the change events of a write
//! into its own `<service>_outbox` table in the same transaction as the
//! write, and a relay publishes them on the bus afterwards.
//!
//! So an event exists exactly when its change does: a crash after the
//! commit publishes it on restart (or from another replica), and a crash
//! after publishing but before the row is deleted publishes it again, which
//! consumers absorb because they are idempotent by event id. Replicas share
//! the table; on PostgreSQL each claims rows with `FOR UPDATE SKIP LOCKED`.

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

use crate::bus::EventBus;
use crate::error::{Error, Result};

/// Rows published per round.
const BATCH: u64 = 128;
/// How often the relay looks for rows that another replica wrote.
const IDLE_POLL: Duration = Duration::from_millis(250);

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

    /// Writes `event` to the outbox within the caller's transaction.
    pub async fn enqueue(
        &self,
        transaction: &impl ConnectionTrait,
        event: &ChangeEvent,
    ) -> Result<()> {
        let insert = Query::insert()
            .into_table(self.table.clone())
            .columns(["event_id", "topic", "payload"])
            .values_panic([
                event.event_id.clone().into(),
                event.topic.clone().into(),
                event.encode_to_vec().into(),
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
        // Three parameters a row: far below PostgreSQL's 65,535.
        for chunk in events.chunks(1000) {
            let mut insert = Query::insert()
                .into_table(self.table.clone())
                .columns(["event_id", "topic", "payload"])
                .to_owned();
            for event in chunk {
                insert
                    .values([
                        event.event_id.clone().into(),
                        event.topic.clone().into(),
                        event.encode_to_vec().into(),
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

    /// Publishes one batch; returns how many events it published.
    pub async fn relay_once(&self, db: &DatabaseConnection, bus: &dyn EventBus) -> Result<usize> {
        let transaction = db.begin_write().await?;
        let select = Query::select()
            .columns(["id", "payload"])
            .from(self.table.clone())
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
            match ChangeEvent::decode(payload.as_slice()) {
                Ok(event) => {
                    bus.publish(&event).await?;
                }
                Err(error) => {
                    tracing::error!(outbox = %self.table, id, %error, "dropping an undecodable outbox row")
                }
            }
            ids.push(id);
        }
        let delete = Query::delete()
            .from_table(self.table.clone())
            .and_where(Expr::col("id").is_in(ids.clone()))
            .to_owned();
        transaction.execute(&delete).await?;
        transaction.commit().await?;
        Ok(ids.len())
    }

    /// Runs the relay until `shutdown` fires.
    pub fn spawn_relay(
        &self,
        db: DatabaseConnection,
        bus: Arc<dyn EventBus>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let outbox = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
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

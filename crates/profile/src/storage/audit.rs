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
//!
//! # Group commit
//!
//! A commit per audited call bounded resolve at about 2,000 calls/s (issue
//! 15, item 6). Entries therefore go through one writer task per store (per
//! replica): a caller queues its entry and waits; the writer takes every
//! entry waiting (at most [`ENTRIES_PER_BATCH`]), writes them with one
//! multi-row INSERT (one commit) and answers each caller with the outcome.
//! While it commits, the next callers queue up, so batches grow with the load
//! and a lone call waits for no one.
//!
//! The guarantee is unchanged: an audited call is answered only after its
//! entry is committed; when the batch fails, every caller in it fails
//! (UNAVAILABLE or INTERNAL, as any database error) and hands out nothing.
//! The queue is bounded ([`QUEUE_CAPACITY`]): when it is full, callers wait
//! for room (backpressure), and no entry is ever dropped. The writer ends
//! when the last handle to the store is gone, after writing what is queued,
//! so on shutdown the queue drains while in-flight calls finish. Entry ids
//! are UUID v7 taken when the caller queues, so the log keeps the order of
//! the calls. Nothing is shared between replicas: each has its own writer
//! and they meet only in the database.

use cairn_runtime::Error;
use cairn_runtime::Result;
use cairn_runtime::ServiceKind;
use cairn_runtime::auth::Principal;
use chrono::Utc;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::ProfileStore;
use super::entity::audit;

/// Most entries one batch (one INSERT, one commit) writes: 7 bind
/// parameters each keeps a statement far under SQLite's (32,766) and
/// PostgreSQL's (65,535) limits, and a batch commits in about a millisecond.
pub const ENTRIES_PER_BATCH: usize = 500;

/// Most entries waiting for the writer; beyond it, audited calls wait for
/// room instead of piling up memory (or dropping entries).
pub const QUEUE_CAPACITY: usize = 4 * ENTRIES_PER_BATCH;

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

/// An entry waiting for its batch, and where its caller hears the outcome.
struct Queued {
    row: audit::ActiveModel,
    committed: oneshot::Sender<Result<()>>,
}

/// The queue into a store's audit writer. Cloned with the store; the writer
/// ends once every clone is gone and the queue is written.
#[derive(Clone)]
pub(crate) struct AuditWriter {
    queue: mpsc::Sender<Queued>,
}

/// What a writer did before it ended: tests read it to see batching work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WriterReport {
    /// Batches written, each one INSERT and one commit.
    pub batches: u64,
    /// Entries committed.
    pub entries: u64,
    /// Entries whose batch failed (their callers were told).
    pub failed: u64,
}

impl AuditWriter {
    /// Starts the writer task on `db` (call it inside the Tokio runtime);
    /// the handle yields its report once the last clone is dropped and the
    /// queue is written.
    pub(crate) fn start(db: DatabaseConnection) -> (Self, JoinHandle<WriterReport>) {
        let (queue, waiting) = mpsc::channel(QUEUE_CAPACITY);
        (Self { queue }, tokio::spawn(write_batches(db, waiting)))
    }

    /// Queues `row` (waiting for room when the queue is full) and returns
    /// once its batch is committed, or with the batch's error.
    async fn write(&self, row: audit::ActiveModel) -> Result<()> {
        let (committed, outcome) = oneshot::channel();
        self.queue
            .send(Queued { row, committed })
            .await
            .map_err(|_| writer_gone())?;
        outcome.await.map_err(|_| writer_gone())?
    }
}

/// The writer stopped (the process is shutting down): the access is refused
/// rather than handed out unrecorded.
fn writer_gone() -> Error {
    Error::Unavailable(
        "the audit log cannot be written now (the service is stopping); retry".into(),
    )
}

/// The writer: takes every queued entry (up to a batch), writes them in one
/// statement, tells each caller; until the queue is closed and empty.
async fn write_batches(
    db: DatabaseConnection,
    mut waiting: mpsc::Receiver<Queued>,
) -> WriterReport {
    let mut report = WriterReport::default();
    let mut batch = Vec::with_capacity(ENTRIES_PER_BATCH);
    while waiting.recv_many(&mut batch, ENTRIES_PER_BATCH).await > 0 {
        let rows: Vec<audit::ActiveModel> = batch.iter().map(|queued| queued.row.clone()).collect();
        let written = audit::Entity::insert_many(rows)
            .exec_without_returning(&db)
            .await
            .map_err(Error::from);
        report.batches += 1;
        let size = batch.len() as u64;
        match &written {
            Ok(_) => report.entries += size,
            Err(error) => {
                report.failed += size;
                tracing::warn!(%error, entries = size, "an audit batch failed; its calls are refused");
            }
        }
        for queued in batch.drain(..) {
            // A caller that gave up (its deadline passed) no longer listens.
            let _ = queued.committed.send(match &written {
                Ok(_) => Ok(()),
                Err(error) => Err(same_error(error)),
            });
        }
    }
    report
}

/// `error` again, for each caller of a failed batch: database errors are
/// UNAVAILABLE or INTERNAL (see `cairn_runtime::error`), kept as they are.
fn same_error(error: &Error) -> Error {
    match error {
        Error::Unavailable(message) => Error::Unavailable(message.clone()),
        Error::Internal(detail) => Error::Internal(detail.clone()),
        other => Error::Internal(other.to_string()),
    }
}

impl ProfileStore {
    /// Writes that `caller` did `action` on the data of `person` (none: a
    /// list), returning `records` profiles, and returns once the entry is
    /// committed (with the others of its batch, see the module's doc). An
    /// error fails the access: data is not handed out unrecorded.
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
        self.audit_writer
            .write(audit::ActiveModel {
                id: Set(Uuid::now_v7().to_string()),
                occurred_at: Set(Utc::now()),
                subject: Set(caller.subject.chars().take(256).collect()),
                acting_for: Set(caller
                    .customer()
                    .map(|id| self.suppressor.hash_profile(&id.to_string()))),
                action: Set(action.to_string()),
                person_hash: Set(person.map(|id| self.suppressor.hash_profile(&id.to_string()))),
                records: Set(i32::try_from(records).unwrap_or(i32::MAX)),
            })
            .await
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
    /// the person, asking who saw their data) reads. Every entry of an
    /// answered call is in it (answers wait for their entry's commit).
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use cairn_runtime::storage::{self, BeginWrite};
    use sea_orm::{ConnectionTrait, PaginatorTrait};
    use secrecy::SecretString;

    use super::*;

    /// A migrated profile database in a SQLite file of its own.
    async fn profile_database() -> (PathBuf, DatabaseConnection) {
        let folder = std::env::temp_dir().join(format!("cairn-audit-{}", Uuid::now_v7()));
        let url = SecretString::from(format!("sqlite://{}/profile.db?mode=rwc", folder.display()));
        let db = storage::connect(&url, 4).await.unwrap();
        storage::migrate::<crate::storage::migration::Migrator>(&db, "profile")
            .await
            .unwrap();
        (folder, db)
    }

    fn entry(number: usize) -> audit::ActiveModel {
        audit::ActiveModel {
            id: Set(Uuid::now_v7().to_string()),
            occurred_at: Set(Utc::now()),
            subject: Set(format!("caller-{number}")),
            acting_for: Set(None),
            action: Set("get_profile".into()),
            person_hash: Set(None),
            records: Set(1),
        }
    }

    async fn entries_stored(db: &DatabaseConnection) -> u64 {
        audit::Entity::find().count(db).await.unwrap()
    }

    /// Callers writing at once share commits: 200 entries, far fewer
    /// batches, every entry stored once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_entries_are_written_in_fewer_commits_than_calls() {
        const CALLS: usize = 200;
        let (folder, db) = profile_database().await;
        let (writer, finished) = AuditWriter::start(db.clone());
        let calls: Vec<_> = (0..CALLS)
            .map(|number| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.write(entry(number)).await })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        // Answered means committed.
        assert_eq!(entries_stored(&db).await, CALLS as u64);
        drop(writer);
        let report = finished.await.unwrap();
        eprintln!("{CALLS} entries in {} commits", report.batches);
        assert_eq!(report.entries, CALLS as u64);
        assert_eq!(report.failed, 0);
        assert!(
            report.batches * 2 <= CALLS as u64,
            "{CALLS} calls took {} commits",
            report.batches
        );
        let _ = std::fs::remove_dir_all(folder);
    }

    /// When a batch's INSERT fails, every caller waiting in it hears the
    /// error (INTERNAL here: the table is gone), none is told it was written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_batch_fails_every_caller_waiting_in_it() {
        const CALLS: usize = 50;
        let (folder, db) = profile_database().await;
        db.execute_unprepared("DROP TABLE profile_audit_log")
            .await
            .unwrap();
        let (writer, finished) = AuditWriter::start(db.clone());
        let calls: Vec<_> = (0..CALLS)
            .map(|number| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.write(entry(number)).await })
            })
            .collect();
        for call in calls {
            let outcome = call.await.unwrap();
            assert!(matches!(outcome, Err(Error::Internal(_))), "{outcome:?}");
        }
        drop(writer);
        let report = finished.await.unwrap();
        assert_eq!(report.failed, CALLS as u64);
        assert_eq!(report.entries, 0);
        assert!(report.batches < CALLS as u64, "{report:?}");
        let _ = std::fs::remove_dir_all(folder);
    }

    /// While the database cannot take writes, the queue fills and further
    /// callers wait for room instead of being dropped; once it can, every
    /// entry is written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_makes_callers_wait_and_drops_nothing() {
        const CALLS: usize = QUEUE_CAPACITY + ENTRIES_PER_BATCH + 20;
        let (folder, db) = profile_database().await;
        // Another writer holds SQLite's write lock: the first batch waits for it.
        let held = db.begin_write().await.unwrap();
        let (writer, finished) = AuditWriter::start(db.clone());
        let calls: Vec<_> = (0..CALLS)
            .map(|number| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.write(entry(number)).await })
            })
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while writer.queue.capacity() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the queue never filled"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            calls.iter().all(|call| !call.is_finished()),
            "no call is answered before its entry is written"
        );
        held.rollback().await.unwrap();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert_eq!(entries_stored(&db).await, CALLS as u64);
        drop(writer);
        assert_eq!(finished.await.unwrap().entries, CALLS as u64);
        let _ = std::fs::remove_dir_all(folder);
    }

    /// When the last handle goes (the service stops), what is queued is
    /// still written before the writer ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_queue_drains_when_the_last_handle_goes() {
        const QUEUED: usize = 30;
        let (folder, db) = profile_database().await;
        let (writer, finished) = AuditWriter::start(db.clone());
        let mut outcomes = Vec::new();
        for number in 0..QUEUED {
            let (committed, outcome) = oneshot::channel();
            writer
                .queue
                .send(Queued {
                    row: entry(number),
                    committed,
                })
                .await
                .unwrap();
            outcomes.push(outcome);
        }
        drop(writer);
        let report = finished.await.unwrap();
        assert_eq!(report.entries, QUEUED as u64);
        for outcome in outcomes {
            outcome.await.unwrap().unwrap();
        }
        assert_eq!(entries_stored(&db).await, QUEUED as u64);
        let _ = std::fs::remove_dir_all(folder);
    }
}

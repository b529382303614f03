//! Redis trims the event log to about `CAIRN_EVENT_RETENTION` events: a
//! consumer group that stopped while the trimming passed it gets what it
//! missed redelivered from the publishing service's outbox (three replicas
//! of it), to it alone and once, and a second look redelivers nothing.

use std::sync::Arc;
use std::time::Duration;

use cairn_runtime::bus::{ConsumerOptions, EventBus, RedisBus, spawn_consumer};
use cairn_runtime::outbox::Outbox;
use cairn_runtime::{ServiceKind, Settings};
use cairn_tests::{Options, TestDatabase, eventually, redis_url, spawn_on};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

use crate::bus_reset::{Recorder, create_profiles, stored_event_ids};
use tokio_util::sync::CancellationToken;

/// The stream keeps about this many events (Redis trims whole nodes of 100).
const RETENTION: usize = 20;
/// Events the lagging group handles before it stops.
const FIRST: usize = 10;
/// Events published while it is stopped: far more than the log keeps.
const WHILE_STOPPED: usize = 400;

fn small_retention() -> Options {
    Options {
        services: vec![ServiceKind::Profile],
        adjust: Box::new(|settings: &mut Settings| settings.event_retention = RETENTION),
        ..Default::default()
    }
}

/// What the outbox recorded as redelivered to `group`: how many, and up to where.
async fn recorded(database: &TestDatabase, group: &str) -> Option<(i64, String)> {
    let db = database.connect().await;
    db.query_one_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "SELECT redelivered, before_millis, before_sequence FROM profile_outbox_redeliveries \
         WHERE consumer_group = $1",
        [group.into()],
    ))
    .await
    .unwrap()
    .map(|row| {
        (
            row.try_get::<i64>("", "redelivered").unwrap(),
            format!(
                "{}-{}",
                row.try_get::<i64>("", "before_millis").unwrap(),
                row.try_get::<i64>("", "before_sequence").unwrap()
            ),
        )
    })
}

#[tokio::test]
async fn a_group_the_trimming_passed_gets_every_missed_event_once_from_the_outbox() {
    let database = Arc::new(TestDatabase::create().await);
    let prefix = format!("cairn-test:{}:", uuid::Uuid::new_v4().simple());
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(spawn_on(database.clone(), prefix.clone(), small_retention()).await);
    }
    let client = redis::Client::open(redis_url()).unwrap();
    let mut redis = redis::aio::ConnectionManager::new(client).await.unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(RedisBus::new(redis.clone(), &prefix, RETENTION));
    let stop = CancellationToken::new();

    // A group that keeps up throughout, and one that stops after a few events.
    let steady = Arc::new(Recorder::default());
    spawn_consumer(
        bus.clone(),
        ConsumerOptions::new("test-steady"),
        steady.clone(),
        stop.clone(),
    );
    let lagging = Arc::new(Recorder::default());
    let stopped = CancellationToken::new();
    let first_run = spawn_consumer(
        bus.clone(),
        ConsumerOptions::new("test-lagging"),
        lagging.clone(),
        stopped.clone(),
    );
    create_profiles(&replicas, 0, FIRST).await;
    eventually(
        Duration::from_secs(30),
        "both groups handled the first events",
        || {
            let ready = lagging.handled() == FIRST && steady.handled() == FIRST;
            async move { ready.then_some(()) }
        },
    )
    .await;
    stopped.cancel();
    first_run.await.unwrap();

    // Far more events than the log keeps while the group is stopped.
    create_profiles(&replicas, FIRST, WHILE_STOPPED).await;
    let all = FIRST + WHILE_STOPPED;
    let length: usize = redis::cmd("XLEN")
        .arg(format!("{prefix}events"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        length < all - FIRST,
        "the log was trimmed past the stopped group (it holds {length} of {all} events)"
    );

    // While it is still stopped, the replicas' relays find the gap and
    // redeliver it once between them; a look of our own then finds nothing.
    let gap = eventually(
        Duration::from_secs(30),
        "the relays redelivered the stopped group's gap",
        || {
            let bus = bus.clone();
            let database = database.clone();
            async move {
                let gaps = bus.gaps().await.unwrap();
                let gap = gaps.into_iter().find(|gap| gap.group == "test-lagging")?;
                let (_, before) = recorded(&database, "test-lagging").await?;
                (before == gap.before.to_string()).then_some(gap)
            }
        },
    )
    .await;
    let (redelivered, _) = recorded(&database, "test-lagging").await.unwrap();
    assert_eq!(
        Some(redelivered as u64),
        gap.missed,
        "the outbox redelivered exactly what Redis says the group missed"
    );
    let waiting: usize = redis::cmd("XLEN")
        .arg(format!("{prefix}events:redelivery:test-lagging"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        waiting as i64, redelivered,
        "one copy each, for that group alone"
    );
    let db = database.connect().await;
    let again = Outbox::new("profile_outbox")
        .redeliver_missed(&db, &*bus)
        .await
        .unwrap();
    assert_eq!(again, 0, "a second look redelivers nothing");

    // The group resumes (a new replica of it) and sees every event.
    let stored = stored_event_ids(&database).await;
    assert_eq!(stored.len(), all, "the outbox keeps every published event");
    spawn_consumer(
        bus.clone(),
        ConsumerOptions::new("test-lagging"),
        lagging.clone(),
        stop.clone(),
    );
    eventually(
        Duration::from_secs(60),
        "every event reached both groups",
        || {
            let done = lagging.handled() == all && steady.handled() == all;
            async move { done.then_some(()) }
        },
    )
    .await;
    // Let any second redelivery (there must be none) arrive before counting.
    tokio::time::sleep(cairn_runtime::outbox::REDELIVERY_CHECK * 2).await;
    assert_eq!(lagging.handled_ids(), stored);
    assert_eq!(steady.handled_ids(), stored);
    assert_eq!(
        lagging.doubled(),
        Vec::new(),
        "the lagging group got an event twice"
    );
    assert_eq!(steady.doubled(), Vec::new(), "the steady group got a copy");
    let waiting: usize = redis::cmd("XLEN")
        .arg(format!("{prefix}events:redelivery:test-lagging"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(waiting, 0, "handled copies leave the redelivery stream");
    println!(
        "events: {all} ({FIRST} before the group stopped, {WHILE_STOPPED} while stopped); log length \
         when it resumed: {length}; missed by the group (Redis lag): {:?}; redelivered from the \
         outbox: {redelivered}; delivered to the lagging group: {} (each once); to the steady \
         group: {} (each once); second look: {again}",
        gap.missed,
        lagging.delivered(),
        steady.delivered(),
    );

    stop.cancel();
    for mut replica in replicas {
        replica.stop_services().await;
    }
    database.drop_database().await;
}

//! The event bus itself, on real Redis and in process: consumer groups,
//! reclaiming what a dead consumer left, retries, and retention.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cairn_contract::events::v1::change_event::Payload;
use cairn_contract::events::v1::{ChangeEvent, ProfileCreated};
use cairn_runtime::Error;
use cairn_runtime::bus::{
    ConsumerOptions, EventBus, EventHandler, MemoryBus, RedisBus, spawn_consumer,
};
use cairn_runtime::outbox;
use cairn_tests::{eventually, redis_url};
use tokio_util::sync::CancellationToken;

async fn redis_bus(retention: usize) -> Arc<dyn EventBus> {
    let client = redis::Client::open(redis_url()).unwrap();
    let connection = tokio::time::timeout(
        Duration::from_secs(5),
        redis::aio::ConnectionManager::new(client),
    )
    .await
    .expect("Redis answers within 5 s (is it running? see `make test`)")
    .unwrap();
    let prefix = format!("cairn-test:{}:", uuid::Uuid::new_v4().simple());
    Arc::new(RedisBus::new(connection, &prefix, retention))
}

fn created(profile: &str) -> ChangeEvent {
    outbox::event(
        "profile",
        "profile.created",
        profile,
        Payload::ProfileCreated(ProfileCreated { anonymous: false }),
    )
}

async fn a_dead_consumers_events_are_reclaimed(bus: Arc<dyn EventBus>) {
    for profile in ["p1", "p2", "p3"] {
        bus.publish(&created(profile)).await.unwrap();
    }
    let taken = bus
        .read_group("journey", "replica-a", 10, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(taken.len(), 3);
    bus.ack("journey", &[taken[0].position]).await.unwrap();
    // replica-a dies here, holding p2 and p3.
    assert!(
        bus.claim_stale("journey", "replica-b", Duration::from_secs(60), 10)
            .await
            .unwrap()
            .is_empty(),
        "not idle long enough yet"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let reclaimed = bus
        .claim_stale("journey", "replica-b", Duration::from_millis(100), 10)
        .await
        .unwrap();
    let profiles: Vec<_> = reclaimed
        .iter()
        .map(|d| d.event.profile_id.as_str())
        .collect();
    assert_eq!(profiles, ["p2", "p3"]);
    bus.ack(
        "journey",
        &reclaimed.iter().map(|d| d.position).collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        bus.claim_stale("journey", "replica-c", Duration::from_millis(100), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        bus.read_group("journey", "replica-c", 10, Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty()
    );
    // Another group sees every event independently.
    assert_eq!(
        bus.read_group("feedback", "f-1", 10, Duration::from_millis(50))
            .await
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn redis_consumer_groups_reclaim_a_dead_consumers_events() {
    a_dead_consumers_events_are_reclaimed(redis_bus(1000).await).await;
}

#[tokio::test]
async fn in_process_consumer_groups_reclaim_a_dead_consumers_events() {
    a_dead_consumers_events_are_reclaimed(Arc::new(MemoryBus::new(1000))).await;
}

/// Fails its first attempt, then succeeds.
struct Flaky {
    attempts: AtomicU32,
}

#[async_trait::async_trait]
impl EventHandler for Flaky {
    fn topics(&self) -> Vec<String> {
        vec!["profile.*".into()]
    }

    async fn handle(&self, _event: &ChangeEvent) -> cairn_runtime::Result<()> {
        if self.attempts.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(Error::Unavailable("the store blinked".into()))
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn a_failed_handling_is_retried_until_it_succeeds() {
    let bus = redis_bus(1000).await;
    let handler = Arc::new(Flaky {
        attempts: AtomicU32::new(0),
    });
    let shutdown = CancellationToken::new();
    let mut options = ConsumerOptions::new("journey");
    options.min_idle = Duration::from_millis(200);
    let consumer = spawn_consumer(bus.clone(), options, handler.clone(), shutdown.clone());
    bus.publish(&created("p1")).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "a second, successful attempt",
        || async { (handler.attempts.load(Ordering::SeqCst) >= 2).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        handler.attempts.load(Ordering::SeqCst),
        2,
        "acknowledged after success: never handled again"
    );
    shutdown.cancel();
    consumer.await.unwrap();
}

#[tokio::test]
async fn a_cursor_older_than_the_retained_events_is_out_of_range() {
    let bus = redis_bus(5).await;
    let first = bus.publish(&created("p0")).await.unwrap();
    for index in 1..300 {
        bus.publish(&created(&format!("p{index}"))).await.unwrap();
    }
    let newest = bus.newest().await.unwrap();
    assert!(matches!(
        bus.check_retained(first).await,
        Err(Error::OutOfRange(_))
    ));
    assert!(bus.check_retained(newest).await.is_ok());
}

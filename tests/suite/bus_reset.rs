//! Redis is the bus, not the record: when Redis restarts without its data,
//! the events published before are replayed from the services' outboxes
//! (PostgreSQL), once across three replicas, to every consumer group and to
//! a listener resuming with its cursor.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_contract::common::v1::IdentifierType;
use cairn_contract::events::v1::ChangeEvent;
use cairn_contract::events::v1::SubscribeRequest;
use cairn_contract::events::v1::event_hub_service_client::EventHubServiceClient;
use cairn_runtime::bus::{ConsumerOptions, EventBus, EventHandler, RedisBus, spawn_consumer};
use cairn_runtime::{ServiceKind, Settings};
use cairn_tests::redis_server::PrivateRedis;
use cairn_tests::{Options, TestApp, TestDatabase, eventually, identifier, spawn_on};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use secrecy::SecretString;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

/// The topic the bus tests' consumer groups follow.
pub(crate) const TOPIC: &str = "profile.created";
const BEFORE: usize = 100;
const AFTER: usize = 100;

/// A consumer group of the bus tests: every delivery, in order, and each
/// event's effect once (its inbox).
#[derive(Default)]
pub(crate) struct Recorder {
    deliveries: Mutex<Vec<String>>,
    handled: Mutex<BTreeSet<String>>,
}

#[async_trait::async_trait]
impl EventHandler for Recorder {
    fn topics(&self) -> Vec<String> {
        vec![TOPIC.into()]
    }

    async fn handle(&self, event: &ChangeEvent) -> cairn_runtime::Result<()> {
        self.deliveries.lock().unwrap().push(event.event_id.clone());
        self.handled.lock().unwrap().insert(event.event_id.clone());
        Ok(())
    }
}

impl Recorder {
    /// Deliveries, repeats included.
    pub(crate) fn delivered(&self) -> usize {
        self.deliveries.lock().unwrap().len()
    }

    /// Events handled, each once.
    pub(crate) fn handled(&self) -> usize {
        self.handled.lock().unwrap().len()
    }

    /// The ids of the events handled.
    pub(crate) fn handled_ids(&self) -> BTreeSet<String> {
        self.handled.lock().unwrap().clone()
    }

    /// Events delivered more than once, with their counts.
    pub(crate) fn doubled(&self) -> Vec<(String, usize)> {
        let mut counts = BTreeMap::new();
        for id in self.deliveries.lock().unwrap().iter() {
            *counts.entry(id.clone()).or_insert(0) += 1;
        }
        counts.into_iter().filter(|(_, n)| *n > 1).collect()
    }
}

fn on_private_redis(url: String) -> Options {
    Options {
        services: vec![ServiceKind::Profile],
        adjust: Box::new(move |settings: &mut Settings| {
            settings.redis_url = Some(SecretString::from(url));
        }),
        ..Default::default()
    }
}

/// Follows `profile.created` on the replicas' hubs from the oldest event,
/// reconnecting with its last cursor (to the next replica) whenever the
/// stream breaks; every event it is handed goes to `seen`.
fn listener(
    replicas: &[TestApp],
    token: String,
    seen: Arc<Mutex<Vec<String>>>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<u32> {
    let addresses: Vec<String> = replicas
        .iter()
        .map(|replica| format!("http://{}", replica.addresses[&ServiceKind::Profile]))
        .collect();
    tokio::spawn(async move {
        let mut cursor = String::new();
        let mut reconnects = 0;
        for address in addresses.iter().cycle() {
            if stop.is_cancelled() {
                break;
            }
            let Ok(channel) = tonic::transport::Endpoint::from_shared(address.clone())
                .unwrap()
                .connect()
                .await
            else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let mut hub = EventHubServiceClient::with_interceptor(
                channel,
                cairn_tests::Bearer::token(&token),
            );
            let request = SubscribeRequest {
                topics: vec![TOPIC.into()],
                cursor: cursor.clone(),
                from_oldest: true,
            };
            let Ok(response) = hub.subscribe(request).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let mut stream = response.into_inner();
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => return reconnects,
                    next = stream.next() => next,
                };
                match next {
                    Some(Ok(response)) => {
                        if let Some(event) = response.event {
                            seen.lock().unwrap().push(event.event_id);
                        }
                        cursor = response.cursor;
                    }
                    _ => break,
                }
            }
            reconnects += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        reconnects
    })
}

/// The ids of the test topic's events the profile service's outbox holds.
pub(crate) async fn stored_event_ids(database: &TestDatabase) -> BTreeSet<String> {
    let db = database.connect().await;
    db.query_all_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "SELECT event_id FROM profile_outbox WHERE topic = $1",
        [TOPIC.into()],
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get::<String>("", "event_id").unwrap())
    .collect()
}

fn counts(ids: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for id in ids {
        *counts.entry(id.clone()).or_insert(0) += 1;
    }
    counts
}

async fn test_bus(url: &str, prefix: &str) -> Arc<dyn EventBus> {
    let client = redis::Client::open(url).unwrap();
    let connection = redis::aio::ConnectionManager::new(client).await.unwrap();
    Arc::new(RedisBus::new(connection, prefix, 1_000_000))
}

/// Profiles `from..from + count` (one `profile.created` each), spread over
/// `replicas` in turn.
pub(crate) async fn create_profiles(replicas: &[TestApp], from: usize, count: usize) {
    for index in from..from + count {
        replicas[index % replicas.len()]
            .create_profile(
                vec![identifier(IdentifierType::CrmId, &format!("crm-{index}"))],
                &[],
            )
            .await;
    }
}

#[tokio::test]
async fn events_outlive_a_redis_restarted_empty_replayed_once_to_every_group_and_listener() {
    let mut redis = PrivateRedis::start().await;
    let database = Arc::new(TestDatabase::create().await);
    let prefix = format!("cairn-test:{}:", uuid::Uuid::new_v4().simple());
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            spawn_on(
                database.clone(),
                prefix.clone(),
                on_private_redis(redis.url()),
            )
            .await,
        );
    }
    let token = replicas[0].token(&["events.subscribe"]);
    let stop = CancellationToken::new();

    // A consumer group that handled the first events before the restart.
    let bus = test_bus(&redis.url(), &prefix).await;
    let early = Arc::new(Recorder::default());
    let mut options = ConsumerOptions::new("test-early");
    options.min_idle = Duration::from_secs(2);
    spawn_consumer(bus.clone(), options, early.clone(), stop.clone());
    // A listener resuming with its cursor.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let following = listener(&replicas, token.clone(), seen.clone(), stop.clone());

    create_profiles(&replicas, 0, BEFORE).await;
    eventually(
        Duration::from_secs(30),
        "the first events reached the group and the listener",
        || {
            let ready = early.handled.lock().unwrap().len() == BEFORE
                && seen.lock().unwrap().len() == BEFORE;
            async move { ready.then_some(()) }
        },
    )
    .await;
    let delivered_before = early.delivered();

    // Redis restarts without its data: the stream, its groups and every event are gone.
    redis.restart_empty().await;
    create_profiles(&replicas, BEFORE, AFTER).await;

    // A consumer group that starts only now.
    let late = Arc::new(Recorder::default());
    spawn_consumer(
        bus.clone(),
        ConsumerOptions::new("test-late"),
        late.clone(),
        stop.clone(),
    );

    let all = BEFORE + AFTER;
    let stored = stored_event_ids(&database).await;
    assert_eq!(stored.len(), all, "the outboxes keep every published event");
    eventually(
        Duration::from_secs(60),
        "every event reached every group and the listener",
        || {
            let done = early.handled.lock().unwrap().len() == all
                && early.delivered() - delivered_before >= all
                && late.handled.lock().unwrap().len() == all
                && seen.lock().unwrap().len() >= all;
            async move { done.then_some(()) }
        },
    )
    .await;
    // Let any second replay (there must be none) arrive before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let after_restart = early.deliveries.lock().unwrap()[delivered_before..].to_vec();
    let late_deliveries = late.deliveries.lock().unwrap().clone();
    let listened = seen.lock().unwrap().clone();
    for (who, deliveries) in [
        (
            "the group that had handled the first events, after the restart",
            &after_restart,
        ),
        ("the group started after the restart", &late_deliveries),
        ("the listener resuming with its cursor", &listened),
    ] {
        let counted = counts(deliveries);
        let set: BTreeSet<String> = counted.keys().cloned().collect();
        assert_eq!(set, stored, "{who}: not every stored event arrived");
        let doubled: Vec<_> = counted.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            doubled.is_empty(),
            "{who}: events handed out more than once: {doubled:?}"
        );
    }
    assert_eq!(*early.handled.lock().unwrap(), stored);

    // A listener that starts from the oldest now finds each event once.
    let mut hub = EventHubServiceClient::new(
        replicas[2]
            .authed(ServiceKind::Profile, &["events.subscribe"])
            .await,
    );
    let mut stream = hub
        .subscribe(SubscribeRequest {
            topics: vec![TOPIC.into()],
            cursor: String::new(),
            from_oldest: true,
        })
        .await
        .unwrap()
        .into_inner();
    let mut fresh = Vec::new();
    while fresh.len() < all {
        let response = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the replayed log holds every event")
            .unwrap()
            .unwrap();
        fresh.push(response.event.unwrap().event_id);
    }
    let extra = tokio::time::timeout(Duration::from_secs(1), stream.next()).await;
    assert!(
        extra.is_err(),
        "a second copy of an event is on the log: {extra:?}"
    );
    assert_eq!(fresh.iter().cloned().collect::<BTreeSet<_>>(), stored);

    stop.cancel();
    let reconnects = following.await.unwrap();
    println!(
        "events: {all} ({BEFORE} before Redis restarted empty, {AFTER} after); stored in the outbox: {}; \
         after the restart, delivered to the early group: {} (each once), to the late group: {} (each once), \
         to the resuming listener: {} in all (each once, {reconnects} reconnects); replayed copies on the new log: {BEFORE}",
        stored.len(),
        after_restart.len(),
        late_deliveries.len(),
        listened.len()
    );
    for mut replica in replicas {
        replica.stop_services().await;
    }
    database.drop_database().await;
    redis.stop().await;
}

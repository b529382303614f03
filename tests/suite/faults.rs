//! Faults during work, injected by the test itself through a TCP proxy
//! between the services and their stores (see `cairn_tests::proxy`): Redis
//! and PostgreSQL stopped and started again, Redis slowed down. While a store
//! is away, calls that need it fail fast with UNAVAILABLE (never past their
//! deadline) and health says NOT_SERVING; afterwards everything heals by
//! itself, without a restart, and nothing acknowledged is lost or doubled.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cairn_contract::common::v1::{Channel, CustomerRef, IdentifierType, customer_ref};
use cairn_contract::journey::v1::{RecordTouchpointRequest, ResumeSessionRequest, TouchpointType};
use cairn_contract::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use cairn_contract::recommendation::v1::{Action, ActionKind, CreateActionRequest, DecideRequest};
use cairn_runtime::ServiceKind;
use cairn_runtime::bus::{EventBus, RedisBus};
use cairn_tests::proxy::FaultProxy;
use cairn_tests::{
    Options, TestApp, TestDatabase, by_identifier, eventually, identifier, redis_url,
    spawn_app_with, spawn_on, touchpoint,
};
use sea_orm::{ConnectionTrait, Statement};
use secrecy::SecretString;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// The deadline the test's clients give each call while a store is away.
const CALL_DEADLINE: Duration = Duration::from_secs(3);
/// How much later than its deadline a call may come back: scheduling on a
/// busy two-core machine, not a speed claim.
const SLACK: Duration = Duration::from_secs(2);
/// How long the store stays away.
const OUTAGE: Duration = Duration::from_secs(10);

/// Runs `call` with the test's deadline; returns its outcome and checks that
/// it came back in time, whatever it answered.
async fn within_deadline<T, F>(what: &str, call: F) -> Result<T, tonic::Status>
where
    F: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let started = tokio::time::Instant::now();
    let outcome = tokio::time::timeout(CALL_DEADLINE + SLACK * 5, call)
        .await
        .unwrap_or_else(|_| panic!("{what} hung far past its deadline"));
    let took = started.elapsed();
    assert!(
        took <= CALL_DEADLINE + SLACK,
        "{what} came back after {took:?}, past its {CALL_DEADLINE:?} deadline"
    );
    outcome
}

/// A request carrying the test's deadline (`grpc-timeout`).
fn with_deadline<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_DEADLINE);
    request
}

async fn health_of(app: &TestApp, service: ServiceKind) -> Option<i32> {
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel(service).await);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()
        .map(|response| response.into_inner().status)
}

async fn wait_for_health(app: &TestApp, service: ServiceKind, wanted: ServingStatus) {
    eventually(
        Duration::from_secs(30),
        &format!("the {service} service reporting {wanted:?}"),
        || async { (health_of(app, service).await == Some(wanted as i32)).then_some(()) },
    )
    .await;
}

type Recommendations = RecommendationServiceClient<cairn_tests::AuthedChannel>;

async fn recommendations(app: &TestApp) -> Recommendations {
    RecommendationServiceClient::new(
        app.authed(
            ServiceKind::Recommendation,
            &[
                "recommendation.read",
                "recommendation.write",
                "recommendation.decide",
            ],
        )
        .await,
    )
}

fn decide_request(profile_id: &str) -> DecideRequest {
    DecideRequest {
        customer: Some(CustomerRef {
            customer: Some(customer_ref::Customer::ProfileId(profile_id.into())),
        }),
        channel: Channel::Web as i32,
        max_actions: 1,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_redis_outage_fails_calls_fast_and_heals_by_itself() {
    let (redis, through) = FaultProxy::in_front_of(&redis_url()).await;
    let app = spawn_app_with(Options {
        adjust: Box::new(move |settings| {
            settings.redis_url = Some(SecretString::from(through));
        }),
        ..Default::default()
    })
    .await;
    let cookie = identifier(IdentifierType::CookieId, "outage-visitor");
    let profile_id = app.create_profile(vec![cookie.clone()], &[]).await;
    let mut decisions = recommendations(&app).await;
    decisions
        .create_action(CreateActionRequest {
            action: Some(Action {
                action_id: "outage-offer".into(),
                name: "An offer".into(),
                kind: ActionKind::Service as i32,
                category: "upgrade".into(),
                channels: vec![Channel::Web as i32],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    decisions.decide(decide_request(&profile_id)).await.unwrap();
    let mut journey = app.journey().await;
    let resume = ResumeSessionRequest {
        customer: Some(by_identifier(cookie.clone())),
        channel: Channel::Web as i32,
    };
    journey.resume_session(resume.clone()).await.unwrap();

    redis.cut();
    let outage_started = tokio::time::Instant::now();
    for service in [ServiceKind::Journey, ServiceKind::Recommendation] {
        wait_for_health(&app, service, ServingStatus::NotServing).await;
    }
    // Calls that need Redis fail fast, again and again, while it is away.
    let mut refused = BTreeMap::<&str, u32>::new();
    let mut recorded_during = Vec::new();
    let mut round = 0;
    while outage_started.elapsed() < OUTAGE {
        let session = within_deadline(
            "ResumeSession",
            journey.resume_session(with_deadline(resume.clone())),
        )
        .await;
        let status = session.expect_err("no session store, no session");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        *refused.entry("ResumeSession").or_default() += 1;

        let decision = within_deadline(
            "Decide",
            decisions.decide(with_deadline(decide_request(&profile_id))),
        )
        .await;
        let status = decision.expect_err("no counters, no decision");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        *refused.entry("Decide").or_default() += 1;

        // Ingest needs only PostgreSQL: it goes on, its events wait in the outbox.
        let id = format!("during-outage-{round}");
        within_deadline(
            "RecordTouchpoint",
            journey.record_touchpoint(with_deadline(RecordTouchpointRequest {
                touchpoint: Some(touchpoint(
                    &id,
                    cookie.clone(),
                    Channel::Web,
                    TouchpointType::PageView,
                    0,
                    &[],
                )),
            })),
        )
        .await
        .expect("ingest does not need Redis");
        recorded_during.push(id);
        round += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(refused.values().all(|count| *count >= 3), "{refused:?}");

    redis.restore().await;
    for service in [ServiceKind::Journey, ServiceKind::Recommendation] {
        wait_for_health(&app, service, ServingStatus::Serving).await;
    }
    // The same calls work again on the same processes.
    eventually(
        Duration::from_secs(20),
        "ResumeSession working again",
        || {
            let mut journey = journey.clone();
            let resume = resume.clone();
            async move { journey.resume_session(resume).await.ok() }
        },
    )
    .await;
    eventually(Duration::from_secs(20), "Decide working again", || {
        let mut decisions = decisions.clone();
        let request = decide_request(&profile_id);
        async move { decisions.decide(request).await.ok() }
    })
    .await;
    // Every touchpoint taken during the outage is published once Redis is back.
    let bus = direct_bus(&app.redis_prefix).await;
    let published = eventually(
        Duration::from_secs(30),
        "the outbox relaying what was recorded during the outage",
        || async {
            let ids = touchpoint_events(&*bus).await;
            recorded_during
                .iter()
                .all(|id| ids.contains_key(id))
                .then_some(ids)
        },
    )
    .await;
    for id in &recorded_during {
        assert_eq!(published[id], 1, "{id} published once");
    }
    eprintln!(
        "Redis outage of {OUTAGE:?}: refused UNAVAILABLE within the {CALL_DEADLINE:?} deadline: {refused:?}; \
         {} touchpoints recorded meanwhile, each published once afterwards; health NOT_SERVING then SERVING, no restart",
        recorded_during.len()
    );
    drop(redis);
    app.stop().await;
}

/// A bus on the real Redis (not through the proxy) under `prefix`.
async fn direct_bus(prefix: &str) -> Arc<dyn EventBus> {
    let client = redis::Client::open(redis_url()).unwrap();
    let connection = redis::aio::ConnectionManager::new(client).await.unwrap();
    Arc::new(RedisBus::new(connection, prefix, 1_000_000))
}

/// How often each touchpoint id was published as `journey.touchpoint_recorded`.
async fn touchpoint_events(bus: &dyn EventBus) -> BTreeMap<String, u32> {
    use cairn_contract::events::v1::change_event::Payload;
    let mut counts = BTreeMap::new();
    let mut after = None;
    loop {
        let batch = bus.read(after, 1000, Duration::ZERO).await.unwrap();
        let Some(last) = batch.last() else {
            return counts;
        };
        after = Some(last.position);
        for delivery in batch {
            if let Some(Payload::TouchpointRecorded(recorded)) = delivery.event.payload {
                *counts.entry(recorded.touchpoint_id).or_default() += 1;
            }
        }
    }
}

#[tokio::test]
async fn a_postgresql_restart_during_writes_loses_and_doubles_nothing() {
    let database = Arc::new(TestDatabase::create().await);
    let (postgres, through) = FaultProxy::in_front_of(&database.url).await;
    let app = spawn_on(
        Arc::clone(&database),
        format!("cairn-test:{}:", uuid::Uuid::new_v4().simple()),
        Options {
            services: vec![ServiceKind::Profile, ServiceKind::Journey],
            adjust: Box::new(move |settings| {
                settings.database_url = Some(SecretString::from(through));
            }),
            ..Default::default()
        },
    )
    .await;
    let journey = app.journey().await;
    let stop = tokio_util::sync::CancellationToken::new();
    // A client that writes touchpoints one after the other and retries each
    // until it is acknowledged, as the contract asks of clients.
    let writer = {
        let stop = stop.clone();
        let mut journey = journey.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut refusals = Vec::<(tokio::time::Instant, Code)>::new();
            let mut number = 0;
            while !stop.is_cancelled() {
                let id = format!("pg-restart-{number}");
                let request = RecordTouchpointRequest {
                    touchpoint: Some(touchpoint(
                        &id,
                        identifier(
                            IdentifierType::CookieId,
                            &format!("pg-visitor-{}", number % 5),
                        ),
                        Channel::Web,
                        TouchpointType::PageView,
                        0,
                        &[],
                    )),
                };
                let started = tokio::time::Instant::now();
                match within_deadline(
                    "RecordTouchpoint",
                    journey.record_touchpoint(with_deadline(request)),
                )
                .await
                {
                    Ok(_) => {
                        acknowledged.push(id);
                        number += 1;
                    }
                    Err(status) => {
                        refusals.push((started, status.code()));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            (acknowledged, refusals)
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    postgres.cut();
    let outage_started = tokio::time::Instant::now();
    for service in [ServiceKind::Profile, ServiceKind::Journey] {
        wait_for_health(&app, service, ServingStatus::NotServing).await;
    }
    let known_down = tokio::time::Instant::now();
    tokio::time::sleep(OUTAGE.saturating_sub(outage_started.elapsed())).await;
    postgres.restore().await;
    for service in [ServiceKind::Profile, ServiceKind::Journey] {
        wait_for_health(&app, service, ServingStatus::Serving).await;
    }
    // Writing goes on by itself after the restart.
    let count_before = acknowledged_so_far(&database).await;
    eventually(
        Duration::from_secs(30),
        "touchpoints acknowledged again after the restart",
        || async { (acknowledged_so_far(&database).await > count_before + 20).then_some(()) },
    )
    .await;
    stop.cancel();
    let (acknowledged, refusals) = writer.await.unwrap();
    // Until the service notices (its readiness check runs every second),
    // a write may wait for the database up to its deadline; from then on
    // every write is refused at once with UNAVAILABLE.
    // (CANCELLED is tonic's client giving up at the same deadline first.)
    let codes: Vec<Code> = refusals.iter().map(|(_, code)| *code).collect();
    assert!(
        codes.iter().all(|code| matches!(
            code,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
        )),
        "{codes:?}"
    );
    let after_known: Vec<Code> = refusals
        .iter()
        .filter(|(started, _)| *started > known_down)
        .map(|(_, code)| *code)
        .collect();
    assert!(after_known.len() >= 5, "{after_known:?}");
    assert!(
        after_known.iter().all(|code| *code == Code::Unavailable),
        "{after_known:?}"
    );

    let db = database.connect().await;
    let stored = count(
        &db,
        "SELECT COUNT(*) FROM journey_touchpoints WHERE id LIKE 'pg-restart-%'",
    )
    .await;
    let distinct = count(
        &db,
        "SELECT COUNT(DISTINCT id) FROM journey_touchpoints WHERE id LIKE 'pg-restart-%'",
    )
    .await;
    assert_eq!(stored, distinct, "no touchpoint doubled");
    let ids: BTreeSet<String> = ids_stored(&db).await;
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|id| !ids.contains(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    // Nothing was stored that the client did not finally see acknowledged
    // (a write cut mid-way was retried under the same id).
    assert_eq!(stored as usize, acknowledged.len());
    eprintln!(
        "PostgreSQL restart: {} touchpoints acknowledged, {} lost, {} doubled, {} refused ({} fast UNAVAILABLE once known down)",
        acknowledged.len(),
        lost.len(),
        stored - distinct,
        refusals.len(),
        after_known.len()
    );
    drop(postgres);
    app.stop().await;
}

async fn acknowledged_so_far(database: &TestDatabase) -> i64 {
    let db = database.connect().await;
    count(
        &db,
        "SELECT COUNT(*) FROM journey_touchpoints WHERE id LIKE 'pg-restart-%'",
    )
    .await
}

async fn ids_stored(db: &sea_orm::DatabaseConnection) -> BTreeSet<String> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT id FROM journey_touchpoints WHERE id LIKE 'pg-restart-%'",
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|row| row.try_get_by_index::<String>(0).unwrap())
    .collect()
}

async fn count(db: &sea_orm::DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

#[tokio::test]
async fn fifty_ms_of_redis_latency_keeps_calls_within_their_deadlines() {
    let (redis, through) = FaultProxy::in_front_of(&redis_url()).await;
    let app = spawn_app_with(Options {
        adjust: Box::new(move |settings| {
            settings.redis_url = Some(SecretString::from(through));
        }),
        ..Default::default()
    })
    .await;
    let mut decisions = recommendations(&app).await;
    decisions
        .create_action(CreateActionRequest {
            action: Some(Action {
                action_id: "slow-offer".into(),
                name: "An offer".into(),
                kind: ActionKind::Service as i32,
                category: "care".into(),
                channels: vec![Channel::Web as i32],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let journey = app.journey().await;
    redis.set_latency(Duration::from_millis(50));

    // 8 clients at once, each for its own customer, 15 rounds each of a
    // decision, a session and a touchpoint.
    let mut clients = Vec::new();
    for client in 0..8 {
        let mut decisions = decisions.clone();
        let mut journey = journey.clone();
        let cookie = identifier(IdentifierType::CookieId, &format!("slow-redis-{client}"));
        let profile_id = app.create_profile(vec![cookie.clone()], &[]).await;
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for round in 0..15 {
                let started = tokio::time::Instant::now();
                within_deadline(
                    "Decide",
                    decisions.decide(with_deadline(decide_request(&profile_id))),
                )
                .await
                .expect("a decision with a slow Redis");
                latencies.push(started.elapsed());
                let started = tokio::time::Instant::now();
                within_deadline(
                    "ResumeSession",
                    journey.resume_session(with_deadline(ResumeSessionRequest {
                        customer: Some(by_identifier(cookie.clone())),
                        channel: Channel::Web as i32,
                    })),
                )
                .await
                .expect("a session with a slow Redis");
                latencies.push(started.elapsed());
                within_deadline(
                    "RecordTouchpoint",
                    journey.record_touchpoint(with_deadline(RecordTouchpointRequest {
                        touchpoint: Some(touchpoint(
                            &format!("slow-{client}-{round}"),
                            cookie.clone(),
                            Channel::Web,
                            TouchpointType::PageView,
                            0,
                            &[],
                        )),
                    })),
                )
                .await
                .expect("a touchpoint with a slow Redis");
            }
            latencies
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for client in clients {
        latencies.extend(client.await.unwrap());
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100 - 1];
    let max = latencies[latencies.len() - 1];
    assert!(p99 <= CALL_DEADLINE, "p99 {p99:?} past the deadline");
    // Nothing queues without bound: every event recorded meanwhile leaves
    // the outbox through the slow Redis.
    let db = app.database.connect().await;
    eventually(Duration::from_secs(60), "the outbox drained", || {
        let db = db.clone();
        async move {
            (count(
                &db,
                "SELECT COUNT(*) FROM journey_outbox WHERE published_at IS NULL",
            )
            .await
                == 0)
                .then_some(())
        }
    })
    .await;
    eprintln!(
        "Redis +50 ms: {} Redis-bound calls, p99 {p99:?}, max {max:?} (deadline {CALL_DEADLINE:?})",
        latencies.len()
    );
    redis.set_latency(Duration::ZERO);
    drop(redis);
    app.stop().await;
}

/// Handles events the way services do (an inbox row and the event's effect
/// in one transaction), counting deliveries and effects per event.
struct Recorder {
    db: sea_orm::DatabaseConnection,
    inbox: cairn_runtime::inbox::Inbox,
    deliveries: std::sync::Mutex<BTreeMap<String, u32>>,
}

#[async_trait::async_trait]
impl cairn_runtime::bus::EventHandler for Recorder {
    fn topics(&self) -> Vec<String> {
        vec!["profile.*".into()]
    }

    async fn handle(
        &self,
        event: &cairn_contract::events::v1::ChangeEvent,
    ) -> cairn_runtime::Result<()> {
        use sea_orm::TransactionTrait;
        *self
            .deliveries
            .lock()
            .unwrap()
            .entry(event.event_id.clone())
            .or_default() += 1;
        let transaction = self.db.begin().await?;
        if self
            .inbox
            .first_delivery(&transaction, &event.event_id)
            .await?
        {
            transaction
                .execute_raw(Statement::from_sql_and_values(
                    transaction.get_database_backend(),
                    "INSERT INTO faults_effects (event_id) VALUES ($1)",
                    [event.event_id.clone().into()],
                ))
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }
}

/// A replica that takes events and dies before it has handled any.
struct Doomed(Arc<tokio::sync::Notify>);

#[async_trait::async_trait]
impl cairn_runtime::bus::EventHandler for Doomed {
    fn topics(&self) -> Vec<String> {
        vec!["profile.*".into()]
    }

    async fn handle(
        &self,
        _event: &cairn_contract::events::v1::ChangeEvent,
    ) -> cairn_runtime::Result<()> {
        self.0.notify_one();
        futures::future::pending().await
    }
}

#[tokio::test]
async fn pending_events_of_a_dead_consumer_are_reclaimed_after_a_redis_outage_and_handled_once() {
    use cairn_contract::events::v1::ProfileCreated;
    use cairn_contract::events::v1::change_event::Payload;
    use cairn_runtime::bus::{ConsumerOptions, spawn_consumer};

    let database = TestDatabase::create().await;
    let db = database.connect().await;
    db.execute(&cairn_runtime::inbox::Inbox::create_table("faults_inbox"))
        .await
        .unwrap();
    db.execute_unprepared("CREATE TABLE faults_effects (event_id TEXT NOT NULL)")
        .await
        .unwrap();
    let prefix = format!("cairn-test:{}:", uuid::Uuid::new_v4().simple());
    let (redis, through) = FaultProxy::in_front_of(&redis_url()).await;
    let replica_bus = || {
        let through = through.clone();
        let prefix = prefix.clone();
        async move {
            let client = redis::Client::open(through).unwrap();
            let connection = redis::aio::ConnectionManager::new(client).await.unwrap();
            Arc::new(RedisBus::new(connection, &prefix, 1_000_000)) as Arc<dyn EventBus>
        }
    };
    let publisher = direct_bus(&prefix).await;
    let publish = |count: usize, offset: usize| {
        let publisher = publisher.clone();
        async move {
            for n in offset..offset + count {
                publisher
                    .publish(&cairn_runtime::outbox::event(
                        "profile",
                        "profile.created",
                        &format!("reclaimed-{n}"),
                        Payload::ProfileCreated(ProfileCreated { anonymous: true }),
                    ))
                    .await
                    .unwrap();
            }
        }
    };
    publish(20, 0).await;
    let options = |consumer: &str| {
        let mut options = ConsumerOptions::new("faults");
        options.consumer = consumer.into();
        options.min_idle = Duration::from_secs(2);
        options
    };

    // Replica A takes every event, starts on the first and dies.
    let took = Arc::new(tokio::sync::Notify::new());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let doomed = spawn_consumer(
        replica_bus().await,
        options("replica-a"),
        Arc::new(Doomed(took.clone())),
        shutdown.clone(),
    );
    tokio::time::timeout(Duration::from_secs(20), took.notified())
        .await
        .expect("replica A took an event");
    doomed.abort();

    // Redis goes away; replica B (connected before) starts its consumer
    // meanwhile, and more events come.
    let survivor_bus = replica_bus().await;
    redis.cut();
    let recorder = Arc::new(Recorder {
        db: db.clone(),
        inbox: cairn_runtime::inbox::Inbox::new("faults_inbox"),
        deliveries: std::sync::Mutex::new(BTreeMap::new()),
    });
    let survivor = spawn_consumer(
        survivor_bus,
        options("replica-b"),
        recorder.clone(),
        shutdown.clone(),
    );
    publish(10, 20).await;
    tokio::time::sleep(OUTAGE).await;
    redis.restore().await;

    // B reclaims what A left pending, reads the rest, and handles each once.
    eventually(
        Duration::from_secs(60),
        "every event handled after the outage",
        || async {
            (count(&db, "SELECT COUNT(DISTINCT event_id) FROM faults_effects").await == 30)
                .then_some(())
        },
    )
    .await;
    let effects = count(&db, "SELECT COUNT(*) FROM faults_effects").await;
    assert_eq!(effects, 30, "each event's effect exactly once");
    let connection = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let pending = eventually(Duration::from_secs(30), "no event left pending", || {
        let mut connection = connection.clone();
        let key = format!("{prefix}events");
        async move {
            let summary: (u64, Option<String>, Option<String>, redis::Value) =
                redis::cmd("XPENDING")
                    .arg(&key)
                    .arg("faults")
                    .query_async(&mut connection)
                    .await
                    .unwrap();
            (summary.0 == 0).then_some(summary.0)
        }
    })
    .await;
    let deliveries: u32 = recorder.deliveries.lock().unwrap().values().sum();
    eprintln!(
        "bus reclaim: 20 events left pending by a dead consumer + 10 published during a 10 s Redis outage: \
         {effects} handled once each, {deliveries} deliveries to the survivor, {pending} pending at the end"
    );
    shutdown.cancel();
    let _ = survivor.await;
    let _ = connection;
    drop(redis);
    database.drop_database().await;
    cairn_tests::delete_redis_prefix(&prefix).await;
}

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
                .all(|id| ids.get(id).is_some())
                .then_some(ids)
        },
    )
    .await;
    for id in &recorded_during {
        assert_eq!(published[id], 1, "{id} published once");
    }
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

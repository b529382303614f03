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
use cairn_contract::journey::v1::{
    RecordTouchpointRequest, ResumeSessionRequest, TouchpointType,
};
use cairn_contract::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use cairn_contract::recommendation::v1::{
    Action, ActionKind, CreateActionRequest, DecideRequest,
};
use cairn_runtime::ServiceKind;
use cairn_runtime::bus::{EventBus, RedisBus};
use cairn_tests::proxy::FaultProxy;
use cairn_tests::{
    Options, TestApp, admin_database_url, by_identifier, eventually, identifier, redis_url,
    spawn_app_with, touchpoint,
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
    let mut health =
        tonic_health::pb::health_client::HealthClient::new(app.channel(service).await);
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
    eventually(Duration::from_secs(20), "ResumeSession working again", || {
        let mut journey = journey.clone();
        let resume = resume.clone();
        async move { journey.resume_session(resume).await.ok() }
    })
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

#[allow(dead_code)]
fn unused(_: BTreeSet<()>, _: String) -> String {
    admin_database_url()
}

#[allow(dead_code)]
async fn count(db: &sea_orm::DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

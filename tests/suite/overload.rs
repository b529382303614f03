//! Overload and misbehaving clients: per-client limits answered with
//! RESOURCE_EXHAUSTED while other clients are served, backpressure on a
//! stream that is faster than the store, requests with too many items or
//! huge maps refused before any work, and the caller's deadline passed on
//! to the calls a service makes to others.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cairn_contract::common::v1::{Channel, IdentifierType, Value, value};
use cairn_contract::journey::v1::journey_service_client::JourneyServiceClient;
use cairn_contract::journey::v1::{
    RecordTouchpointRequest, RecordTouchpointsRequest, StreamTouchpointsRequest, TouchpointType,
};
use cairn_contract::profile::v1::profile_service_client::ProfileServiceClient;
use cairn_contract::profile::v1::{CreateProfileRequest, ListProfilesRequest};
use cairn_runtime::ServiceKind;
use cairn_tests::proxy::FaultProxy;
use cairn_tests::{
    Bearer, Options, TEST_KEY, TestApp, TestDatabase, identifier, spawn_app_with, spawn_on,
    touchpoint,
};
use futures::StreamExt;
use sea_orm::{ConnectionTrait, Statement};
use secrecy::SecretString;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic_types::StatusExt;

/// A profile client whose token names `subject`.
async fn profile_client_of(
    app: &TestApp,
    subject: &str,
) -> ProfileServiceClient<InterceptedService<tonic::transport::Channel, Bearer>> {
    let token = cairn_runtime::auth::mint_token(
        &SecretString::from(TEST_KEY),
        subject,
        &["profile.read", "profile.write"],
        Duration::from_secs(600),
        None,
        None,
    )
    .unwrap();
    ProfileServiceClient::new(InterceptedService::new(
        app.channel(ServiceKind::Profile).await,
        Bearer::token(&token),
    ))
}

#[tokio::test]
async fn a_client_over_its_open_calls_is_refused_while_other_clients_are_served() {
    let app = spawn_app_with(Options {
        services: vec![ServiceKind::Profile],
        adjust: Box::new(|settings| settings.client_max_in_flight = 2),
        ..Default::default()
    })
    .await;
    // The harness's token names the subject "test": two calls held open.
    let (first, first_call) = app.hold_create_profile_call().await;
    let (second, second_call) = app.hold_create_profile_call().await;

    let status = app
        .profile()
        .await
        .list_profiles(ListProfilesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("subject test"),
        "{}",
        status.message()
    );
    // Another client is served meanwhile.
    profile_client_of(&app, "another-client")
        .await
        .list_profiles(ListProfilesRequest::default())
        .await
        .expect("another client has its own allowance");

    drop(first);
    drop(second);
    let _ = first_call.await;
    let _ = second_call.await;
    app.profile()
        .await
        .list_profiles(ListProfilesRequest::default())
        .await
        .expect("the client's calls ended, so it may call again");
    app.stop().await;
}

#[tokio::test]
async fn a_client_over_its_rate_is_told_when_to_retry() {
    let app = spawn_app_with(Options {
        services: vec![ServiceKind::Profile],
        adjust: Box::new(|settings| {
            settings.client_rate_per_second = 1;
            settings.client_rate_burst = 3;
        }),
        ..Default::default()
    })
    .await;
    let mut greedy = profile_client_of(&app, "greedy").await;
    let started = tokio::time::Instant::now();
    let mut served = 0;
    let mut refused = Vec::new();
    for _ in 0..10 {
        match greedy.list_profiles(ListProfilesRequest::default()).await {
            Ok(_) => served += 1,
            Err(status) => refused.push(status),
        }
    }
    let elapsed = started.elapsed().as_secs() as usize;
    assert!(
        served <= 3 + elapsed + 1,
        "{served} served in {elapsed} s at 1 per second after a burst of 3"
    );
    assert!(!refused.is_empty());
    for status in &refused {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        let retry = status
            .get_details_retry_info()
            .expect("a RetryInfo detail")
            .retry_delay
            .expect("a delay");
        assert!(retry <= Duration::from_secs(2), "{retry:?}");
    }
    // Another client is not slowed by the greedy one.
    let mut other = profile_client_of(&app, "polite").await;
    other
        .list_profiles(ListProfilesRequest::default())
        .await
        .expect("another client's rate is its own");
    app.stop().await;
}

fn text(value: &str) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(value.into())),
    }
}

#[tokio::test]
async fn too_many_items_and_huge_maps_are_refused_before_any_work() {
    let app = spawn_app_with(Options {
        services: vec![ServiceKind::Profile, ServiceKind::Journey],
        ..Default::default()
    })
    .await;
    let visitor = identifier(IdentifierType::CookieId, "hostile-visitor");
    let many = |count: usize, prefix: &str| -> Vec<_> {
        (0..count)
            .map(|n| {
                touchpoint(
                    &format!("{prefix}-{n}"),
                    visitor.clone(),
                    Channel::Web,
                    TouchpointType::PageView,
                    1,
                    &[],
                )
            })
            .collect()
    };
    let mut journey = app.journey().await;

    // A batch of 1,001.
    let status = journey
        .record_touchpoints(RecordTouchpointsRequest {
            touchpoints: many(1001, "batch"),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.get_details_bad_request().unwrap().field_violations[0].field,
        "touchpoints"
    );

    // A stream message of 1,001: the stream ends, nothing of it is recorded.
    let status = journey
        .stream_touchpoints(tokio_stream::iter(vec![StreamTouchpointsRequest {
            touchpoints: many(1001, "streamed"),
        }]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // 100,000 properties on one touchpoint (about 2 MB, under the size limit).
    let mut huge = many(1, "huge-map").remove(0);
    huge.properties = (0..100_000).map(|n| (format!("p{n}"), text("x"))).collect();
    let status = journey
        .record_touchpoint(RecordTouchpointRequest {
            touchpoint: Some(huge),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("at most 64 properties"),
        "{}",
        status.message()
    );

    // 100,000 attributes on a new profile.
    let status = app
        .profile()
        .await
        .create_profile(CreateProfileRequest {
            identifiers: vec![identifier(IdentifierType::Email, "huge@example.com")],
            attributes: (0..100_000)
                .map(|n| (format!("a{n}"), text("x")))
                .collect::<HashMap<_, _>>(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // None of it did any work: no touchpoint, no profile.
    let db = app.database.connect().await;
    for (table, what) in [
        ("journey_touchpoints", "touchpoints"),
        ("profile_profiles", "profiles"),
    ] {
        let count: i64 = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT COUNT(*) FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index(0)
            .unwrap();
        assert_eq!(count, 0, "{what} stored from refused requests");
    }
    app.stop().await;
}

/// A stand-in for the profile service that records the deadline each call
/// arrives with, then never answers.
#[derive(Clone, Default)]
struct SilentProfiles {
    deadlines: Arc<std::sync::Mutex<Vec<Option<Duration>>>>,
}

impl tonic::server::NamedService for SilentProfiles {
    const NAME: &'static str = "cairn.profile.v1.ProfileService";
}

impl tower::Service<http::Request<tonic::body::Body>> for SilentProfiles {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let deadline = request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(cairn_runtime::deadline::parse_grpc_timeout);
        self.deadlines.lock().unwrap().push(deadline);
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(tonic::Status::unavailable("never").into_http())
        })
    }
}

#[tokio::test]
async fn the_callers_deadline_bounds_the_calls_to_other_services() {
    let profiles = SilentProfiles::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(profiles.clone())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let app = spawn_app_with(Options {
        services: vec![ServiceKind::Journey],
        adjust: Box::new(move |settings| {
            settings.profile_addr = Some(format!("http://{address}"));
            // Far longer than the caller's deadline below.
            settings.peer_deadline_ms = 20_000;
        }),
        ..Default::default()
    })
    .await;
    let caller_deadline = Duration::from_millis(800);
    let mut request = tonic::Request::new(RecordTouchpointRequest {
        touchpoint: Some(touchpoint(
            "deadline-1",
            identifier(IdentifierType::CookieId, "deadline-visitor"),
            Channel::Web,
            TouchpointType::PageView,
            1,
            &[],
        )),
    });
    request.set_timeout(caller_deadline);
    let started = tokio::time::Instant::now();
    let status = tokio::time::timeout(
        Duration::from_secs(15),
        app.journey().await.record_touchpoint(request),
    )
    .await
    .expect("answered long before the peer deadline")
    .unwrap_err();
    let took = started.elapsed();
    // DEADLINE_EXCEEDED from the server, or CANCELLED when tonic's client
    // gives up at the same instant first.
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    let seen = profiles.deadlines.lock().unwrap().clone();
    assert!(
        !seen.is_empty(),
        "the journey service called the profile service"
    );
    for deadline in &seen {
        let deadline = deadline.expect("every peer call carries a deadline");
        assert!(
            deadline <= caller_deadline,
            "a peer call got {deadline:?}, more than the caller's {caller_deadline:?}"
        );
    }
    app.stop().await;
    server.abort();
}

/// Resident memory of this process, in KiB.
fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_stream_faster_than_the_store_is_held_back_not_buffered() {
    const MESSAGES: usize = 2000;
    const PER_MESSAGE: usize = 100;
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
    // Every database round trip now takes 20 ms longer each way: the store
    // writes a few touchpoints a second while the client could send
    // thousands.
    postgres.set_latency(Duration::from_millis(20));
    let taken = Arc::new(AtomicUsize::new(0));
    let outgoing = {
        let taken = taken.clone();
        futures::stream::iter(0..MESSAGES).map(move |number| {
            taken.fetch_add(1, Ordering::SeqCst);
            StreamTouchpointsRequest {
                touchpoints: (0..PER_MESSAGE)
                    .map(|n| {
                        touchpoint(
                            &format!("flood-{number}-{n}"),
                            identifier(IdentifierType::CookieId, &format!("flood-{}", n % 10)),
                            Channel::Web,
                            TouchpointType::PageView,
                            1,
                            &[("padding", &"x".repeat(64))],
                        )
                    })
                    .collect(),
            }
        })
    };
    let before = resident_kib();
    let mut client: JourneyServiceClient<_> = app.journey().await;
    let mut acks = client
        .stream_touchpoints(outgoing)
        .await
        .unwrap()
        .into_inner();
    let mut acknowledged = 0;
    let mut peak = before;
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(8);
    while tokio::time::Instant::now() < watch_until {
        if let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_millis(250), acks.message())
            .await
            .map(Result::transpose)
        {
            acknowledged += 1;
        }
        peak = peak.max(resident_kib());
    }
    let taken = taken.load(Ordering::SeqCst);
    let held = taken - acknowledged;
    eprintln!(
        "backpressure: {taken} of {MESSAGES} messages taken from the client in 8 s, \
         {acknowledged} acknowledged, {held} held in flight \
         (about {} KiB of touchpoints); resident memory {before} KiB → peak {peak} KiB",
        held * PER_MESSAGE * 120 / 1024
    );
    // HTTP/2 flow control (a window of about 1 MiB per stream) and the
    // service's bounded acknowledgement queue hold the client back: it
    // cannot hand over more than a few hundred messages beyond what is
    // stored, let alone all of them.
    assert!(
        held <= 400,
        "{held} messages buffered beyond what was stored"
    );
    assert!(taken < MESSAGES, "the whole stream was taken in");
    assert!(
        peak.saturating_sub(before) < 256 * 1024,
        "resident memory grew from {before} KiB to {peak} KiB"
    );
    drop(acks);
    drop(client);
    postgres.set_latency(Duration::ZERO);
    app.stop().await;
}

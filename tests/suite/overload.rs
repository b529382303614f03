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
    /// The client each call said it was for (`cairn-on-behalf-of-bin`, decoded).
    on_behalf_of: Arc<std::sync::Mutex<Vec<Option<String>>>>,
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
        let client = tonic::metadata::MetadataMap::from_headers(request.headers().clone())
            .get_bin(cairn_runtime::caller::ON_BEHALF_OF)
            .and_then(|value| value.to_bytes().ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        self.on_behalf_of.lock().unwrap().push(client);
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

#[tokio::test]
async fn a_service_names_its_callers_client_in_the_calls_it_makes_to_others() {
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
        }),
        ..Default::default()
    })
    .await;
    let mut request = tonic::Request::new(RecordTouchpointRequest {
        touchpoint: Some(touchpoint(
            "on-behalf-1",
            identifier(IdentifierType::CookieId, "on-behalf-visitor"),
            Channel::Web,
            TouchpointType::PageView,
            1,
            &[],
        )),
    });
    request.set_timeout(Duration::from_millis(500));
    // The harness's token names the subject "test".
    let _ = app.journey().await.record_touchpoint(request).await;
    let seen = profiles.on_behalf_of.lock().unwrap().clone();
    assert!(
        !seen.is_empty(),
        "the journey service called the profile service"
    );
    for client in &seen {
        assert_eq!(
            client.as_deref(),
            Some("subject test"),
            "every peer call names the client it is for"
        );
    }
    app.stop().await;
    server.abort();
}

/// A profile client whose token names `subject` with `scopes`, and whose
/// calls carry `on_behalf_of` as the client they are for, when given.
async fn profile_client_for(
    app: &TestApp,
    token: &str,
    on_behalf_of: Option<&str>,
) -> ProfileServiceClient<InterceptedService<tonic::transport::Channel, NamesClient>> {
    ProfileServiceClient::new(InterceptedService::new(
        app.channel(ServiceKind::Profile).await,
        NamesClient {
            authorization: format!("Bearer {token}"),
            on_behalf_of: on_behalf_of.map(str::to_string),
        },
    ))
}

/// Sends a bearer token and, when set, the client a call says it is for.
#[derive(Clone)]
struct NamesClient {
    authorization: String,
    on_behalf_of: Option<String>,
}

impl tonic::service::Interceptor for NamesClient {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.authorization.parse().unwrap());
        if let Some(client) = &self.on_behalf_of {
            request.metadata_mut().insert_bin(
                cairn_runtime::caller::ON_BEHALF_OF,
                tonic::metadata::MetadataValue::from_bytes(client.as_bytes()),
            );
        }
        Ok(request)
    }
}

#[tokio::test]
async fn a_services_call_counts_against_its_client_and_no_client_can_name_another() {
    let app = spawn_app_with(Options {
        services: vec![ServiceKind::Profile],
        adjust: Box::new(|settings| settings.client_max_in_flight = 2),
        ..Default::default()
    })
    .await;
    // The client "test" (the harness's token) holds two calls open: its limit.
    let (first, first_call) = app.hold_create_profile_call().await;
    let (second, second_call) = app.hold_create_profile_call().await;

    // A Cairn service's own token, as the recommendation service presents it.
    let service =
        cairn_runtime::auth::ServiceCredentials::from_settings(&app.settings, "recommendation")
            .authorization()
            .unwrap();
    let service = service.trim_start_matches("Bearer ").to_string();
    let status = profile_client_for(&app, &service, Some("subject test"))
        .await
        .list_profiles(ListProfilesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "a service's call for a client over its limit is that client's: {status:?}"
    );
    assert!(
        status.message().starts_with("subject test already has"),
        "{}",
        status.message()
    );
    profile_client_for(&app, &service, None)
        .await
        .list_profiles(ListProfilesRequest::default())
        .await
        .expect("the service's own calls have their own allowance");
    profile_client_for(&app, &service, Some("subject someone-else"))
        .await
        .list_profiles(ListProfilesRequest::default())
        .await
        .expect("a call for another client counts against that client");

    // An ordinary client cannot spend another's allowance by naming it ...
    let mallory = cairn_runtime::auth::mint_token(
        &SecretString::from(TEST_KEY),
        "mallory",
        &["profile.read"],
        Duration::from_secs(600),
        None,
        None,
    )
    .unwrap();
    profile_client_for(&app, &mallory, Some("subject test"))
        .await
        .list_profiles(ListProfilesRequest::default())
        .await
        .expect("a client naming another client is counted as itself");
    // ... nor escape its own limit by naming someone else.
    let test = app.token(&["profile.read"]);
    let status = profile_client_for(&app, &test, Some("subject someone-else"))
        .await
        .list_profiles(ListProfilesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().starts_with("subject test already has"),
        "{}",
        status.message()
    );

    drop(first);
    drop(second);
    let _ = first_call.await;
    let _ = second_call.await;
    app.stop().await;
}

/// The `per_mille`th latency of `sorted`, in milliseconds.
fn percentile_ms(sorted: &[Duration], per_mille: usize) -> f64 {
    let index = (sorted.len() * per_mille / 1000).min(sorted.len() - 1);
    sorted[index].as_secs_f64() * 1000.0
}

/// `count` GetProfile calls of the client `victim`, one after another, each
/// with a deadline of `deadline`; their latencies and their errors.
async fn read_profiles(
    app: &TestApp,
    profile_id: &str,
    count: usize,
    deadline: Duration,
) -> (Vec<Duration>, Vec<tonic::Status>) {
    use cairn_contract::common::v1::{CustomerRef, customer_ref};
    use cairn_contract::profile::v1::GetProfileRequest;
    let mut victim = profile_client_of(app, "victim").await;
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for _ in 0..count {
        let mut request = tonic::Request::new(GetProfileRequest {
            customer: Some(CustomerRef {
                customer: Some(customer_ref::Customer::ProfileId(profile_id.into())),
            }),
            ..Default::default()
        });
        request.set_timeout(deadline);
        let started = tokio::time::Instant::now();
        match victim.get_profile(request).await {
            Ok(_) => latencies.push(started.elapsed()),
            Err(status) => errors.push(status),
        }
    }
    latencies.sort();
    (latencies, errors)
}

#[tokio::test]
async fn a_flood_of_decisions_slows_its_sender_not_another_clients_profile_reads() {
    use cairn_contract::common::v1::{CustomerRef, customer_ref};
    use cairn_contract::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
    use cairn_contract::recommendation::v1::{
        Action, ActionKind, CreateActionRequest, DecideRequest,
    };

    const FLOODERS: usize = 320;
    let app = spawn_app_with(Options {
        services: vec![ServiceKind::Profile, ServiceKind::Recommendation],
        ..Default::default()
    })
    .await;
    let open_limit = app.settings.client_max_in_flight;
    let victim_profile = app
        .create_profile(
            vec![identifier(IdentifierType::CrmId, "victim-1")],
            &[("plan", "gold")],
        )
        .await;
    let flooded_profile = app
        .create_profile(
            vec![identifier(IdentifierType::CrmId, "flooded-1")],
            &[("plan", "gold")],
        )
        .await;
    let mut catalogue = RecommendationServiceClient::new(
        app.authed(ServiceKind::Recommendation, &["recommendation.write"])
            .await,
    );
    catalogue
        .create_action(CreateActionRequest {
            action: Some(Action {
                action_id: "flood-offer".into(),
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

    let victim_deadline = Duration::from_secs(2);
    let (baseline, baseline_errors) =
        read_profiles(&app, &victim_profile, 200, victim_deadline).await;
    assert!(baseline_errors.is_empty(), "{baseline_errors:?}");

    // The flooder: more Decide calls at once than its open-call limit, over
    // two connections (one connection carries at most 256 streams at once).
    let flood_token = cairn_runtime::auth::mint_token(
        &SecretString::from(TEST_KEY),
        "flooder",
        &["recommendation.decide"],
        Duration::from_secs(600),
        None,
        None,
    )
    .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(std::sync::Mutex::new(Vec::<tonic::Status>::new()));
    let other = Arc::new(std::sync::Mutex::new(Vec::<tonic::Status>::new()));
    let mut flood = Vec::new();
    let connections = [
        app.with_token(ServiceKind::Recommendation, &flood_token)
            .await,
        app.with_token(ServiceKind::Recommendation, &flood_token)
            .await,
    ];
    for flooder in 0..FLOODERS {
        let mut client = RecommendationServiceClient::new(connections[flooder % 2].clone());
        let (stop, served, refused, other) =
            (stop.clone(), served.clone(), refused.clone(), other.clone());
        let profile_id = flooded_profile.clone();
        flood.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let request = DecideRequest {
                    customer: Some(CustomerRef {
                        customer: Some(customer_ref::Customer::ProfileId(profile_id.clone())),
                    }),
                    channel: Channel::Web as i32,
                    max_actions: 1,
                    ..Default::default()
                };
                match client.decide(request).await {
                    Ok(_) => {
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(status) if status.code() == Code::ResourceExhausted => {
                        refused.lock().unwrap().push(status);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(status) => other.lock().unwrap().push(status),
                }
            }
        }));
    }
    // The flood builds up before the victim reads.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (during, during_errors) = read_profiles(&app, &victim_profile, 200, victim_deadline).await;
    stop.store(true, Ordering::SeqCst);
    for task in flood {
        let _ = task.await;
    }
    let refused = refused.lock().unwrap().clone();
    let other = other.lock().unwrap().clone();
    eprintln!(
        "victim GetProfile alone: p50 {:.1} ms, p99 {:.1} ms; while {FLOODERS} Decide calls at \
         once flood recommendation (open-call limit {open_limit}): p50 {:.1} ms, p99 {:.1} ms, \
         errors {}; flooder served {}, refused with RESOURCE_EXHAUSTED {}, other errors {}",
        percentile_ms(&baseline, 500),
        percentile_ms(&baseline, 990),
        percentile_ms(&during, 500),
        percentile_ms(&during, 990),
        during_errors.len(),
        served.load(Ordering::SeqCst),
        refused.len(),
        other.len(),
    );
    assert!(
        during_errors.is_empty(),
        "the victim is served within its {victim_deadline:?} deadline throughout the flood: {:?}",
        &during_errors[..during_errors.len().min(3)]
    );
    assert!(
        served.load(Ordering::SeqCst) > 0,
        "the flooder is served, slowly"
    );
    assert!(
        !refused.is_empty(),
        "the flooder is refused once over its open calls"
    );
    assert!(
        refused[0].message().contains("subject flooder"),
        "{}",
        refused[0].message()
    );
    app.stop().await;
}

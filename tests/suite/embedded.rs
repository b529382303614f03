//! The embedded defaults of `make run`: SQLite files, the in-process bus and
//! session store, no servers. A customer walks through profile, journey,
//! session, recommendation and feedback on them.

use cairn::Suite;
use cairn_contract::common::v1::{Channel, IdentifierType};
use cairn_contract::journey::v1::journey_service_client::JourneyServiceClient;
use cairn_contract::journey::v1::{
    CartItem, GetJourneyStateRequest, RecordTouchpointsRequest, ResumeSessionRequest, Session,
    TouchpointOutcome, TouchpointType, UpdateSessionRequest,
};
use cairn_contract::profile::v1::profile_service_client::ProfileServiceClient;
use cairn_contract::profile::v1::{CreateProfileRequest, IdentifyProfileRequest};
use cairn_contract::recommendation::v1::DecideRequest;
use cairn_contract::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use cairn_runtime::{ServiceKind, Settings};
use cairn_tests::{by_identifier, identifier, touchpoint};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn the_suite_runs_on_sqlite_and_in_process_state() {
    let data = std::env::temp_dir().join(format!("cairn-embedded-{}", uuid::Uuid::new_v4()));
    let mut settings = Settings::defaults();
    for service in ServiceKind::ALL {
        settings.set_port(service, 0);
    }
    settings.data_dir = data.clone();
    settings.auth_disabled = true;
    settings.metrics_port = 0;
    assert!(settings.database_url.is_none() && settings.redis_url.is_none());
    let shutdown = CancellationToken::new();
    let suite = Suite::start(settings, &ServiceKind::ALL, shutdown.clone())
        .await
        .unwrap_or_else(|error| panic!("the embedded suite did not start: {error}"));
    let address = |service| format!("http://{}", suite.addresses[&service]);

    let email = identifier(IdentifierType::Email, "embedded@example.com");
    let mut profile = ProfileServiceClient::connect(address(ServiceKind::Profile))
        .await
        .unwrap();
    let profile_id = profile
        .create_profile(CreateProfileRequest {
            identifiers: vec![email.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap()
        .profile_id;

    let mut journey = JourneyServiceClient::connect(address(ServiceKind::Journey))
        .await
        .unwrap();
    let results = journey
        .record_touchpoints(RecordTouchpointsRequest {
            touchpoints: vec![
                touchpoint(
                    "e-1",
                    email.clone(),
                    Channel::Web,
                    TouchpointType::ProductView,
                    9,
                    &[],
                ),
                touchpoint(
                    "e-2",
                    email.clone(),
                    Channel::MobileApp,
                    TouchpointType::AddToCart,
                    5,
                    &[("cart_id", "e-cart")],
                ),
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(
        results
            .iter()
            .all(|r| r.outcome == TouchpointOutcome::Stored as i32),
        "{results:?}"
    );
    let state = journey
        .get_journey_state(GetJourneyStateRequest {
            customer: Some(by_identifier(email.clone())),
            journey_id: "guided_shopping".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .state
        .unwrap();
    assert_eq!(state.current_stage, "cart");
    let session = journey
        .resume_session(ResumeSessionRequest {
            customer: Some(by_identifier(email.clone())),
            channel: Channel::Web as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(session.started);
    let customer_session = session.session.unwrap_or_default();

    // A visitor fills a cart on the web, then logs in as the customer: the
    // in-process store combines the two sessions as Redis does.
    let cookie = identifier(IdentifierType::CookieId, "embedded-visitor");
    journey
        .resume_session(ResumeSessionRequest {
            customer: Some(by_identifier(cookie.clone())),
            channel: Channel::Web as i32,
        })
        .await
        .unwrap();
    journey
        .update_session(UpdateSessionRequest {
            customer: Some(by_identifier(cookie.clone())),
            channel: Channel::Web as i32,
            session: Some(Session {
                cart: vec![CartItem {
                    product_offering_id: "phone-x".into(),
                    quantity: 1,
                    unit_price: None,
                }],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["cart".into()],
            }),
        })
        .await
        .unwrap();
    let login = profile
        .identify_profile(IdentifyProfileRequest {
            identifiers: vec![cookie, email.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(login.merges.len(), 1);
    let resumed = journey
        .resume_session(ResumeSessionRequest {
            customer: Some(by_identifier(email.clone())),
            channel: Channel::MobileApp as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!resumed.started);
    let resumed = resumed.session.unwrap_or_default();
    assert_eq!(resumed.session_id, customer_session.session_id);
    assert_eq!(resumed.cart.len(), 1, "the visitor's cart line");

    let mut recommendation =
        RecommendationServiceClient::connect(address(ServiceKind::Recommendation))
            .await
            .unwrap();
    let decision = recommendation
        .decide(DecideRequest {
            customer: Some(by_identifier(email)),
            channel: Channel::Web as i32,
            max_actions: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decision.profile_id, profile_id);
    assert!(!decision.decision_id.is_empty());

    shutdown.cancel();
    suite.wait().await.unwrap();
    for service in ["profile", "journey", "recommendation", "feedback"] {
        assert!(data.join(format!("{service}.db")).exists(), "{service}.db");
    }
    let _ = std::fs::remove_dir_all(data);
}

/// The race `make run`'s newcomer meets first: twenty IdentifyProfile calls
/// for one customer at once (a login on many tabs), then twenty batches of
/// touchpoints at once, each on its own connection, on the embedded SQLite
/// files. Before write transactions took SQLite's write lock at their start
/// (`BEGIN IMMEDIATE`), 18 or 19 of the 20 identify calls answered INTERNAL
/// ("database is locked"). The same race on PostgreSQL is
/// `profiles::two_concurrent_identify_calls_leave_one_survivor_and_lose_nothing`.
#[tokio::test]
async fn concurrent_identify_and_ingestion_on_sqlite_wait_their_turn_and_lose_nothing() {
    use cairn_contract::journey::v1::ListTimelineRequest;
    use cairn_contract::profile::v1::{
        IdentifyProfileRequest, ListMergesRequest, ResolveProfileRequest,
    };

    let data = std::env::temp_dir().join(format!("cairn-embedded-{}", uuid::Uuid::new_v4()));
    let mut settings = Settings::defaults();
    for service in ServiceKind::ALL {
        settings.set_port(service, 0);
    }
    settings.data_dir = data.clone();
    settings.auth_disabled = true;
    settings.metrics_port = 0;
    let shutdown = CancellationToken::new();
    let suite = Suite::start(settings, &ServiceKind::ALL, shutdown.clone())
        .await
        .unwrap_or_else(|error| panic!("the embedded suite did not start: {error}"));
    let address = |service| format!("http://{}", suite.addresses[&service]);

    let cookie = identifier(IdentifierType::CookieId, "sqlite-race-cookie");
    let email = identifier(IdentifierType::Email, "sqlite-race@example.com");
    let mut profile = ProfileServiceClient::connect(address(ServiceKind::Profile))
        .await
        .unwrap();
    let anonymous = profile
        .resolve_profile(ResolveProfileRequest {
            identifier: Some(cookie.clone()),
            create_if_missing: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap()
        .profile_id;
    let known = profile
        .create_profile(CreateProfileRequest {
            identifiers: vec![email.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap()
        .profile_id;
    assert_ne!(anonymous, known);

    let logins = (0..20).map(|_| {
        let address = address(ServiceKind::Profile);
        let identifiers = vec![cookie.clone(), email.clone()];
        async move {
            let mut client = ProfileServiceClient::connect(address).await.unwrap();
            client
                .identify_profile(IdentifyProfileRequest { identifiers })
                .await
                .map(|response| response.into_inner().profile.unwrap().profile_id)
        }
    });
    let outcomes = futures::future::join_all(logins).await;
    let failed: Vec<_> = outcomes
        .iter()
        .filter_map(|outcome| outcome.as_ref().err())
        .map(|status| format!("{:?}: {}", status.code(), status.message()))
        .collect();
    println!(
        "identify calls at once on SQLite: 20, failed: {}",
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert!(
        outcomes
            .iter()
            .all(|outcome| outcome.as_ref().ok() == Some(&known)),
        "one survivor, the email's profile: {outcomes:?}"
    );
    let merges = profile
        .list_merges(ListMergesRequest {
            profile_id: known.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .merges;
    assert_eq!(merges.len(), 1, "merged once");

    let batches = (0..20).map(|batch| {
        let address = address(ServiceKind::Journey);
        let email = email.clone();
        async move {
            let mut client = JourneyServiceClient::connect(address).await.unwrap();
            let touchpoints = (0..10)
                .map(|index| {
                    touchpoint(
                        &format!("sqlite-race-{batch}-{index}"),
                        email.clone(),
                        Channel::Web,
                        TouchpointType::ProductView,
                        30,
                        &[],
                    )
                })
                .collect();
            client
                .record_touchpoints(RecordTouchpointsRequest { touchpoints })
                .await
                .map(|response| response.into_inner().results)
        }
    });
    let outcomes = futures::future::join_all(batches).await;
    let mut stored = 0;
    for outcome in outcomes {
        let results = outcome.unwrap_or_else(|status| {
            panic!("a batch failed: {:?}: {}", status.code(), status.message())
        });
        for result in results {
            assert_eq!(
                result.outcome,
                TouchpointOutcome::Stored as i32,
                "{result:?}"
            );
            stored += 1;
        }
    }
    println!("touchpoints in 20 batches at once on SQLite: 200, stored: {stored}");
    assert_eq!(stored, 200);
    let mut journey = JourneyServiceClient::connect(address(ServiceKind::Journey))
        .await
        .unwrap();
    let timeline = journey
        .list_timeline(ListTimelineRequest {
            customer: Some(by_identifier(email)),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .touchpoints;
    assert_eq!(timeline.len(), 200, "each touchpoint once on the timeline");

    shutdown.cancel();
    suite.wait().await.unwrap();
    let _ = std::fs::remove_dir_all(data);
}

//! Abandonment: a customer who stays in a stage beyond its limit is
//! detected once per cart, even with three journey replicas claiming
//! deadlines from one database, and re-engagement that cannot reach the
//! recommendation service is retried, never dropped.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cairn_contract::common::v1::{Channel, IdentifierType};
use cairn_contract::events::v1::SubscribeRequest;
use cairn_contract::events::v1::event_hub_service_client::EventHubServiceClient;
use cairn_contract::journey::v1::journey_service_client::JourneyServiceClient;
use cairn_contract::journey::v1::{
    CreateJourneyDefinitionRequest, GetJourneyStateRequest, JourneyDefinition, JourneyStatus,
    ListAbandonmentsRequest, RecordTouchpointsRequest, Stage, TouchpointOutcome, TouchpointType,
};
use cairn_runtime::ServiceKind;
use cairn_tests::{
    Options, TestApp, by_identifier, eventually, identifier, spawn_app_with, spawn_on, touchpoint,
};

/// The journey client of the tests.
type JourneyClient = JourneyServiceClient<cairn_tests::AuthedChannel>;

/// Carts in the test.
const CARTS: usize = 12;

fn fast(settings: &mut cairn_runtime::Settings) {
    settings.deadline_poll_ms = 20;
    settings.reengagement_retry_ms = 60_000;
}

/// A journey replica beside `app`, on its database and Redis prefix.
async fn replica(app: &TestApp) -> TestApp {
    let profile = app.addresses[&ServiceKind::Profile];
    let recommendation = app.addresses[&ServiceKind::Recommendation];
    spawn_on(
        Arc::clone(&app.database),
        app.redis_prefix.clone(),
        Options {
            services: vec![ServiceKind::Journey],
            adjust: Box::new(move |settings| {
                fast(settings);
                settings.profile_addr = Some(format!("http://{profile}"));
                settings.recommendation_addr = Some(format!("http://{recommendation}"));
            }),
            ..Default::default()
        },
    )
    .await
}

/// A journey whose cart stage may last two seconds.
async fn quick_cart(journey: &mut JourneyClient) {
    journey
        .create_journey_definition(CreateJourneyDefinitionRequest {
            definition: Some(JourneyDefinition {
                journey_id: "quick_cart".into(),
                stages: vec![
                    Stage {
                        name: "cart".into(),
                        condition: r#"touchpoint.type == "add_to_cart""#.into(),
                        max_duration: Some(prost_types::Duration {
                            seconds: 2,
                            nanos: 0,
                        }),
                        key_property: "cart_id".into(),
                        ..Default::default()
                    },
                    Stage {
                        name: "bought".into(),
                        condition: r#"touchpoint.type == "purchase""#.into(),
                        completes_journey: true,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn three_replicas_detect_each_abandoned_cart_exactly_once() {
    let app = spawn_app_with(Options {
        adjust: Box::new(fast),
        ..Default::default()
    })
    .await;
    let second = replica(&app).await;
    let third = replica(&app).await;
    let mut journey = app.journey().await;
    quick_cart(&mut journey).await;
    let mut hub = EventHubServiceClient::new(
        app.authed(ServiceKind::Journey, &["events.subscribe"])
            .await,
    );
    let mut events = hub
        .subscribe(SubscribeRequest {
            topics: vec!["journey.abandonment_detected".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    // Each customer puts a cart aside; one of them buys in time and is not abandoned.
    let cart = |n: usize| {
        touchpoint(
            &format!("cart-{n}"),
            identifier(IdentifierType::CookieId, &format!("cart-owner-{n}")),
            Channel::Web,
            TouchpointType::AddToCart,
            0,
            &[("cart_id", &format!("c-{n}"))],
        )
    };
    // The buyer's two touchpoints come first, so the purchase is in well
    // before the cart's limit however slow the machine; made in this order,
    // the purchase happened after the cart.
    let mut touchpoints = vec![cart(0)];
    touchpoints.push(touchpoint(
        "bought-0",
        identifier(IdentifierType::CookieId, "cart-owner-0"),
        Channel::Web,
        TouchpointType::Purchase,
        0,
        &[],
    ));
    touchpoints.extend((1..CARTS).map(cart));
    let results = journey
        .record_touchpoints(RecordTouchpointsRequest { touchpoints })
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

    let mut seen = BTreeSet::new();
    while seen.len() < CARTS - 1 {
        let event = tokio::time::timeout(Duration::from_secs(15), events.message())
            .await
            .expect("abandonments were not all detected within 15 s")
            .unwrap()
            .unwrap()
            .event
            .unwrap();
        assert!(
            seen.insert(event.profile_id.clone()),
            "a second detection for {}",
            event.profile_id
        );
    }
    // Give the replicas many more passes: nothing more may be detected.
    if let Ok(extra) = tokio::time::timeout(Duration::from_millis(800), events.message()).await {
        panic!("an abandonment was detected twice: {extra:?}");
    }
    let listed = journey
        .list_abandonments(ListAbandonmentsRequest {
            journey_id: "quick_cart".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .abandonments;
    assert_eq!(listed.len(), CARTS - 1);
    let keys: BTreeSet<&str> = listed.iter().map(|a| a.key.as_str()).collect();
    assert!(
        !keys.contains("c-0"),
        "the customer who bought was not abandoned"
    );
    assert_eq!(keys.len(), CARTS - 1);

    let state = journey
        .get_journey_state(GetJourneyStateRequest {
            customer: Some(by_identifier(identifier(
                IdentifierType::CookieId,
                "cart-owner-1",
            ))),
            journey_id: "quick_cart".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .state
        .unwrap();
    assert_eq!(state.status, JourneyStatus::Abandoned as i32);
    assert_eq!(state.current_stage, "cart");

    // The recommendation service does not answer Decide here: re-engagement
    // is kept for a retry, never dropped.
    let retrying = eventually(Duration::from_secs(10), "re-engagement attempted", || {
        let mut journey = journey.clone();
        async move {
            let listed = journey
                .list_abandonments(ListAbandonmentsRequest {
                    journey_id: "quick_cart".into(),
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner()
                .abandonments;
            listed
                .iter()
                .all(|a| a.reengagement_status != "pending")
                .then_some(listed)
        }
    })
    .await;
    assert!(
        retrying.iter().all(|a| a.reengagement_status == "retrying"
            || a.reengagement_status == "sent"
            || a.reengagement_status == "nothing_to_send"),
        "{retrying:?}"
    );
    let mut second = second;
    let mut third = third;
    second.stop_services().await;
    third.stop_services().await;
    app.stop().await;
}

#[tokio::test]
async fn reengagement_waits_for_recommendation_and_is_sent_once_it_answers() {
    use cairn_contract::profile::v1::{Consent, RecordConsentRequest};
    use cairn_contract::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
    use cairn_contract::recommendation::v1::{
        Action, ActionKind, ContactPolicy, CreateActionRequest, QuietHours,
        UpdateContactPolicyRequest,
    };

    // The port recommendation will listen on once it starts; nothing answers there yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = spawn_app_with(Options {
        services: vec![ServiceKind::Profile, ServiceKind::Journey],
        adjust: Box::new(move |settings| {
            fast(settings);
            settings.reengagement_retry_ms = 200;
            settings.recommendation_addr = Some(format!("http://127.0.0.1:{port}"));
        }),
        ..Default::default()
    })
    .await;
    let mut journey = app.journey().await;
    quick_cart(&mut journey).await;
    let email = identifier(IdentifierType::Email, "stalled@example.com");
    let profile_id = app.create_profile(vec![email.clone()], &[]).await;
    app.profile()
        .await
        .record_consent(RecordConsentRequest {
            customer: Some(by_identifier(email.clone())),
            consent: Some(Consent {
                purpose: "marketing".into(),
                channel: Channel::Email as i32,
                granted: true,
                source: "web_form".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    journey
        .record_touchpoints(RecordTouchpointsRequest {
            touchpoints: vec![touchpoint(
                "stalled-cart",
                email,
                Channel::Web,
                TouchpointType::AddToCart,
                0,
                &[("cart_id", "stalled-1")],
            )],
        })
        .await
        .unwrap();
    let status_of = |journey: &JourneyClient| {
        let mut journey = journey.clone();
        async move {
            journey
                .list_abandonments(ListAbandonmentsRequest {
                    journey_id: "quick_cart".into(),
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner()
                .abandonments
                .into_iter()
                .next()
        }
    };
    let waiting = eventually(Duration::from_secs(15), "a failed attempt", || async {
        status_of(&journey)
            .await
            .filter(|a| a.reengagement_status == "retrying")
    })
    .await;
    assert_eq!(waiting.profile_id, profile_id);

    // The catalogue is written first, through a recommendation replica the
    // journey does not call (they share the database), so that the first
    // re-engagement that reaches recommendation finds the offer.
    let recommendation_on = |port: u16| {
        let profile = app.addresses[&ServiceKind::Profile];
        spawn_on(
            Arc::clone(&app.database),
            app.redis_prefix.clone(),
            Options {
                services: vec![ServiceKind::Recommendation],
                adjust: Box::new(move |settings| {
                    settings.set_port(ServiceKind::Recommendation, port);
                    settings.profile_addr = Some(format!("http://{profile}"));
                }),
                ..Default::default()
            },
        )
    };
    let mut setup = recommendation_on(0).await;
    let mut catalogue = RecommendationServiceClient::new(
        setup
            .authed(
                ServiceKind::Recommendation,
                &["recommendation.read", "recommendation.write"],
            )
            .await,
    );
    catalogue
        .update_contact_policy(UpdateContactPolicyRequest {
            contact_policy: Some(ContactPolicy {
                quiet_hours: Some(QuietHours {
                    start_time: "00:00".into(),
                    end_time: "00:00".into(),
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["quiet_hours".into()],
            }),
        })
        .await
        .unwrap();
    catalogue
        .create_action(CreateActionRequest {
            action: Some(Action {
                action_id: "cart-rescue".into(),
                name: "Your cart is waiting".into(),
                kind: ActionKind::SalesOffer as i32,
                category: "cart".into(),
                channels: vec![Channel::Email as i32],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    setup.stop_services().await;
    assert_eq!(
        status_of(&journey).await.unwrap().reengagement_status,
        "retrying",
        "the journey's recommendation is still down"
    );

    // Recommendation comes up where the journey calls it.
    let recommendation = recommendation_on(port).await;
    let sent = eventually(
        Duration::from_secs(30),
        "the re-engagement sent",
        || async {
            status_of(&journey)
                .await
                .filter(|a| a.reengagement_status == "sent")
        },
    )
    .await;
    assert_eq!(sent.action_id, "cart-rescue");
    assert_eq!(sent.channel, Channel::Email as i32);
    assert!(!sent.decision_id.is_empty());
    let mut recommendation = recommendation;
    recommendation.stop_services().await;
    app.stop().await;
}

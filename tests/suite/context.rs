//! The customer context: one call gathers the profile, journey positions,
//! session and last touchpoints; a service that does not answer in time is
//! listed as missing instead of failing the call.

use std::time::Duration;

use cairn_contract::common::v1::{Channel, IdentifierType};
use cairn_contract::journey::v1::{
    GetCustomerContextRequest, RecordTouchpointsRequest, ResumeSessionRequest, TouchpointType,
};
use cairn_runtime::ServiceKind;
use cairn_tests::{
    Options, TestApp, by_identifier, identifier, spawn_app, spawn_app_with, touchpoint,
};

/// Gives `email`'s customer two touchpoints and a session.
async fn customer_with_history(app: &TestApp, email: &str) {
    let who = identifier(IdentifierType::Email, email);
    app.create_profile(vec![who.clone()], &[("language", "sv")])
        .await;
    let mut journey = app.journey().await;
    journey
        .record_touchpoints(RecordTouchpointsRequest {
            touchpoints: vec![
                touchpoint(
                    "ctx-1",
                    who.clone(),
                    Channel::Web,
                    TouchpointType::ProductView,
                    20,
                    &[],
                ),
                touchpoint(
                    "ctx-2",
                    who.clone(),
                    Channel::MobileApp,
                    TouchpointType::AddToCart,
                    10,
                    &[("cart_id", "ctx-cart")],
                ),
            ],
        })
        .await
        .unwrap();
    journey
        .resume_session(ResumeSessionRequest {
            customer: Some(by_identifier(who)),
            channel: Channel::MobileApp as i32,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn the_context_gathers_every_part_of_a_customer() {
    let app = spawn_app().await;
    customer_with_history(&app, "context@example.com").await;
    let context = app
        .journey()
        .await
        .get_customer_context(GetCustomerContextRequest {
            customer: Some(by_identifier(identifier(
                IdentifierType::Email,
                "context@example.com",
            ))),
            channel: Channel::CallCentre as i32,
            touchpoint_count: 1,
        })
        .await
        .unwrap()
        .into_inner();
    for part in ["profile", "journeys", "session", "recent_touchpoints"] {
        assert!(
            !context.missing_parts.iter().any(|missing| missing == part),
            "{part} missing: {:?}",
            context.missing_parts
        );
    }
    let profile = context.profile.unwrap();
    assert_eq!(profile.state, "known");
    assert_eq!(profile.language, "sv");
    let stages: Vec<(&str, &str)> = context
        .journeys
        .iter()
        .map(|j| (j.journey_id.as_str(), j.current_stage.as_str()))
        .collect();
    assert_eq!(
        stages,
        [("guided_shopping", "cart"), ("lifecycle", "research")]
    );
    assert_eq!(
        context.session.unwrap().last_channel,
        Channel::MobileApp as i32
    );
    let recent: Vec<&str> = context
        .recent_touchpoints
        .iter()
        .map(|t| t.touchpoint_id.as_str())
        .collect();
    assert_eq!(recent, ["ctx-2"], "newest first, as many as asked");
    app.stop().await;
}

#[tokio::test]
async fn services_that_do_not_answer_in_time_are_listed_as_missing() {
    // A listener that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_address = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            held.push(connection);
        }
    });
    let app = spawn_app_with(Options {
        services: vec![ServiceKind::Profile, ServiceKind::Journey],
        adjust: Box::new(move |settings| {
            settings.peer_deadline_ms = 500;
            settings.feedback_addr = Some(format!("http://{silent_address}"));
            settings.recommendation_addr = Some(format!("http://{silent_address}"));
        }),
        ..Default::default()
    })
    .await;
    customer_with_history(&app, "patient@example.com").await;
    let context = tokio::time::timeout(
        Duration::from_secs(20),
        app.journey()
            .await
            .get_customer_context(GetCustomerContextRequest {
                customer: Some(by_identifier(identifier(
                    IdentifierType::Email,
                    "patient@example.com",
                ))),
                channel: Channel::Chatbot as i32,
                touchpoint_count: 0,
            }),
    )
    .await
    .expect("the context call hung on silent services")
    .unwrap()
    .into_inner();
    let mut missing = context.missing_parts.clone();
    missing.sort();
    assert_eq!(missing, ["feedback", "next_best_action", "tickets"]);
    assert_eq!(context.recent_touchpoints.len(), 2);
    assert!(context.profile.is_some());
    app.stop().await;
}

//! The event bus: published by one service, consumed by another, and
//! followed by integrators with a resumable cursor.

use std::time::Duration;

use cairn_contract::common::v1::IdentifierType;
use cairn_contract::events::v1::event_hub_service_client::EventHubServiceClient;
use cairn_contract::events::v1::{SubscribeRequest, change_event::Payload};
use cairn_runtime::ServiceKind;
use cairn_tests::{TestApp, spawn_app};
use tokio_stream::StreamExt;

async fn create_profile(app: &TestApp, crm_id: &str) -> String {
    app.create_profile(
        vec![cairn_tests::identifier(IdentifierType::CrmId, crm_id)],
        &[],
    )
    .await
}

#[tokio::test]
async fn a_listener_that_reconnects_with_its_cursor_misses_nothing() {
    let app = spawn_app().await;
    let first = vec![
        create_profile(&app, "crm-1").await,
        create_profile(&app, "crm-2").await,
    ];

    // The hub of any service streams the whole suite's events: listen on journey's.
    let mut hub = EventHubServiceClient::new(
        app.authed(ServiceKind::Journey, &["events.subscribe"])
            .await,
    );
    let mut stream = hub
        .subscribe(SubscribeRequest {
            topics: vec!["profile.*".into()],
            cursor: String::new(),
            from_oldest: true,
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    let mut cursor = String::new();
    while seen.len() < 2 {
        let response = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("events arrive")
            .expect("the stream stays open")
            .unwrap();
        let event = response.event.unwrap();
        assert_eq!(event.topic, "profile.created");
        assert!(matches!(event.payload, Some(Payload::ProfileCreated(_))));
        seen.push(event.profile_id);
        cursor = response.cursor;
    }
    assert_eq!(seen, first);
    drop(stream);

    let second = vec![
        create_profile(&app, "crm-3").await,
        create_profile(&app, "crm-4").await,
    ];
    let mut resumed = hub
        .subscribe(SubscribeRequest {
            topics: vec!["profile.created".into()],
            cursor,
            from_oldest: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut after = Vec::new();
    while after.len() < 2 {
        let response = tokio::time::timeout(Duration::from_secs(10), resumed.next())
            .await
            .expect("events arrive")
            .expect("the stream stays open")
            .unwrap();
        after.push(response.event.unwrap().profile_id);
    }
    assert_eq!(
        after, second,
        "exactly the events after the cursor, in order"
    );
    let nothing_more = tokio::time::timeout(Duration::from_millis(500), resumed.next()).await;
    assert!(nothing_more.is_err(), "no duplicates follow");
    app.stop().await;
}

#[tokio::test]
async fn a_bad_cursor_or_topic_is_invalid_argument() {
    let app = spawn_app().await;
    let mut hub = EventHubServiceClient::new(
        app.authed(ServiceKind::Profile, &["events.subscribe"])
            .await,
    );
    let status = hub
        .subscribe(SubscribeRequest {
            topics: vec!["Profile Created".into()],
            cursor: "yesterday".into(),
            from_oldest: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    app.stop().await;
}

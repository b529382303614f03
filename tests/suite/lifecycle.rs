//! Graceful shutdown: a call in flight when SIGTERM arrives still completes.

use std::time::Duration;

use cairn_contract::common::v1::{Identifier, IdentifierType};
use cairn_contract::profile::v1::CreateProfileRequest;
use cairn_runtime::ServiceKind;
use cairn_tests::{Options, spawn_app_with};

#[tokio::test]
async fn shutdown_lets_an_in_flight_call_finish() {
    let mut app = spawn_app_with(Options {
        services: vec![ServiceKind::Profile],
        ..Default::default()
    })
    .await;
    // Open the call (headers sent) but hold its message back.
    let (sender, call) = app.hold_create_profile_call().await;

    app.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !call.is_finished(),
        "the call must still be open when shutdown begins"
    );

    sender
        .send(CreateProfileRequest {
            identifiers: vec![Identifier {
                r#type: IdentifierType::CrmId as i32,
                value: "crm-shutdown-1".into(),
                custom_type: String::new(),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    drop(sender);
    let response = call
        .await
        .unwrap()
        .expect("the in-flight call completes after shutdown began");
    assert!(!response.into_inner().profile.unwrap().profile_id.is_empty());

    app.stop_services().await;
    let address = app.addresses[&ServiceKind::Profile];
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "a stopped server accepts no new connections"
    );
    app.database.drop_database().await;
}

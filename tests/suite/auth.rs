//! Authentication: a token is required, and its scopes must cover the method.

use cairn_contract::profile::v1::ListProfilesRequest;
use cairn_contract::profile::v1::profile_service_client::ProfileServiceClient;
use cairn_runtime::ServiceKind;
use cairn_tests::{Options, spawn_app, spawn_app_with};
use tonic::Code;

#[tokio::test]
async fn a_call_without_a_token_is_unauthenticated() {
    let app = spawn_app().await;
    let mut client = ProfileServiceClient::new(app.authed(ServiceKind::Profile, &[]).await);
    let status = client
        .list_profiles(ListProfilesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("missing bearer token"),
        "{}",
        status.message()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_token_without_the_scope_is_permission_denied() {
    let app = spawn_app().await;
    let mut client =
        ProfileServiceClient::new(app.authed(ServiceKind::Profile, &["journey.ingest"]).await);
    let status = client
        .list_profiles(ListProfilesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("profile.read"),
        "{}",
        status.message()
    );

    let mut reader =
        ProfileServiceClient::new(app.authed(ServiceKind::Profile, &["profile.read"]).await);
    reader
        .list_profiles(ListProfilesRequest::default())
        .await
        .unwrap();
    app.stop().await;
}

#[tokio::test]
async fn a_forged_token_is_unauthenticated() {
    let app = spawn_app().await;
    let forged = cairn_runtime::auth::mint_token(
        &secrecy::SecretString::from("another-key-of-at-least-thirty-two-bytes"),
        "mallory",
        &["profile.read"],
        std::time::Duration::from_secs(60),
        None,
        None,
    )
    .unwrap();
    let mut client = ProfileServiceClient::new(app.channel(ServiceKind::Profile).await);
    let mut request = tonic::Request::new(ListProfilesRequest::default());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {forged}").parse().unwrap());
    let status = client.list_profiles(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    app.stop().await;
}

#[tokio::test]
async fn health_stays_open_without_a_token_and_auth_can_be_switched_off() {
    let app = spawn_app_with(Options {
        auth: false,
        services: vec![ServiceKind::Profile],
        ..Default::default()
    })
    .await;
    let mut client = ProfileServiceClient::new(app.authed(ServiceKind::Profile, &[]).await);
    client
        .list_profiles(ListProfilesRequest::default())
        .await
        .unwrap();
    app.stop().await;
}

//! Bad input and limits: the right status, with details a person can act on.

use std::collections::HashMap;

use cairn_contract::common::v1::{Value, value};
use cairn_contract::journey::v1::{RecordTouchpointRequest, Touchpoint};
use cairn_contract::profile::v1::{CreateProfileRequest, ListProfilesRequest};
use cairn_tests::spawn_app;
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test]
async fn an_invalid_request_names_every_bad_field() {
    let app = spawn_app().await;
    let mut journey = app.journey().await;
    let status = journey
        .record_touchpoint(RecordTouchpointRequest {
            touchpoint: Some(Touchpoint {
                touchpoint_id: String::new(),
                channel: 0,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    for expected in [
        "touchpoint.touchpoint_id",
        "touchpoint.customer",
        "touchpoint.channel",
        "touchpoint.type",
        "touchpoint.occurred_at",
    ] {
        assert!(
            fields.iter().any(|f| f == expected),
            "{expected} missing from {fields:?}"
        );
    }

    let mut profile = app.profile().await;
    let status = profile
        .list_profiles(ListProfilesRequest {
            page_size: 5000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let violation = &status.get_details_bad_request().unwrap().field_violations[0];
    assert_eq!(violation.field, "page_size");
    assert!(violation.description.contains("between 1 and 1000"));
    app.stop().await;
}

#[tokio::test]
async fn an_oversized_message_is_resource_exhausted() {
    let app = spawn_app().await;
    let mut profile = app.profile().await;
    let big = "x".repeat(app.settings.max_message_bytes + 1024);
    let status = profile
        .create_profile(CreateProfileRequest {
            identifiers: Vec::new(),
            attributes: HashMap::from([(
                "notes".to_string(),
                Value {
                    kind: Some(value::Kind::StringValue(big)),
                },
            )]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    app.stop().await;
}

#[tokio::test]
async fn calls_beyond_the_in_flight_limit_are_shed() {
    use cairn_contract::profile::v1::CreateProfileResponse;
    use cairn_runtime::ServiceKind;
    use cairn_tests::{Options, spawn_app_with};

    let app = spawn_app_with(Options {
        services: vec![ServiceKind::Profile],
        adjust: Box::new(|settings| settings.max_in_flight = 1),
        ..Default::default()
    })
    .await;
    // One call held open takes the only slot.
    let token = format!("Bearer {}", app.token(&["profile.write"]));
    let mut grpc = tonic::client::Grpc::new(app.channel(ServiceKind::Profile).await);
    grpc.ready().await.unwrap();
    let (sender, receiver) = tokio::sync::mpsc::channel::<CreateProfileRequest>(1);
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
    request
        .metadata_mut()
        .insert("authorization", token.parse().unwrap());
    let held = tokio::spawn(async move {
        let codec =
            tonic_prost::ProstCodec::<CreateProfileRequest, CreateProfileResponse>::default();
        let path =
            http::uri::PathAndQuery::from_static("/cairn.profile.v1.ProfileService/CreateProfile");
        grpc.client_streaming(request, path, codec).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let mut profile = app.profile().await;
    let status = profile
        .list_profiles(ListProfilesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("capacity"),
        "{}",
        status.message()
    );

    drop(sender);
    let _ = held.await.unwrap();
    profile
        .list_profiles(ListProfilesRequest::default())
        .await
        .expect("the slot is free again");
    app.stop().await;
}

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

//! W3C trace context: a caller's trace continues through a service-to-service call.

use cairn_contract::common::v1::Channel;
use cairn_contract::common::v1::{CustomerRef, Identifier, IdentifierType, customer_ref};
use cairn_contract::journey::v1::{RecordTouchpointRequest, Touchpoint, TouchpointType};
use cairn_tests::{eventually, spawn_app, telemetry};
use opentelemetry::Value;
use std::time::Duration;

fn attribute(span: &opentelemetry_sdk::trace::SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| match &kv.value {
            Value::String(text) => text.to_string(),
            other => other.to_string(),
        })
}

#[tokio::test]
async fn the_trace_id_crosses_from_journey_to_profile() {
    let app = spawn_app().await;
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let caller_span = format!("{:016x}", rand_u64());
    let mut journey = app.journey().await;
    let mut request = tonic::Request::new(RecordTouchpointRequest {
        touchpoint: Some(Touchpoint {
            touchpoint_id: format!("t-{}", uuid::Uuid::new_v4()),
            customer: Some(CustomerRef {
                customer: Some(customer_ref::Customer::Identifier(Identifier {
                    r#type: IdentifierType::CookieId as i32,
                    value: format!("cookie-{}", uuid::Uuid::new_v4()),
                    custom_type: String::new(),
                })),
            }),
            channel: Channel::Web as i32,
            r#type: TouchpointType::PageView as i32,
            occurred_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
            ..Default::default()
        }),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01").parse().unwrap(),
    );
    journey.record_touchpoint(request).await.unwrap();

    let (journey_span, profile_span) = eventually(
        Duration::from_secs(5),
        "both server spans of the trace",
        || async {
            let spans: Vec<_> = telemetry::finished_spans()
                .into_iter()
                .filter(|span| format!("{}", span.span_context.trace_id()) == trace_id)
                .collect();
            let find = |service: &str| {
                spans
                    .iter()
                    .find(|s| attribute(s, "cairn.service").as_deref() == Some(service))
                    .cloned()
            };
            Some((find("journey")?, find("profile")?))
        },
    )
    .await;
    assert_eq!(
        format!("{}", journey_span.parent_span_id),
        caller_span,
        "journey continues the caller's span"
    );
    assert_eq!(
        attribute(&profile_span, "rpc.method").as_deref(),
        Some("ResolveProfile"),
        "the profile span is the service-to-service call"
    );
    assert_ne!(
        profile_span.parent_span_id, journey_span.parent_span_id,
        "profile's parent is inside journey"
    );
    app.stop().await;
}

fn rand_u64() -> u64 {
    (uuid::Uuid::new_v4().as_u128() as u64) | 1
}

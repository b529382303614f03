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

/// Every span an OTLP exporter sent, as the OpenTelemetry Collector's trace
/// service receives them: the receiver the `cairn` process exports to.
#[derive(Clone, Default)]
struct Receiver {
    spans: std::sync::Arc<std::sync::Mutex<Vec<ReceivedSpan>>>,
}

/// One exported span: its trace id (hex), its parent span id (hex, empty
/// for a root), its resource's `service.name` and its attributes.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    service_name: String,
    attributes: std::collections::HashMap<String, String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn text_of(value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    match value.as_ref().and_then(|value| value.value.as_ref()) {
        Some(Any::StringValue(text)) => text.clone(),
        Some(Any::IntValue(number)) => number.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for Receiver
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let mut received = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service_name = resource_spans
                .resource
                .as_ref()
                .and_then(|resource| {
                    resource
                        .attributes
                        .iter()
                        .find(|kv| kv.key == "service.name")
                })
                .map(|kv| text_of(&kv.value))
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    received.push(ReceivedSpan {
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        service_name: service_name.clone(),
                        attributes: span
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), text_of(&kv.value)))
                            .collect(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

/// A port free at the moment of asking, for a child process to bind.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap()
}

/// Waits until the health service at `address` says SERVING (60 s at most:
/// the first run may build the binary).
async fn wait_until_serving(address: std::net::SocketAddr) {
    use tonic_health::pb::health_check_response::ServingStatus;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
        {
            let status = tonic_health::pb::health_client::HealthClient::new(channel)
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .map(|response| response.into_inner().status);
            if matches!(status, Ok(code) if code == ServingStatus::Serving as i32) {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the service at {address} did not become SERVING"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn traces_reach_the_otlp_endpoint_with_the_logs_quieted_to_warnings() {
    use cairn_contract::journey::v1::journey_service_client::JourneyServiceClient;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;

    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    // Profile and journey in a `cairn` process of their own (the tracing
    // subscriber is installed once per process), with the logs quieted as an
    // operator does: RUST_LOG=warn.
    let database = cairn_tests::TestDatabase::create().await;
    let (profile_port, journey_port) = (free_port(), free_port());
    let mut child = tokio::process::Command::new(cairn_tests::process::cairn_binary())
        .args(["serve", "--only", "profile", "--only", "journey"])
        .env_clear()
        .env("RUST_LOG", "warn")
        .env("DATABASE_URL", &database.url)
        .env("CAIRN_DATABASE_MAX_CONNECTIONS", "5")
        .env("REDIS_URL", cairn_tests::redis_url())
        .env(
            "CAIRN_REDIS_PREFIX",
            format!("cairn-test:{}:", uuid::Uuid::new_v4().simple()),
        )
        .env("CAIRN_AUTH_HS256_KEY", cairn_tests::TEST_KEY)
        .env("CAIRN_HOST", "127.0.0.1")
        .env("CAIRN_PROFILE_PORT", profile_port.to_string())
        .env("CAIRN_JOURNEY_PORT", journey_port.to_string())
        .env("CAIRN_METRICS_PORT", "0")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}"))
        // The batch exporter sends every 100 ms instead of every 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let journey_address: std::net::SocketAddr =
        format!("127.0.0.1:{journey_port}").parse().unwrap();
    wait_until_serving(format!("127.0.0.1:{profile_port}").parse().unwrap()).await;
    wait_until_serving(journey_address).await;

    let token = cairn_runtime::auth::mint_token(
        &secrecy::SecretString::from(cairn_tests::TEST_KEY),
        "test",
        &["journey.ingest"],
        Duration::from_secs(600),
        None,
        None,
    )
    .unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{journey_address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut journey =
        JourneyServiceClient::new(tonic::service::interceptor::InterceptedService::new(
            channel,
            cairn_tests::Bearer::token(&token),
        ));
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let caller_span = format!("{:016x}", rand_u64());
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

    let received = receiver.spans.clone();
    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let spans: Vec<ReceivedSpan> = received
                .lock()
                .unwrap()
                .iter()
                .filter(|span| span.trace_id == trace_id)
                .cloned()
                .collect();
            let find = |service: &str| {
                spans
                    .iter()
                    .find(|span| {
                        span.attributes.get("cairn.service").map(String::as_str) == Some(service)
                    })
                    .cloned()
            };
            if let (Some(journey), Some(profile)) = (find("journey"), find("profile")) {
                return (journey, profile, spans.len());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let everything = receiver.spans.lock().unwrap().len();
    let (journey_span, profile_span, of_the_trace) = outcome.unwrap_or_else(|_| {
        panic!(
            "the journey → profile trace did not reach the OTLP endpoint within 20 s \
             with RUST_LOG=warn ({everything} spans received in all)"
        )
    });
    eprintln!(
        "OTLP receiver with RUST_LOG=warn: {of_the_trace} spans of the trace, {everything} in all"
    );
    assert_eq!(
        journey_span.parent_span_id, caller_span,
        "journey continues the caller's span"
    );
    assert_eq!(
        profile_span
            .attributes
            .get("rpc.method")
            .map(String::as_str),
        Some("ResolveProfile"),
        "the profile span is the service-to-service call"
    );
    assert_ne!(
        profile_span.parent_span_id, caller_span,
        "profile's parent is inside journey"
    );
    assert_ne!(profile_span.span_id, journey_span.span_id);
    assert_eq!(journey_span.service_name, "cairn");
    child.kill().await.unwrap();
    server.abort();
    database.drop_database().await;
}

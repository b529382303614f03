//! Health and reflection: what a BSS/OSS integrator sees first.

use cairn_runtime::ServiceKind;
use cairn_tests::spawn_app;
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

const SERVICE_NAMES: [(ServiceKind, &str); 4] = [
    (ServiceKind::Profile, "cairn.profile.v1.ProfileService"),
    (ServiceKind::Journey, "cairn.journey.v1.JourneyService"),
    (
        ServiceKind::Recommendation,
        "cairn.recommendation.v1.RecommendationService",
    ),
    (ServiceKind::Feedback, "cairn.feedback.v1.FeedbackService"),
];

#[tokio::test]
async fn every_service_reports_serving_by_name() {
    let app = spawn_app().await;
    for (service, name) in SERVICE_NAMES {
        let mut health = HealthClient::new(app.channel(service).await);
        for asked in [name, "", "cairn.events.v1.EventHubService"] {
            let status = health
                .check(HealthCheckRequest {
                    service: asked.into(),
                })
                .await
                .unwrap_or_else(|error| panic!("{service} health of {asked:?}: {error}"))
                .into_inner()
                .status;
            assert_eq!(
                status,
                ServingStatus::Serving as i32,
                "{service} reports {asked:?}"
            );
        }
        let unknown = health
            .check(HealthCheckRequest {
                service: "cairn.nothing.v1.Nothing".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
    }
    app.stop().await;
}

async fn reflect(
    app: &cairn_tests::TestApp,
    service: ServiceKind,
    request: MessageRequest,
) -> MessageResponse {
    let mut client = ServerReflectionClient::new(app.channel(service).await);
    let outbound = tokio_stream::iter([ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    }]);
    let mut inbound = client
        .server_reflection_info(outbound)
        .await
        .unwrap()
        .into_inner();
    inbound
        .next()
        .await
        .expect("a reflection answer")
        .unwrap()
        .message_response
        .expect("a message")
}

#[tokio::test]
async fn reflection_lists_each_service_and_serves_its_descriptors() {
    let app = spawn_app().await;
    for (service, name) in SERVICE_NAMES {
        let MessageResponse::ListServicesResponse(list) =
            reflect(&app, service, MessageRequest::ListServices(String::new())).await
        else {
            panic!("{service}: not a service list");
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&name), "{service} lists {names:?}");
        assert!(
            names.contains(&"cairn.events.v1.EventHubService"),
            "{service} lists {names:?}"
        );
        assert!(
            names.contains(&"grpc.health.v1.Health"),
            "{service} lists {names:?}"
        );
        let MessageResponse::FileDescriptorResponse(files) = reflect(
            &app,
            service,
            MessageRequest::FileContainingSymbol(name.into()),
        )
        .await
        else {
            panic!("{service}: no descriptor for {name}");
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }
    app.stop().await;
}

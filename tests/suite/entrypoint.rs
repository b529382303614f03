//! The container image's entrypoint arguments start each service alone.
//!
//! The command line is read from the deployment files themselves: the
//! Dockerfile's ENTRYPOINT plus each Deployment's `args` (and the migration
//! Job's), parsed by the `cairn` binary's own parser. The services it selects
//! are started against real PostgreSQL and Redis; each port then answers
//! health SERVING for the name its Kubernetes probes ask for, and NOT_FOUND
//! for every other service's name.

use std::path::PathBuf;

use cairn::cli::{Cli, Command, selected_services};
use cairn_runtime::ServiceKind;
use cairn_tests::{Options, spawn_app_with};
use clap::Parser;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn repository_file(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// The JSON list after `key` on the one line of `text` that starts with it
/// (indentation aside): `ENTRYPOINT ["/usr/local/bin/cairn"]`,
/// `args: ["serve", "--only", "profile"]`.
fn flow_list(text: &str, key: &str, file: &str) -> Vec<String> {
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix(key))
        .collect();
    let [list] = lines.as_slice() else {
        panic!("{file}: expected one line starting with {key:?}, found {lines:?}");
    };
    serde_json::from_str(list.trim())
        .unwrap_or_else(|error| panic!("{file}: {key} is not a flow list of strings: {error}"))
}

/// The image's entrypoint.
fn entrypoint() -> Vec<String> {
    let file = "deploy/docker/Dockerfile";
    let entrypoint = flow_list(&repository_file(file), "ENTRYPOINT ", file);
    assert!(
        entrypoint.len() == 1 && entrypoint[0].ends_with("/cairn"),
        "the image's entrypoint is the cairn binary alone, so the manifests' args are its arguments: {entrypoint:?}"
    );
    entrypoint
}

fn deployment_file(service: ServiceKind) -> String {
    format!("deploy/k8s/base/{service}.yaml")
}

/// The command line a pod of `manifest` runs: the entrypoint, then the container's args.
fn command_line(manifest: &str) -> Vec<String> {
    let mut command = entrypoint();
    command.extend(flow_list(&repository_file(manifest), "args: ", manifest));
    command
}

/// The names the Deployment's gRPC probes ask health for.
fn probed_names(service: ServiceKind) -> Vec<String> {
    let file = deployment_file(service);
    let mut names: Vec<String> = repository_file(&file)
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("service: "))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The protobuf name of `service`: what its startup and readiness probes ask for.
fn grpc_name(service: ServiceKind) -> String {
    let names: Vec<String> = probed_names(service)
        .into_iter()
        .filter(|name| name != "liveness")
        .collect();
    let [name] = names.as_slice() else {
        panic!("the {service} Deployment's probes name one service besides liveness: {names:?}");
    };
    name.clone()
}

async fn check(
    health: &mut HealthClient<tonic::transport::Channel>,
    name: &str,
) -> Result<ServingStatus, tonic::Status> {
    health
        .check(HealthCheckRequest {
            service: name.to_string(),
        })
        .await
        .map(|response| {
            ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown)
        })
}

async fn starts_alone(service: ServiceKind) {
    let manifest = deployment_file(service);
    let command = command_line(&manifest);
    let cli = Cli::try_parse_from(&command).unwrap_or_else(|error| {
        panic!(
            "{manifest}: `{}` does not parse: {error}",
            command.join(" ")
        )
    });
    let Command::Serve { only, .. } = cli.command else {
        panic!("{manifest}: `{}` is not `cairn serve`", command.join(" "));
    };
    let services = selected_services(&only);
    assert_eq!(
        services,
        vec![service],
        "{manifest} serves its service alone"
    );

    let app = spawn_app_with(Options {
        services,
        ..Default::default()
    })
    .await;
    assert_eq!(
        app.addresses.keys().copied().collect::<Vec<_>>(),
        vec![service],
        "one port only: the other services do not listen"
    );
    let mut health = HealthClient::new(app.channel(service).await);
    let own = grpc_name(service);
    assert_eq!(
        probed_names(service),
        {
            let mut expected = vec![own.clone(), "liveness".to_string()];
            expected.sort();
            expected
        },
        "the probes ask for the service's name and for liveness"
    );
    for name in [own.as_str(), "liveness", ""] {
        assert_eq!(
            check(&mut health, name).await.unwrap(),
            ServingStatus::Serving,
            "the {service} port answers SERVING for {name:?}"
        );
    }
    for other in ServiceKind::ALL
        .into_iter()
        .filter(|other| *other != service)
    {
        let name = grpc_name(other);
        let status = check(&mut health, &name)
            .await
            .expect_err("another service's name is unknown on this port");
        assert_eq!(
            status.code(),
            tonic::Code::NotFound,
            "the {service} port does not serve {name}: {status:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_profile_deployment_s_arguments_start_profile_alone() {
    starts_alone(ServiceKind::Profile).await;
}

#[tokio::test]
async fn the_journey_deployment_s_arguments_start_journey_alone() {
    starts_alone(ServiceKind::Journey).await;
}

#[tokio::test]
async fn the_recommendation_deployment_s_arguments_start_recommendation_alone() {
    starts_alone(ServiceKind::Recommendation).await;
}

#[tokio::test]
async fn the_feedback_deployment_s_arguments_start_feedback_alone() {
    starts_alone(ServiceKind::Feedback).await;
}

#[test]
fn the_migration_job_s_arguments_migrate_every_service() {
    let manifest = "deploy/k8s/base/migrate-job.yaml";
    let command = command_line(manifest);
    let cli = Cli::try_parse_from(&command).unwrap_or_else(|error| {
        panic!(
            "{manifest}: `{}` does not parse: {error}",
            command.join(" ")
        )
    });
    let Command::Migrate { only, .. } = cli.command else {
        panic!("{manifest}: `{}` is not `cairn migrate`", command.join(" "));
    };
    assert_eq!(selected_services(&only), ServiceKind::ALL.to_vec());
}

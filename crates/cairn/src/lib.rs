//! The Cairn suite as one library: start any set of the four services in
//! this process, the way `cairn serve` does and the integration tests do.
//!
//! # Layout
//! - [`Suite`]: binds, starts and stops services.
//! - [`cli`]: the `cairn` command line (serve, migrate, token, journeys),
//!   parsed by `main.rs` and by the tests of the image's entrypoint arguments.
//! - [`journeys`]: journeys as code (`cairn journeys apply`).

pub mod cli;
pub mod journeys;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use cairn_runtime::server::{ServiceFace, ServiceParts, Shared, serve};
use cairn_runtime::{Error, Result, ServiceKind, Settings};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Services running in this process.
pub struct Suite {
    /// Where each service listens.
    pub addresses: BTreeMap<ServiceKind, SocketAddr>,
    /// What the services share (settings with the bound ports, bus, state).
    pub shared: Shared,
    tasks: Vec<(ServiceKind, JoinHandle<std::result::Result<(), String>>)>,
    /// Told when each service has started (or failed to).
    starting: Vec<(
        ServiceKind,
        tokio::sync::oneshot::Receiver<std::result::Result<(), String>>,
    )>,
}

impl Suite {
    /// Binds every service of `services` on the configured host and ports
    /// (port 0 picks a free one), starts them, and returns once every one
    /// has started (its stores answered): what tests and benchmarks want.
    /// Each service reaches the others through the bound addresses unless
    /// the settings name others.
    pub async fn start(
        settings: Settings,
        services: &[ServiceKind],
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let mut suite = Self::listen(settings, services, shutdown).await?;
        for (service, started) in std::mem::take(&mut suite.starting) {
            match started.await {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => {
                    suite.shared.shutdown.cancel();
                    return Err(Error::Unavailable(format!(
                        "the {service} service did not start: {reason}"
                    )));
                }
                Err(_) => {
                    return Err(Error::Unavailable(format!(
                        "the {service} service stopped before it started"
                    )));
                }
            }
        }
        Ok(suite)
    }

    /// Binds every service of `services` and returns at once, while each
    /// service starts in the background: until its stores answer it listens,
    /// answers health NOT_SERVING and its calls UNAVAILABLE (what `cairn
    /// serve` does, so that a process started while PostgreSQL or Redis is
    /// down waits for them instead of exiting).
    pub async fn listen(
        mut settings: Settings,
        services: &[ServiceKind],
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let mut listeners = Vec::new();
        let mut addresses = BTreeMap::new();
        for &service in services {
            let address = SocketAddr::new(settings.host, settings.port(service));
            let listener = TcpListener::bind(address).await.map_err(|error| {
                Error::Unavailable(format!(
                    "cannot listen on {address} for the {service} service: {error}"
                ))
            })?;
            let bound = listener.local_addr().map_err(Error::internal)?;
            settings.set_port(service, bound.port());
            addresses.insert(service, bound);
            listeners.push((service, listener));
        }
        let shared = Shared::connect(settings, shutdown).await?;
        let mut tasks = Vec::new();
        let mut starting = Vec::new();
        for (service, listener) in listeners {
            let shared = shared.clone();
            let (told, started) = tokio::sync::oneshot::channel();
            let attempts = start_when_ready(service, shared.clone());
            let start = async move {
                let outcome = attempts.await;
                let _ = told.send(outcome.as_ref().map(|_| ()).map_err(ToString::to_string));
                outcome
            };
            starting.push((service, started));
            tasks.push((
                service,
                tokio::spawn(
                    async move { serve(face_of(service), start, &shared, listener).await },
                ),
            ));
        }
        Ok(Self {
            addresses,
            shared,
            tasks,
            starting,
        })
    }

    /// Waits until every service has stopped (after the shutdown token
    /// fired), reporting the first that failed.
    pub async fn wait(self) -> Result<()> {
        let mut outcome = Ok(());
        for (service, task) in self.tasks {
            let result = task.await.map_err(Error::internal).and_then(|served| {
                served.map_err(|error| {
                    Error::Unavailable(format!("the {service} service stopped: {error}"))
                })
            });
            if outcome.is_ok() {
                outcome = result;
            }
        }
        outcome
    }

    /// Stops every service, letting in-flight calls finish, and waits for them.
    pub async fn stop(self) -> Result<()> {
        self.shared.shutdown.cancel();
        self.wait().await
    }
}

/// What is known of `service` before it starts: its gRPC services and scopes.
pub fn face_of(service: ServiceKind) -> ServiceFace {
    let (grpc_service, scopes) = match service {
        ServiceKind::Profile => (
            cairn_profile::grpc::SERVICE_NAME,
            cairn_profile::grpc::scopes(),
        ),
        ServiceKind::Journey => (
            cairn_journey::grpc::SERVICE_NAME,
            cairn_journey::grpc::scopes(),
        ),
        ServiceKind::Recommendation => (
            cairn_recommendation::grpc::SERVICE_NAME,
            cairn_recommendation::grpc::scopes(),
        ),
        ServiceKind::Feedback => (
            cairn_feedback::grpc::SERVICE_NAME,
            cairn_feedback::grpc::scopes(),
        ),
    };
    ServiceFace {
        kind: service,
        grpc_services: vec![grpc_service],
        scopes,
    }
}

/// Starts `service`, trying again (waiting up to 5 s between attempts) for
/// as long as its stores do not answer (UNAVAILABLE: PostgreSQL down, so no
/// connection, no migration, no load), until the process shuts down. Any
/// background work a failed attempt had begun is stopped before the next.
/// Other errors (a wrong setting) end the attempts.
pub async fn start_when_ready(service: ServiceKind, shared: Shared) -> Result<ServiceParts> {
    let mut pause = std::time::Duration::from_millis(200);
    loop {
        let attempt = Shared {
            shutdown: shared.shutdown.child_token(),
            ..shared.clone()
        };
        match start_service(service, &attempt).await {
            Ok(parts) => return Ok(parts),
            Err(Error::Unavailable(reason)) => {
                attempt.shutdown.cancel();
                tracing::warn!(%service, %reason, "cannot start yet; trying again");
                tokio::select! {
                    _ = shared.shutdown.cancelled() => {
                        return Err(Error::Unavailable(format!(
                            "the {service} service stopped before its stores answered: {reason}"
                        )));
                    }
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
            Err(error) => {
                attempt.shutdown.cancel();
                return Err(error);
            }
        }
    }
}

/// Starts one service's stores and background work.
pub async fn start_service(service: ServiceKind, shared: &Shared) -> Result<ServiceParts> {
    match service {
        ServiceKind::Profile => cairn_profile::start(shared).await,
        ServiceKind::Journey => cairn_journey::start(shared).await,
        ServiceKind::Recommendation => cairn_recommendation::start(shared).await,
        ServiceKind::Feedback => cairn_feedback::start(shared).await,
    }
}

/// Applies one service's migrations.
pub async fn migrate_service(service: ServiceKind, settings: &Settings) -> Result<()> {
    match service {
        ServiceKind::Profile => cairn_profile::migrate(settings).await,
        ServiceKind::Journey => cairn_journey::migrate(settings).await,
        ServiceKind::Recommendation => cairn_recommendation::migrate(settings).await,
        ServiceKind::Feedback => cairn_feedback::migrate(settings).await,
    }
}

#[cfg(test)]
mod tests {
    use cairn_runtime::Settings;

    /// The README's configuration table documents every setting.
    #[test]
    fn the_readme_documents_every_setting() {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        let readme = include_str!("../../../README.md");
        let command = <Only as clap::CommandFactory>::command();
        for argument in command.get_arguments() {
            if let Some(env) = argument.get_env() {
                let env = env.to_string_lossy();
                assert!(readme.contains(&format!("`{env}`")), "README lacks {env}");
            }
            if let Some(long) = argument.get_long() {
                assert!(
                    readme.contains(&format!("`--{long}`")),
                    "README lacks --{long}"
                );
            }
        }
    }
}

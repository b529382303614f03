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

use cairn_runtime::server::{ServiceParts, Shared, serve};
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
}

impl Suite {
    /// Binds every service of `services` on the configured host and ports
    /// (port 0 picks a free one), then starts them. Each service reaches the
    /// others through the bound addresses unless the settings name others.
    pub async fn start(
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
        for (service, listener) in listeners {
            let parts = start_service(service, &shared).await?;
            let shared = shared.clone();
            tasks.push((
                service,
                tokio::spawn(async move { serve(parts, &shared, listener).await }),
            ));
        }
        Ok(Self {
            addresses,
            shared,
            tasks,
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

//! Serving one Cairn service: its routes plus health, reflection and the
//! event hub, behind the shared layers (tracing, load shedding, message-size
//! status, authentication), until shutdown, which lets in-flight calls finish.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::auth::{AuthLayer, ScopeTable, Verifier};
use cairn_state::{MemoryStore, RedisStore, StateStore};

use crate::breaker::{DatabaseBreaker, FailFastLayer};
use crate::bus::{EventBus, EventHub, MemoryBus, RedisBus};
use crate::config::{ServiceKind, Settings};
use crate::deadline::DeadlineLayer;
use crate::error::{Error, Result};
use crate::limits::{ClientLimitLayer, ClientQuota, MessageSizeStatusLayer, ShedLayer};
use crate::share::ShareQuota;
use crate::starting::{Deferred, StartedReadiness};
use crate::telemetry::TraceLayer;

/// The protobuf name of the event hub, served by every service.
pub const EVENT_HUB_SERVICE: &str = "cairn.events.v1.EventHubService";

/// The health name that answers SERVING for as long as the process serves
/// calls, whatever its stores say. Kubernetes' liveness probe asks for it, so
/// that an outage of PostgreSQL or Redis takes replicas out of rotation
/// (readiness, on the service's own name) without restarting them all; a
/// process that stops answering at all is still restarted.
pub const LIVENESS: &str = "liveness";

/// Checks that a service's own stores answer; health stays NOT_SERVING until they do.
#[async_trait::async_trait]
pub trait Readiness: Send + Sync + 'static {
    /// Ok when the service can do its work.
    async fn check(&self) -> Result<()>;
}

/// What is known of a service before its stores answer: enough to listen,
/// report health and check tokens at once.
pub struct ServiceFace {
    /// Which service it is.
    pub kind: ServiceKind,
    /// The full protobuf names of its gRPC services; health reports each by
    /// name, reflection lists them.
    pub grpc_services: Vec<&'static str>,
    /// The scope of each method.
    pub scopes: ScopeTable,
}

/// What a service hands to [`serve`] once it has started.
pub struct ServiceParts {
    /// Which service it is.
    pub kind: ServiceKind,
    /// Its generated servers, ready to route.
    pub routes: Routes,
    /// The full protobuf names of the gRPC services in `routes`; health
    /// reports each by name, reflection lists them.
    pub grpc_services: Vec<&'static str>,
    /// The scope of each method.
    pub scopes: ScopeTable,
    /// Its readiness check.
    pub readiness: Arc<dyn Readiness>,
}

/// What every service of a process shares.
#[derive(Clone)]
pub struct Shared {
    /// The process's settings.
    pub settings: Settings,
    /// The token verifier; `None` with authentication off.
    pub verifier: Option<Arc<Verifier>>,
    /// The listeners' certificates; `None` with TLS off.
    pub tls: Option<crate::tls::TlsMaterial>,
    /// The event bus.
    pub bus: Arc<dyn EventBus>,
    /// Sessions, counters and caches shared by replicas.
    pub state: Arc<dyn StateStore>,
    /// Fires on SIGTERM/SIGINT (or when a test stops the suite).
    pub shutdown: CancellationToken,
}

/// How long a readiness check may wait for a store before it counts as down.
const READINESS_BOUND: Duration = Duration::from_secs(2);

/// How long one attempt to connect to Redis, or one Redis command, may take.
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Shared {
    /// Builds what the services share from `settings`: the verifier, and the
    /// bus and state store on Redis when `REDIS_URL` is set, else in process.
    pub async fn connect(settings: Settings, shutdown: CancellationToken) -> Result<Self> {
        let verifier = Verifier::from_settings(&settings)
            .map_err(Error::FailedPrecondition)?
            .map(Arc::new);
        let tls = crate::tls::TlsMaterial::from_settings(&settings)?;
        let (bus, state): (Arc<dyn EventBus>, Arc<dyn StateStore>) = match settings.redis_url() {
            Some(url) => {
                let client = redis::Client::open(url).map_err(|_| {
                    Error::FailedPrecondition("REDIS_URL is not a valid Redis URL".into())
                })?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(REDIS_CONNECT_TIMEOUT))
                    .set_response_timeout(Some(REDIS_CONNECT_TIMEOUT))
                    .set_number_of_retries(2);
                // Connected on first use and again after every loss: a
                // process started while Redis is down listens, answers
                // NOT_SERVING, and serves once Redis answers.
                let connection = redis::aio::ConnectionManager::new_lazy_with_config(
                    client, config,
                )
                .map_err(|error| {
                    Error::FailedPrecondition(format!(
                        "the Redis connection at REDIS_URL cannot be set up: {error}"
                    ))
                })?;
                (
                    Arc::new(RedisBus::new(
                        connection.clone(),
                        &settings.redis_prefix,
                        settings.event_retention,
                    )),
                    Arc::new(RedisStore::new(connection, settings.redis_prefix.clone())),
                )
            }
            None => {
                tracing::warn!(
                    "REDIS_URL is not set: events, sessions and counters live in this process and are \
                     NOT shared across replicas (fine for a local trial, wrong for production)"
                );
                (
                    Arc::new(MemoryBus::new(settings.event_retention)),
                    Arc::new(MemoryStore::new()),
                )
            }
        };
        Ok(Self {
            settings,
            verifier,
            tls,
            bus,
            state,
            shutdown,
        })
    }
}

/// Serves the service `face` describes on `listener` until `shared.shutdown`
/// fires, then stops accepting calls, reports NOT_SERVING, and lets in-flight
/// calls finish within the configured grace period.
///
/// It listens at once: until `starting` yields the service's parts (it
/// retries while the stores do not answer), health says NOT_SERVING and the
/// service's calls answer UNAVAILABLE. When `starting` fails for good, every
/// service of the process stops and the error is returned.
pub async fn serve(
    face: ServiceFace,
    starting: impl std::future::Future<Output = Result<ServiceParts>> + Send + 'static,
    shared: &Shared,
    listener: TcpListener,
) -> Result<(), String> {
    let parts = face;
    let settings = &shared.settings;
    let (reporter, health_service) = tonic_health::server::health_reporter();
    for name in parts
        .grpc_services
        .iter()
        .copied()
        .chain(["", EVENT_HUB_SERVICE])
    {
        reporter
            .set_service_status(name, ServingStatus::NotServing)
            .await;
    }
    reporter
        .set_service_status(LIVENESS, ServingStatus::Serving)
        .await;
    let breaker = DatabaseBreaker::default();
    let deferred = Deferred::default();
    let readiness = StartedReadiness::default();
    let mut start = {
        let (deferred, readiness) = (deferred.clone(), readiness.clone());
        let breaker = breaker.clone();
        tokio::spawn(async move {
            let started = starting.await?;
            deferred.start(started.routes);
            readiness.start(started.readiness);
            // The start has just reached the database (and migrated it):
            // close the breaker the readiness checks opened while nothing
            // had started, instead of refusing calls until the next check.
            breaker.record(true);
            Ok::<_, Error>(started.kind)
        })
    };
    spawn_readiness(
        parts.grpc_services.clone(),
        Arc::new(readiness),
        shared.bus.clone(),
        reporter.clone(),
        breaker.clone(),
        shared.shutdown.clone(),
    );

    let reflection = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(cairn_contract::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health")
            .with_service_name(EVENT_HUB_SERVICE);
        for name in &parts.grpc_services {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    let reflection_v1 = reflection().build_v1().map_err(|error| error.to_string())?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|error| error.to_string())?;

    let mut scopes = parts.scopes;
    scopes.merge(ScopeTable::from_contract(EVENT_HUB_SERVICE));
    let hub = crate::limited!(
        EventHub::new(shared.bus.clone(), shared.shutdown.clone()).into_server(),
        settings
    );

    let mut routes = Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(hub);
    let mut router = std::mem::take(routes.axum_router_mut());
    for name in &parts.grpc_services {
        router = router.route_service(&format!("/{name}/{{*rest}}"), deferred.clone());
    }
    *routes.axum_router_mut() = router;

    let layers = tower::ServiceBuilder::new()
        .layer(TraceLayer::new(parts.kind.name()))
        .layer(MessageSizeStatusLayer)
        .layer(ShedLayer::new(settings.max_in_flight))
        .layer(AuthLayer::new(shared.verifier.clone(), scopes))
        // Before the client limits: a call waiting for its client's turn
        // waits within its deadline.
        .layer(DeadlineLayer::new(settings.default_deadline()))
        .layer(ClientLimitLayer::new(
            ClientQuota::from_settings(settings),
            ShareQuota::from_settings(settings),
        ))
        .layer(FailFastLayer::new(breaker, &parts.grpc_services))
        .into_inner();

    let address = listener.local_addr().map_err(|error| error.to_string())?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let shutdown = shared.shutdown.clone();
    let draining = reporter.clone();
    let names = parts.grpc_services.clone();
    let mut builder = Server::builder();
    if let Some(tls) = &shared.tls {
        builder = builder
            .tls_config(tls.server())
            .map_err(|error| format!("TLS: {error}"))?;
    }
    let server = builder
        .max_concurrent_streams(Some(settings.max_concurrent_streams))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .layer(layers)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.cancelled().await;
            for name in names.iter().copied().chain(["", EVENT_HUB_SERVICE]) {
                draining
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
        });
    tracing::info!(service = parts.kind.name(), %address, tls = shared.tls.is_some(), "serving");

    let grace = Duration::from_millis(settings.shutdown_grace_ms);
    let mut server = std::pin::pin!(server);
    let mut started = false;
    loop {
        tokio::select! {
            outcome = &mut server => return outcome.map_err(|error| error.to_string()),
            _ = shared.shutdown.cancelled() => break,
            joined = &mut start, if !started => {
                started = true;
                let failure = match joined {
                    Ok(Ok(_)) => {
                        tracing::info!(service = parts.kind.name(), "started");
                        continue;
                    }
                    Ok(Err(_)) | Err(_) if shared.shutdown.is_cancelled() => break,
                    Ok(Err(error)) => error.to_string(),
                    Err(error) => error.to_string(),
                };
                tracing::error!(service = parts.kind.name(), %failure, "the service cannot start");
                shared.shutdown.cancel();
                return Err(failure);
            }
        }
    }
    match tokio::time::timeout(grace, server).await {
        Ok(outcome) => outcome.map_err(|error| error.to_string())?,
        Err(_) => tracing::warn!(
            service = parts.kind.name(),
            "calls still open after the grace period were cut"
        ),
    }
    tracing::info!(service = parts.kind.name(), "stopped");
    Ok(())
}

fn spawn_readiness(
    names: Vec<&'static str>,
    readiness: Arc<dyn Readiness>,
    bus: Arc<dyn EventBus>,
    reporter: tonic_health::server::HealthReporter,
    breaker: DatabaseBreaker,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut serving = false;
        loop {
            // A store that does not answer within the check's bound counts
            // as down: a stopped PostgreSQL makes the pool retry until its
            // own timeout, far longer.
            let database = tokio::time::timeout(READINESS_BOUND, readiness.check())
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Unavailable(
                        "the database did not answer the readiness check in time".into(),
                    ))
                });
            breaker.record(database.is_ok());
            let bus_ready = tokio::time::timeout(READINESS_BOUND, bus.ping())
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Unavailable(
                        "the bus did not answer the readiness check in time".into(),
                    ))
                });
            let ready = database.and(bus_ready);
            if shutdown.is_cancelled() {
                break;
            }
            let now_serving = ready.is_ok();
            if now_serving != serving {
                let status = if now_serving {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                if let Err(error) = &ready {
                    tracing::warn!(%error, "not ready");
                }
                for name in names.iter().copied().chain(["", EVENT_HUB_SERVICE]) {
                    reporter.set_service_status(name, status).await;
                }
                serving = now_serving;
            }
            let pause = if serving {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(200)
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    });
}

/// Resolves on SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C).
pub async fn termination_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

//! Failing fast while a service's database is down.
//!
//! When PostgreSQL stops, a call that needs it would otherwise wait for a
//! pool connection until the pool gives up (the driver retries a refused
//! connection until then, taking it for a server starting up), holding one
//! of the server's in-flight slots the whole time. The readiness check,
//! which asks the database every second, opens this breaker as soon as the
//! database does not answer: the service's own calls are then answered
//! UNAVAILABLE at once, and it closes again on the first check that passes,
//! with no restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::Status;

/// Whether a service's database answered its last readiness check.
#[derive(Debug, Clone, Default)]
pub struct DatabaseBreaker {
    open: Arc<AtomicBool>,
}

impl DatabaseBreaker {
    /// Records the outcome of a readiness check: `reachable` closes the
    /// breaker, anything else opens it.
    pub fn record(&self, reachable: bool) {
        let was_open = self.open.swap(!reachable, Ordering::SeqCst);
        if was_open == reachable {
            if reachable {
                tracing::info!("the database answers again; calls go through");
            } else {
                tracing::warn!("the database does not answer; calls fail fast until it does");
            }
        }
    }

    /// True while calls are refused.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }
}

/// Refuses the calls of some gRPC services with UNAVAILABLE while the
/// breaker is open; health, reflection and the event hub stay answered.
#[derive(Debug, Clone)]
pub struct FailFastLayer {
    breaker: DatabaseBreaker,
    prefixes: Arc<Vec<String>>,
}

impl FailFastLayer {
    /// Guards the calls of the gRPC services named `services` (full protobuf names).
    pub fn new(breaker: DatabaseBreaker, services: &[&str]) -> Self {
        Self {
            breaker,
            prefixes: Arc::new(services.iter().map(|name| format!("/{name}/")).collect()),
        }
    }
}

impl<S> tower::Layer<S> for FailFastLayer {
    type Service = FailFast<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FailFast {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`FailFastLayer`] wraps around a server's routes.
#[derive(Debug, Clone)]
pub struct FailFast<S> {
    inner: S,
    layer: FailFastLayer,
}

impl<S, B> tower::Service<http::Request<B>> for FailFast<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let guarded = self
            .layer
            .prefixes
            .iter()
            .any(|prefix| request.uri().path().starts_with(prefix.as_str()));
        if guarded && self.layer.breaker.is_open() {
            return Box::pin(async {
                Ok(Status::unavailable(
                    "the service's database is not reachable now; retry with backoff",
                )
                .into_http())
            });
        }
        Box::pin(self.inner.call(request))
    }
}

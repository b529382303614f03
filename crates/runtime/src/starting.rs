//! A service that listens before its stores answer.
//!
//! A service started while PostgreSQL or Redis is down does not exit: it
//! listens at once, answers health NOT_SERVING and its own calls
//! UNAVAILABLE, and keeps trying to start (connect, migrate, load) until its
//! database answers; then its routes go live and health turns SERVING, as
//! after an outage of a running service. [`Deferred`] stands in for the
//! service's routes until then; [`StartedReadiness`] says not ready until
//! then.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::Status;
use tonic::service::Routes;

use crate::error::{Error, Result};
use crate::server::Readiness;

/// The routes of a service that may not have started yet.
#[derive(Clone, Default)]
pub struct Deferred {
    routes: Arc<OnceLock<Routes>>,
}

impl Deferred {
    /// Puts the started service's routes live (once; later calls change nothing).
    pub fn start(&self, routes: Routes) {
        let _ = self.routes.set(routes.prepare());
    }
}

impl tower::Service<http::Request<axum::body::Body>> for Deferred {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<axum::body::Body>) -> Self::Future {
        match self.routes.get() {
            Some(routes) => {
                let mut routes = routes.clone();
                Box::pin(async move { tower::Service::call(&mut routes, request).await })
            }
            None => Box::pin(async {
                Ok(Status::unavailable(
                    "the service is starting: its database or Redis does not answer yet; retry with backoff",
                )
                .into_http())
            }),
        }
    }
}

/// Readiness of a service that may not have started yet: not ready until it
/// has, then its own check.
#[derive(Clone, Default)]
pub struct StartedReadiness {
    started: Arc<OnceLock<Arc<dyn Readiness>>>,
}

impl StartedReadiness {
    /// The service started with this readiness check.
    pub fn start(&self, readiness: Arc<dyn Readiness>) {
        let _ = self.started.set(readiness);
    }
}

#[async_trait::async_trait]
impl Readiness for StartedReadiness {
    async fn check(&self) -> Result<()> {
        match self.started.get() {
            Some(readiness) => readiness.check().await,
            None => Err(Error::Unavailable(
                "the service is starting: waiting for its database".into(),
            )),
        }
    }
}

//! Limits every server applies: load shedding of calls beyond a bound, and
//! the status a caller sees for an oversized message.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tonic::Status;

/// Applies the configured message-size limits to a generated server, which
/// has them as inherent methods rather than through a trait.
#[macro_export]
macro_rules! limited {
    ($server:expr, $settings:expr) => {
        $server
            .max_decoding_message_size($settings.max_message_bytes)
            .max_encoding_message_size($settings.max_message_bytes)
    };
}

/// Sheds calls beyond `max_in_flight` at once with UNAVAILABLE (a status
/// clients retry with backoff) instead of queueing them without bound.
#[derive(Clone)]
pub struct ShedLayer {
    permits: Arc<Semaphore>,
}

impl ShedLayer {
    /// At most `max_in_flight` calls at once.
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }
}

impl<S> tower::Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            inner,
            permits: self.permits.clone(),
        }
    }
}

/// The service [`ShedLayer`] wraps around a server's routes.
#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S, B> tower::Service<http::Request<B>> for Shed<S>
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
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let future = self.inner.call(request);
                Box::pin(async move {
                    let response = future.await;
                    drop(permit);
                    response
                })
            }
            Err(_) => Box::pin(async {
                Ok(
                    Status::unavailable("the server is at capacity; retry with backoff")
                        .into_http(),
                )
            }),
        }
    }
}

/// Rewrites tonic's OUT_OF_RANGE for an oversized message into
/// RESOURCE_EXHAUSTED, the code gRPC's status table gives for it.
#[derive(Debug, Clone, Default)]
pub struct MessageSizeStatusLayer;

impl<S> tower::Layer<S> for MessageSizeStatusLayer {
    type Service = MessageSizeStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MessageSizeStatus { inner }
    }
}

/// The service [`MessageSizeStatusLayer`] wraps around a server's routes.
#[derive(Debug, Clone)]
pub struct MessageSizeStatus<S> {
    inner: S,
}

/// True when `status` is tonic's report of a message over the size limit.
pub fn is_oversized_message(code: tonic::Code, message: &str) -> bool {
    code == tonic::Code::OutOfRange && message.contains("message length too large")
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for MessageSizeStatus<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>> + Send + 'static,
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
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            let headers = response.headers_mut();
            let oversized = headers.get("grpc-status").is_some_and(|code| code == "11")
                && headers
                    .get("grpc-message")
                    .and_then(|message| message.to_str().ok())
                    .is_some_and(|message| {
                        message.contains("message%20length%20too%20large")
                            || message.contains("message length too large")
                    });
            if oversized {
                headers.insert("grpc-status", http::HeaderValue::from_static("8"));
            }
            Ok(response)
        })
    }
}

//! Call deadlines: each call gets the caller's `grpc-timeout` (or the
//! configured default when it sent none), is answered DEADLINE_EXCEEDED
//! when it runs out, and passes what is left of it on to the calls it makes
//! to other services, so that a caller's deadline bounds the whole chain.
//!
//! This replaces tonic's own server timeout, which answers CANCELLED (the
//! code for a call the *client* gave up) where gRPC's status table says
//! DEADLINE_EXCEEDED, and which handlers cannot read.

use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;
use tonic::Status;

tokio::task_local! {
    /// When the call being handled on this task must be answered by.
    static CALL_DEADLINE: Instant;
}

/// What is left of the deadline of the call being handled, when this code
/// runs inside one (peer calls read it; background work has none).
pub fn remaining() -> Option<Duration> {
    CALL_DEADLINE
        .try_with(|deadline| deadline.saturating_duration_since(Instant::now()))
        .ok()
}

/// Runs `future` with `deadline` as the call's deadline, for work a handler
/// moves to another task (a stream's reader) that still belongs to the call.
pub async fn within<F: std::future::Future>(deadline: Option<Instant>, future: F) -> F::Output {
    match deadline {
        Some(deadline) => CALL_DEADLINE.scope(deadline, future).await,
        None => future.await,
    }
}

/// A `grpc-timeout` header value ("500m", "2S") as a duration; `None` when
/// it is malformed (gRPC's grammar: at most 8 digits and a unit).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (amount, unit) = value.split_at(value.len().checked_sub(1)?);
    if amount.is_empty() || amount.len() > 8 {
        return None;
    }
    let amount: u64 = amount.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Bounds every call by the caller's deadline or `default`, whichever is
/// shorter. Streaming responses are bounded only until their headers are
/// sent: a long stream is not cut by it.
#[derive(Debug, Clone)]
pub struct DeadlineLayer {
    default: Duration,
}

impl DeadlineLayer {
    /// Calls that carry no deadline get `default`.
    pub fn new(default: Duration) -> Self {
        Self { default }
    }
}

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            default: self.default,
        }
    }
}

/// The service [`DeadlineLayer`] wraps around a server's routes.
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    default: Duration,
}

impl<S, B> tower::Service<http::Request<B>> for Deadline<S>
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
        let asked = request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout);
        let budget = asked.map_or(self.default, |asked| asked.min(self.default));
        let deadline = Instant::now() + budget;
        let future = CALL_DEADLINE.scope(deadline, self.inner.call(request));
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, future).await {
                Ok(response) => response,
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "the call's deadline of {} ms ran out before it was done",
                    budget.as_millis()
                ))
                .into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_by_the_grammar() {
        assert_eq!(parse_grpc_timeout("500m"), Some(Duration::from_millis(500)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("m"), None);
        assert_eq!(parse_grpc_timeout(""), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("-5S"), None);
    }

    #[tokio::test]
    async fn the_remaining_time_is_known_inside_a_call_only() {
        assert_eq!(remaining(), None);
        let deadline = Instant::now() + Duration::from_secs(2);
        let left = within(Some(deadline), async { remaining() }).await;
        assert!(left.is_some_and(|left| left <= Duration::from_secs(2)));
    }
}

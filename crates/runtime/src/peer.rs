//! Calls from one Cairn service to another: through gRPC clients configured
//! by address (never in-process shortcuts, so services scale and deploy
//! apart), with a deadline on every call, the caller's trace context, the
//! client the call is for (`caller.rs`) and the service's own token (and client certificate, with TLS on), and retries
//! when the peer is UNAVAILABLE.

use std::future::Future;
use std::time::Duration;

use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::auth::ServiceCredentials;
use crate::error::{Error, Result};

/// Attempts of one call to a peer that answers UNAVAILABLE.
const ATTEMPTS: u32 = 3;

/// A channel to a peer service, wrapped with [`PeerInterceptor`].
pub type PeerChannel = InterceptedService<Channel, PeerInterceptor>;

/// Adds the trace context, the client the call is for, the service's token
/// and the deadline to every outgoing call.
#[derive(Clone)]
pub struct PeerInterceptor {
    credentials: ServiceCredentials,
    deadline: Duration,
}

impl Interceptor for PeerInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        crate::telemetry::inject_trace_context(request.metadata_mut());
        // The client the call being handled is for, so that the peer's
        // per-client limits count this call against that client.
        crate::caller::inject(request.metadata_mut());
        if let Some(authorization) = self.credentials.authorization() {
            let value = authorization
                .parse()
                .map_err(|_| Status::internal("the service token is not valid metadata"))?;
            request.metadata_mut().insert("authorization", value);
        }
        // The caller's deadline, when this runs inside a call, bounds the
        // peer call too: no work goes on for a caller that has given up.
        if request.metadata().get("grpc-timeout").is_none() {
            let budget =
                crate::deadline::remaining().map_or(self.deadline, |left| left.min(self.deadline));
            request.set_timeout(budget);
        }
        Ok(request)
    }
}

/// A lazily connecting channel to the peer at `address`: the service starts
/// even when the peer is not up yet, and the first call connects.
pub fn channel(
    address: &str,
    credentials: ServiceCredentials,
    deadline: Duration,
) -> Result<PeerChannel> {
    let mut endpoint = Endpoint::from_shared(address.to_string())
        .map_err(|_| Error::internal(format!("the peer address {address} is not a URI")))?;
    if let Some(tls) = credentials.tls() {
        endpoint = endpoint
            .tls_config(tls.client())
            .map_err(|error| Error::internal(format!("TLS towards {address}: {error}")))?;
    }
    let endpoint = endpoint
        .connect_timeout(Duration::from_secs(2))
        .timeout(deadline)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(InterceptedService::new(
        endpoint.connect_lazy(),
        PeerInterceptor {
            credentials,
            deadline,
        },
    ))
}

/// Runs `call` until it succeeds, fails with something other than
/// UNAVAILABLE, or has been tried [`ATTEMPTS`] times, backing off in between.
pub async fn with_retry<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match call().await {
            Err(status) if status.code() == Code::Unavailable && attempt < ATTEMPTS => {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Another service's refusal in the caller's terms: its field violations are
/// re-rooted under `field` (the part of the caller's request that was passed
/// on), and NOT_FOUND names that field, so the caller sees what it sent.
pub fn refusal_about(field: &str, status: Status) -> Error {
    use tonic_types::StatusExt;
    match status.code() {
        Code::InvalidArgument => {
            let violations: Vec<crate::error::FieldViolation> = status
                .get_details_bad_request()
                .map(|bad_request| {
                    bad_request
                        .field_violations
                        .into_iter()
                        .map(|v| {
                            crate::error::FieldViolation::new(
                                format!("{field}.{}", v.field),
                                v.description,
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            if violations.is_empty() {
                Error::invalid(field, status.message().to_string())
            } else {
                Error::InvalidArgument(violations)
            }
        }
        Code::NotFound => Error::not_found("customer", format!("named in {field}")),
        _ => Error::from(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn unavailable_is_retried_and_other_errors_are_not() {
        let calls = AtomicU32::new(0);
        let outcome: Result<(), Status> = with_retry(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Status::unavailable("down"))
        })
        .await;
        assert_eq!(outcome.unwrap_err().code(), Code::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), ATTEMPTS);

        let calls = AtomicU32::new(0);
        let outcome: Result<(), Status> = with_retry(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Status::not_found("gone"))
        })
        .await;
        assert_eq!(outcome.unwrap_err().code(), Code::NotFound);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

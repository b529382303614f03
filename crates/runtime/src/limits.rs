//! Limits every server applies: load shedding of calls beyond a bound,
//! per-client limits on open calls and call rate, each client's share of a
//! busy replica's work, and the status a caller sees for an oversized message.

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

/// How much one client may ask of one replica: calls open at once and calls
/// per second. A client is the token's subject, or the peer's IP address
/// when authentication is off; a call a Cairn service makes for a client
/// counts against that client (`caller.rs`). Each replica counts on its own (a limit that
/// needed Redis on every call would make every call fail with Redis), so a
/// client reaching N replicas gets up to N times the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientQuota {
    /// Calls one client may have open at once (streams count until they end); 0: no limit.
    pub max_in_flight: usize,
    /// Calls one client may start per second, on average; 0: no limit.
    pub rate_per_second: u32,
    /// Calls one client may start at once above the rate, after a quiet spell.
    pub burst: u32,
}

impl ClientQuota {
    /// The quota the settings configure.
    pub fn from_settings(settings: &crate::Settings) -> Self {
        Self {
            max_in_flight: settings.client_max_in_flight,
            rate_per_second: settings.client_rate_per_second,
            burst: settings.client_rate_burst,
        }
    }
}

type KeyedLimiter = governor::RateLimiter<
    Arc<str>,
    governor::state::keyed::DefaultKeyedStateStore<Arc<str>>,
    governor::clock::DefaultClock,
>;

/// Answers calls beyond a client's [`ClientQuota`] with RESOURCE_EXHAUSTED
/// (the client's own quota is used up; other clients are served), with a
/// `RetryInfo` detail saying when to try again, and holds a client's calls
/// beyond its share of a busy replica until their turn (`share.rs`). Runs
/// after authentication, which names the client, and after the deadline,
/// which bounds the wait.
#[derive(Clone)]
pub struct ClientLimitLayer {
    inner: Arc<ClientLimitState>,
}

struct ClientLimitState {
    quota: ClientQuota,
    rate: Option<KeyedLimiter>,
    clock: governor::clock::DefaultClock,
    open: std::sync::Mutex<std::collections::HashMap<Arc<str>, usize>>,
    shares: crate::share::WorkShares,
}

impl ClientLimitLayer {
    /// Limits by `quota`, and shares the replica's work by `share`.
    pub fn new(quota: ClientQuota, share: crate::share::ShareQuota) -> Self {
        let rate = std::num::NonZeroU32::new(quota.rate_per_second).map(|rate| {
            let burst = std::num::NonZeroU32::new(quota.burst).unwrap_or(rate);
            KeyedLimiter::dashmap(governor::Quota::per_second(rate).allow_burst(burst))
        });
        let state = Arc::new(ClientLimitState {
            quota,
            rate,
            clock: governor::clock::DefaultClock::default(),
            open: std::sync::Mutex::new(std::collections::HashMap::new()),
            shares: crate::share::WorkShares::new(share),
        });
        Self { inner: state }
    }

    /// Forgets clients whose rate allowance is full again, so that the
    /// table holds only clients seen lately (many clients, or spoofed
    /// addresses, cannot grow it without bound).
    fn forget_idle(&self) {
        if let Some(rate) = &self.inner.rate
            && rate.len() > 10_000
        {
            rate.retain_recent();
            rate.shrink_to_fit();
        }
    }
}

impl<S> tower::Layer<S> for ClientLimitLayer {
    type Service = ClientLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`ClientLimitLayer`] wraps around a server's routes.
#[derive(Clone)]
pub struct ClientLimit<S> {
    inner: S,
    layer: ClientLimitLayer,
}

/// A call that counts against its client's open calls until it is dropped.
struct OpenCall {
    state: Arc<ClientLimitState>,
    client: Arc<str>,
}

impl Drop for OpenCall {
    fn drop(&mut self) {
        let mut open = self
            .state
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&*self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&*self.client);
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its call counted until the body ends
    /// (the whole stream, for a streaming call).
    struct CountedBody {
        #[pin]
        inner: tonic::body::Body,
        call: Option<OpenCall>,
    }
}

impl http_body::Body for CountedBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = this.inner.poll_frame(cx);
        if let Poll::Ready(None) = &frame {
            this.call.take();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn exhausted(
    message: String,
    retry_after: Option<std::time::Duration>,
) -> http::Response<tonic::body::Body> {
    use tonic_types::{ErrorDetails, StatusExt};
    let details = match retry_after {
        Some(delay) => ErrorDetails::with_retry_info(Some(delay)),
        None => ErrorDetails::new(),
    };
    Status::with_error_details(tonic::Code::ResourceExhausted, message, details).into_http()
}

impl<S, B> tower::Service<http::Request<B>> for ClientLimit<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
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
        let state = self.layer.inner.clone();
        let client = crate::caller::Client::of(&request);
        // The service that was made ready is the one that takes the call,
        // once the call's turn comes.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        if let Some(rate) = &state.rate
            && let Err(not_until) = rate.check_key(&client.origin)
        {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(state.clock.now());
            self.layer.forget_idle();
            let key = client.origin;
            return Box::pin(async move {
                Ok(exhausted(
                    format!(
                        "{key} is over its rate of {} calls per second; retry after the delay given",
                        state.quota.rate_per_second
                    ),
                    Some(wait),
                ))
            });
        }
        let call = if state.quota.max_in_flight == 0 {
            None
        } else {
            let mut open = state
                .open
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let count = open.entry(client.origin.clone()).or_default();
            if *count >= state.quota.max_in_flight {
                let limit = state.quota.max_in_flight;
                drop(open);
                let key = client.origin;
                return Box::pin(async move {
                    Ok(exhausted(
                        format!(
                            "{key} already has {limit} calls open, its limit; finish some first"
                        ),
                        None,
                    ))
                });
            }
            *count += 1;
            drop(open);
            Some(OpenCall {
                state: state.clone(),
                client: client.origin.clone(),
            })
        };
        let origin = client.origin.clone();
        Box::pin(crate::caller::serving(origin, async move {
            // Calls over the client's share of a busy replica wait their
            // turn here (within their deadline), still counted as open; a
            // call a service makes for the client was held to the client's
            // share where it started.
            let slot = match client.through {
                None => state.shares.enter(client.origin).await,
                Some(_) => state.shares.enter_now(client.origin),
            };
            let response = inner.call(request).await;
            drop(slot);
            let response = response?;
            Ok(response.map(|inner| tonic::body::Body::new(CountedBody { inner, call })))
        }))
    }
}

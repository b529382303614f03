//! Who a call is really for, across services: the client whose call a
//! service is handling travels with the calls that service makes to others,
//! so that the per-client limits of every service count a flood that comes
//! through another service against the client that sent it, not against the
//! service that passed it on (which would make every client of that service
//! pay for one).
//!
//! Like the deadline (`deadline.rs`), the client is kept in a task-local for
//! the call being handled and written into the metadata of peer calls
//! ([`ON_BEHALF_OF`]). A service honours that metadata only when the
//! immediate caller's token holds [`DELEGATE_SCOPE`], which Cairn's own
//! service tokens carry; from any other caller it is ignored, so an outside
//! client can neither spend another client's allowance nor escape its own.

use std::future::Future;
use std::sync::Arc;

use base64::Engine;

use crate::auth::Principal;

/// The metadata that names the client a service-to-service call is for
/// (binary metadata: any subject travels as it is).
pub const ON_BEHALF_OF: &str = "cairn-on-behalf-of-bin";

/// The scope that lets a caller name the client it calls for: Cairn's own
/// service tokens hold it; no client's token should.
pub const DELEGATE_SCOPE: &str = "cairn.delegate";

/// The longest client name honoured in [`ON_BEHALF_OF`], in bytes.
const LONGEST_NAME: usize = 512;

tokio::task_local! {
    /// The client the call being handled on this task is for.
    static CALLER: Arc<str>;
}

/// The client a call counts against, for the per-client limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The client that started the chain of calls ("subject crm-sync", or
    /// "address 10.0.0.7" with authentication off): what the limits count
    /// by, and what peer calls carry on.
    pub origin: Arc<str>,
    /// The Cairn service that made this call for the origin, when a service
    /// did. The calling service already holds the client to its share of
    /// work, so such a call never waits for the client's turn here: a call
    /// made back into a service that is working for the same client must
    /// not wait for that client's own calls to finish.
    pub through: Option<Arc<str>>,
}

impl Client {
    /// The client `request` is for: the origin its immediate caller names,
    /// when that caller is a Cairn service (its token holds
    /// [`DELEGATE_SCOPE`]), else the immediate caller itself (the token's
    /// subject, or the peer's IP address when authentication is off).
    pub fn of<B>(request: &http::Request<B>) -> Self {
        let principal = request.extensions().get::<Principal>();
        let delegate = principal.filter(|principal| principal.is_verified_with(DELEGATE_SCOPE));
        if let (Some(service), Some(origin)) = (delegate, named_origin(request.headers())) {
            return Client {
                origin,
                through: Some(service.subject.as_str().into()),
            };
        }
        let immediate: Arc<str> = match principal {
            Some(principal) if principal.subject != Principal::unrestricted().subject => {
                format!("subject {}", principal.subject).into()
            }
            _ => request
                .extensions()
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|info| info.remote_addr())
                .map(|address| format!("address {}", address.ip()))
                .unwrap_or_else(|| "unknown".into())
                .into(),
        };
        Client {
            origin: immediate,
            through: None,
        }
    }
}

/// The origin [`ON_BEHALF_OF`] names, when it is there and readable.
fn named_origin(headers: &http::HeaderMap) -> Option<Arc<str>> {
    let encoded = headers.get(ON_BEHALF_OF)?.as_bytes();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine.decode(encoded).ok()?;
    if bytes.is_empty() || bytes.len() > LONGEST_NAME {
        return None;
    }
    String::from_utf8(bytes).ok().map(Arc::from)
}

/// Runs `future` (the handling of one call) as a call for `origin`.
pub async fn serving<F: Future>(origin: Arc<str>, future: F) -> F::Output {
    CALLER.scope(origin, future).await
}

/// The client the call being handled is for, when this code runs inside one
/// (background work has none: its peer calls count as the service's own).
pub fn current() -> Option<Arc<str>> {
    CALLER.try_with(Arc::clone).ok()
}

/// Names the client of the call being handled in an outgoing peer call.
pub fn inject(metadata: &mut tonic::metadata::MetadataMap) {
    if let Some(origin) = current() {
        metadata.insert_bin(
            ON_BEHALF_OF,
            tonic::metadata::MetadataValue::from_bytes(origin.as_bytes()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_client_is_known_inside_a_call_and_travels_in_peer_metadata() {
        assert_eq!(current(), None);
        let mut metadata = tonic::metadata::MetadataMap::new();
        inject(&mut metadata);
        assert!(metadata.is_empty(), "no call, nothing to carry");

        serving("subject crm-sync".into(), async {
            inject(&mut metadata);
        })
        .await;
        let headers = metadata.into_headers();
        assert_eq!(
            named_origin(&headers).as_deref(),
            Some("subject crm-sync"),
            "what one service writes, the next reads"
        );
    }

    #[test]
    fn unreadable_or_oversized_names_are_ignored() {
        let mut headers = http::HeaderMap::new();
        headers.insert(ON_BEHALF_OF, http::HeaderValue::from_static("%%%"));
        assert_eq!(named_origin(&headers), None);
        let long = base64::engine::general_purpose::STANDARD.encode("x".repeat(LONGEST_NAME + 1));
        headers.insert(ON_BEHALF_OF, long.parse().unwrap());
        assert_eq!(named_origin(&headers), None);
    }
}

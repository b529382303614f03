//! Bearer-token authentication with scopes checked per RPC.
//!
//! Callers present `authorization: Bearer <JWT>`. The token is verified
//! against the configured keys (an HS256 shared secret, and optionally an
//! identity provider's RS256/ES256 public key) and its `scope` claim (OAuth 2
//! style, space-separated) must hold the scope the called method requires.
//! Each service declares the scope of every one of its methods in a table; a
//! method missing from it is refused, so a new RPC cannot ship unguarded.
//! Health checks and reflection are open, as probes and tools expect.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::config::Settings;
use crate::error::Error;

/// The claims Cairn reads from a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Who calls: a system ("crm-sync"), an agent, or a Cairn service.
    pub sub: String,
    /// Space-separated scopes, for example `"profile.read journey.ingest"`.
    #[serde(default)]
    pub scope: String,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time, in seconds since the Unix epoch.
    #[serde(default)]
    pub iat: u64,
    /// Issuer, checked when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience, checked when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// The verified caller of a request, put in the request's extensions for
/// handlers that need a second scope check (for example a read that may also write).
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's subject, or "anonymous" when authentication is off.
    pub subject: String,
    scopes: Option<HashSet<String>>,
}

impl Principal {
    /// A caller that may do anything: authentication is switched off.
    pub fn unrestricted() -> Self {
        Self {
            subject: "anonymous".into(),
            scopes: None,
        }
    }

    /// True when the caller holds `scope` (always, with authentication off).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes
            .as_ref()
            .is_none_or(|scopes| scopes.contains(scope))
    }

    /// PERMISSION_DENIED unless the caller holds `scope`.
    pub fn require(&self, scope: &str) -> Result<(), Error> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "this call needs the scope \"{scope}\", which the token does not grant"
            )))
        }
    }
}

/// PERMISSION_DENIED unless the request's caller holds `scope`.
pub fn require_scope<T>(request: &tonic::Request<T>, scope: &str) -> Result<(), Error> {
    match request.extensions().get::<Principal>() {
        Some(principal) => principal.require(scope),
        None => Err(Error::Unauthenticated(
            "the request carried no verified caller".into(),
        )),
    }
}

/// Checks tokens against the configured keys.
pub struct Verifier {
    keys: Vec<(DecodingKey, Validation)>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Verifier {
    /// The verifier the settings describe; `None` when authentication is switched off.
    pub fn from_settings(settings: &Settings) -> Result<Option<Self>, String> {
        if settings.auth_disabled {
            return Ok(None);
        }
        let mut keys = Vec::new();
        let configure = |mut validation: Validation| {
            if let Some(issuer) = &settings.auth_issuer {
                validation.set_issuer(&[issuer]);
            }
            match &settings.auth_audience {
                Some(audience) => validation.set_audience(&[audience]),
                None => validation.validate_aud = false,
            }
            validation.leeway = 30;
            validation
        };
        if let Some(secret) = &settings.auth_hs256_key {
            let secret = secret.expose_secret().as_bytes();
            if secret.len() < 32 {
                return Err("CAIRN_AUTH_HS256_KEY must be at least 32 bytes".into());
            }
            keys.push((
                DecodingKey::from_secret(secret),
                configure(Validation::new(Algorithm::HS256)),
            ));
        }
        if let Some(path) = &settings.auth_public_key_file {
            let pem = std::fs::read(path)
                .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
            if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                keys.push((key, configure(Validation::new(Algorithm::RS256))));
            } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                keys.push((key, configure(Validation::new(Algorithm::ES256))));
            } else {
                return Err(format!(
                    "{} holds neither an RSA nor an EC public key in PEM",
                    path.display()
                ));
            }
        }
        if keys.is_empty() {
            return Err("authentication is on but no key is configured: set \
                 CAIRN_AUTH_HS256_KEY or CAIRN_AUTH_PUBLIC_KEY_FILE, or switch \
                 authentication off with CAIRN_AUTH_DISABLED=true (local trials only)"
                .into());
        }
        Ok(Some(Self { keys }))
    }

    /// The principal of a valid token, or UNAUTHENTICATED saying what is wrong.
    pub fn verify(&self, token: &str) -> Result<Principal, Error> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Error::Unauthenticated("the bearer token is not a JWT".into()))?;
        let mut last_error = None;
        for (key, validation) in self
            .keys
            .iter()
            .filter(|(_, v)| v.algorithms.contains(&header.alg))
        {
            match jsonwebtoken::decode::<Claims>(token, key, validation) {
                Ok(data) => {
                    let scopes = data
                        .claims
                        .scope
                        .split_whitespace()
                        .map(str::to_string)
                        .collect();
                    return Ok(Principal {
                        subject: data.claims.sub,
                        scopes: Some(scopes),
                    });
                }
                Err(error) => last_error = Some(error),
            }
        }
        let reason = match last_error.as_ref().map(|e| e.kind()) {
            Some(jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                "the bearer token has expired"
            }
            Some(jsonwebtoken::errors::ErrorKind::InvalidIssuer) => {
                "the bearer token's issuer is not accepted"
            }
            Some(jsonwebtoken::errors::ErrorKind::InvalidAudience) => {
                "the bearer token's audience is not accepted"
            }
            Some(_) => "the bearer token's signature or claims are not valid",
            None => "the bearer token is signed with an algorithm this server does not accept",
        };
        Err(Error::Unauthenticated(reason.into()))
    }
}

/// Mints an HS256 token for `subject` with `scopes`, valid for `ttl`: what
/// `cairn token` prints and what services present to each other.
pub fn mint_token(
    key: &SecretString,
    subject: &str,
    scopes: &[&str],
    ttl: Duration,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<String, Error> {
    let now = unix_now();
    let claims = Claims {
        sub: subject.to_string(),
        scope: scopes.join(" "),
        exp: now + ttl.as_secs(),
        iat: now,
        iss: issuer.map(str::to_string),
        aud: audience.map(str::to_string),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(key.expose_secret().as_bytes()),
    )
    .map_err(Error::internal)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The credentials a service presents when it calls another: a token it
/// mints for itself (refreshed before it expires) or a configured one.
#[derive(Clone)]
pub struct ServiceCredentials {
    inner: Arc<CredentialsInner>,
}

enum CredentialsInner {
    None,
    Fixed(SecretString),
    Minted {
        key: SecretString,
        subject: String,
        issuer: Option<String>,
        audience: Option<String>,
        cached: Mutex<Option<(String, u64)>>,
    },
}

/// Every scope one Cairn service may need when it calls another.
const SERVICE_SCOPES: &[&str] = &[
    "profile.read",
    "profile.write",
    "journey.read",
    "journey.ingest",
    "recommendation.decide",
    "recommendation.read",
    "recommendation.outcome",
    "feedback.read",
    "feedback.write",
];

impl ServiceCredentials {
    /// The credentials `service` uses, from the settings.
    pub fn from_settings(settings: &Settings, service: &str) -> Self {
        let inner = if settings.auth_disabled {
            CredentialsInner::None
        } else if let Some(key) = &settings.auth_hs256_key {
            CredentialsInner::Minted {
                key: key.clone(),
                subject: format!("cairn-{service}"),
                issuer: settings.auth_issuer.clone(),
                audience: settings.auth_audience.clone(),
                cached: Mutex::new(None),
            }
        } else if let Some(token) = &settings.service_token {
            CredentialsInner::Fixed(token.clone())
        } else {
            CredentialsInner::None
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The `authorization` header value, when there is one to send.
    pub fn authorization(&self) -> Option<String> {
        match &*self.inner {
            CredentialsInner::None => None,
            CredentialsInner::Fixed(token) => Some(format!("Bearer {}", token.expose_secret())),
            CredentialsInner::Minted {
                key,
                subject,
                issuer,
                audience,
                cached,
            } => {
                let now = unix_now();
                let mut cached = cached
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if let Some((token, expires)) = cached.as_ref()
                    && *expires > now + 60
                {
                    return Some(format!("Bearer {token}"));
                }
                let ttl = Duration::from_secs(600);
                let token = mint_token(
                    key,
                    subject,
                    SERVICE_SCOPES,
                    ttl,
                    issuer.as_deref(),
                    audience.as_deref(),
                )
                .ok()?;
                *cached = Some((token.clone(), now + ttl.as_secs()));
                Some(format!("Bearer {token}"))
            }
        }
    }
}

/// Which scope each method of a server needs, by full method path
/// (`/cairn.profile.v1.ProfileService/GetProfile`).
#[derive(Debug, Clone, Default)]
pub struct ScopeTable {
    scopes: HashMap<String, &'static str>,
}

impl ScopeTable {
    /// A table of the methods of `service` (its full protobuf name) and their scopes.
    pub fn new(service: &str, methods: &[(&str, &'static str)]) -> Self {
        let mut table = Self::default();
        table.add(service, methods);
        table
    }

    /// Adds every method of `other` (another service served on the same server).
    pub fn merge(&mut self, other: ScopeTable) {
        self.scopes.extend(other.scopes);
    }

    /// Adds the methods of another protobuf service served on the same server.
    pub fn add(&mut self, service: &str, methods: &[(&str, &'static str)]) {
        for (method, scope) in methods {
            self.scopes.insert(format!("/{service}/{method}"), *scope);
        }
    }

    /// The table of the protobuf service `service` as the contract documents
    /// it: each RPC's comment in `proto/` says "Requires the scope \"x\"",
    /// and that first named scope is what the server enforces, so the
    /// documentation and the enforcement cannot drift apart. Methods whose
    /// comment names no scope are left out, and so refused.
    pub fn from_contract(service: &str) -> Self {
        let mut table = Self::default();
        for (method, scope) in documented_scopes(service) {
            table.scopes.insert(format!("/{service}/{method}"), scope);
        }
        table
    }

    /// The scope of the method at `path`, if it has one.
    pub fn scope_of(&self, path: &str) -> Option<&'static str> {
        self.scopes.get(path).copied()
    }

    /// Every method path the table knows, for completeness tests.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.scopes.keys().map(String::as_str)
    }
}

/// The methods of `service` and the scope their comments name, read from the
/// contract's descriptor set (which keeps the proto comments).
pub fn documented_scopes(service: &str) -> Vec<(String, &'static str)> {
    use prost::Message;
    let Ok(set) = prost_types::FileDescriptorSet::decode(cairn_contract::FILE_DESCRIPTOR_SET)
    else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for file in &set.file {
        for (service_index, descriptor) in file.service.iter().enumerate() {
            if format!("{}.{}", file.package(), descriptor.name()) != service {
                continue;
            }
            for (method_index, method) in descriptor.method.iter().enumerate() {
                let path = [6, service_index as i32, 2, method_index as i32];
                let comment = file
                    .source_code_info
                    .as_ref()
                    .and_then(|info| info.location.iter().find(|location| location.path == path))
                    .map(|location| location.leading_comments().replace('\n', " "))
                    .unwrap_or_default();
                if let Some(scope) = first_scope(&comment) {
                    // Leaked once per method at start-up: scopes live as long as the process.
                    found.push((
                        method.name().to_string(),
                        &*Box::leak(scope.into_boxed_str()),
                    ));
                }
            }
        }
    }
    found
}

fn first_scope(comment: &str) -> Option<String> {
    let rest = &comment[comment.find("Requires the scope")?..];
    let start = rest.find('"')? + 1;
    let end = start + rest[start..].find('"')?;
    Some(rest[start..end].to_string())
}

/// True for the methods every caller may use without a token: health checks
/// (Kubernetes probes) and reflection (grpcurl, Postman).
fn is_open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
}

/// The tower layer that authenticates every call of a server.
#[derive(Clone)]
pub struct AuthLayer {
    verifier: Option<Arc<Verifier>>,
    scopes: Arc<ScopeTable>,
}

impl AuthLayer {
    /// Checks calls with `verifier` (none: authentication off) against `scopes`.
    pub fn new(verifier: Option<Arc<Verifier>>, scopes: ScopeTable) -> Self {
        Self {
            verifier,
            scopes: Arc::new(scopes),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service that [`AuthLayer`] wraps around a server's routes.
#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    layer: AuthLayer,
}

impl Authenticate<()> {
    fn principal(layer: &AuthLayer, parts: &http::request::Parts) -> Result<Principal, Error> {
        let path = parts.uri.path();
        let Some(verifier) = &layer.verifier else {
            return Ok(Principal::unrestricted());
        };
        let header = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .ok_or_else(|| {
                Error::Unauthenticated(
                    "missing bearer token: send the metadata \"authorization: Bearer <token>\""
                        .into(),
                )
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .ok_or_else(|| {
                Error::Unauthenticated(
                    "the authorization metadata must be \"Bearer <token>\"".into(),
                )
            })?;
        let principal = verifier.verify(token.trim())?;
        match layer.scopes.scope_of(path) {
            Some(scope) => principal.require(scope)?,
            None => {
                return Err(Error::PermissionDenied(format!(
                    "no scope is configured for {path}; the call is refused"
                )));
            }
        }
        Ok(principal)
    }
}

impl<S, B> tower::Service<http::Request<B>> for Authenticate<S>
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
        if is_open(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let (mut parts, body) = request.into_parts();
        match Authenticate::principal(&self.layer, &parts) {
            Ok(principal) => {
                parts.extensions.insert(principal);
                Box::pin(self.inner.call(http::Request::from_parts(parts, body)))
            }
            Err(error) => {
                let status = Status::from(error);
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_with_key() -> Settings {
        let mut settings = Settings::defaults();
        settings.auth_hs256_key = Some(SecretString::from("k".repeat(32)));
        settings
    }

    #[test]
    fn a_minted_token_verifies_with_its_scopes() {
        let settings = settings_with_key();
        let verifier = Verifier::from_settings(&settings).unwrap().unwrap();
        let key = settings.auth_hs256_key.clone().unwrap();
        let token = mint_token(
            &key,
            "crm",
            &["profile.read"],
            Duration::from_secs(60),
            None,
            None,
        )
        .unwrap();
        let principal = verifier.verify(&token).unwrap();
        assert_eq!(principal.subject, "crm");
        assert!(principal.has_scope("profile.read"));
        assert!(!principal.has_scope("profile.write"));
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let verifier = Verifier::from_settings(&settings_with_key())
            .unwrap()
            .unwrap();
        let other = SecretString::from("x".repeat(32));
        let token = mint_token(
            &other,
            "crm",
            &["profile.read"],
            Duration::from_secs(60),
            None,
            None,
        )
        .unwrap();
        assert!(matches!(
            verifier.verify(&token),
            Err(Error::Unauthenticated(_))
        ));
    }

    #[test]
    fn every_rpc_of_the_contract_documents_its_scope() {
        use prost::Message;
        let set =
            prost_types::FileDescriptorSet::decode(cairn_contract::FILE_DESCRIPTOR_SET).unwrap();
        let mut checked = 0;
        for file in set
            .file
            .iter()
            .filter(|f| f.package().starts_with("cairn."))
        {
            for service in &file.service {
                let name = format!("{}.{}", file.package(), service.name());
                let documented = documented_scopes(&name);
                for method in &service.method {
                    assert!(
                        documented.iter().any(|(m, _)| m == method.name()),
                        "{name}/{} has no \"Requires the scope\" in its comment",
                        method.name()
                    );
                    checked += 1;
                }
            }
        }
        assert!(
            checked > 5,
            "the descriptor set lists the contract's methods"
        );
        let profile = ScopeTable::from_contract("cairn.profile.v1.ProfileService");
        assert_eq!(
            profile.scope_of("/cairn.profile.v1.ProfileService/GetProfile"),
            Some("profile.read")
        );
        assert_eq!(
            profile.scope_of("/cairn.profile.v1.ProfileService/CreateProfile"),
            Some("profile.write")
        );
    }

    #[test]
    fn authentication_on_without_keys_is_a_configuration_error() {
        let settings = Settings::defaults();
        assert!(Verifier::from_settings(&settings).is_err());
    }
}

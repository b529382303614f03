//! Bearer-token authentication with scopes checked per RPC.
//!
//! Callers present `authorization: Bearer <JWT>`. The token is verified
//! against the configured keys (an HS256 shared secret, and optionally an
//! identity provider's RS256/ES256 public key) and its `scope` claim (OAuth 2
//! style, space-separated) must hold the scope the called method requires.
//! Each service declares the scope of every one of its methods in a table; a
//! method missing from it is refused, so a new RPC cannot ship unguarded.
//! Health checks and reflection are open, as probes and tools expect.
//!
//! A token may also name one customer (the `profile_id` claim): the
//! operator's app or web front end acting for one signed-in customer. Such a
//! token reaches only the methods the contract opens to a customer's own
//! token (their comment says so), and within them only that customer's data:
//! each service resolves the customer a request concerns and hands the
//! result to [`Principal::admit`], the one place where the two are compared.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tonic::Status;

use uuid::Uuid;

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
    /// Audience, checked when one is configured: one name or a list (RFC 7519).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Not before, in seconds since the Unix epoch: refused until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// The one customer (profile id) a customer-facing front end acts for;
    /// absent on the tokens of systems and services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_id: Option<String>,
}

/// The `aud` claim: RFC 7519 allows one audience or several.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

/// The verified caller of a request, put in the request's extensions for
/// handlers that need a second scope check (for example a read that may also
/// write) or that must keep a customer's token to that customer's data.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's subject, or "anonymous" when authentication is off.
    pub subject: String,
    scopes: Option<HashSet<String>>,
    customer: Option<Uuid>,
}

/// What a customer's token hears when it names data that is not its
/// customer's, whether that data exists or not: one answer for both, so
/// that such a token cannot probe which identifiers or ids exist.
const NOT_YOURS: &str = "a customer's token reaches only that customer's data";

impl Principal {
    /// A caller that may do anything: authentication is switched off.
    pub fn unrestricted() -> Self {
        Self {
            subject: "anonymous".into(),
            scopes: None,
            customer: None,
        }
    }

    /// The caller of `request`, as the authentication layer verified it.
    /// UNAUTHENTICATED when the layer did not run (a wiring fault).
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Self, Error> {
        request
            .extensions()
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| Error::Unauthenticated("the request carried no verified caller".into()))
    }

    /// The customer (profile id) the caller acts for, when its token names one.
    pub fn customer(&self) -> Option<Uuid> {
        self.customer
    }

    /// True when the token names one customer (a customer-facing front end).
    pub fn is_customer(&self) -> bool {
        self.customer.is_some()
    }

    /// The one check of whose data a request concerns: `found` is what the
    /// service looked up for the request (a profile, a decision, a ticket,
    /// or the error of the lookup) and `owner` says whose it is. Callers
    /// without a customer get `found` unchanged. A customer's token gets it
    /// only when it is that customer's; anything else, including something
    /// that does not exist, is PERMISSION_DENIED with one message, so the
    /// answer never tells another customer's data from none.
    pub fn admit<T>(
        &self,
        found: Result<T, Error>,
        owner: impl FnOnce(&T) -> Uuid,
    ) -> Result<T, Error> {
        let Some(customer) = self.customer else {
            return found;
        };
        match found {
            Ok(item) if owner(&item) == customer => Ok(item),
            Ok(_) | Err(Error::NotFound { .. }) | Err(Error::PermissionDenied(_)) => {
                Err(Error::PermissionDenied(NOT_YOURS.into()))
            }
            Err(other) => Err(other),
        }
    }

    /// PERMISSION_DENIED when the caller's token is a customer's: for the
    /// parts of an allowed method that concern many customers (a list
    /// without a customer filter).
    pub fn require_not_customer(&self, what: &str) -> Result<(), Error> {
        match self.customer {
            Some(_) => Err(Error::PermissionDenied(format!(
                "{what} needs a system's token: {NOT_YOURS}"
            ))),
            None => Ok(()),
        }
    }

    /// True when a verified token (not authentication switched off) of a
    /// system, not a customer's, grants `scope`: for privileges that must
    /// never follow from authentication being off, such as naming the
    /// client a service calls for (`caller.rs`).
    pub fn is_verified_with(&self, scope: &str) -> bool {
        self.customer.is_none()
            && self
                .scopes
                .as_ref()
                .is_some_and(|scopes| scopes.contains(scope))
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
            // A configured issuer or audience is required, not only checked
            // when present: a token without the claim is refused too.
            if let Some(issuer) = &settings.auth_issuer {
                validation.set_issuer(&[issuer]);
                validation.required_spec_claims.insert("iss".into());
            }
            match &settings.auth_audience {
                Some(audience) => {
                    validation.set_audience(&[audience]);
                    validation.required_spec_claims.insert("aud".into());
                }
                None => validation.validate_aud = false,
            }
            // Tokens issued for later are refused until then, as RFC 7519 says.
            validation.validate_nbf = true;
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
    /// An unsigned token (`alg: none`) never verifies: no key accepts it.
    pub fn verify(&self, token: &str) -> Result<Principal, Error> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            Error::Unauthenticated(
                "the bearer token is not a signed JWT (unsigned tokens, alg none, are refused)"
                    .into(),
            )
        })?;
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
                    let customer = match data.claims.profile_id.as_deref() {
                        None => None,
                        Some(raw) => Some(Uuid::parse_str(raw).map_err(|_| {
                            Error::Unauthenticated(
                                "the bearer token's profile_id claim is not a profile id".into(),
                            )
                        })?),
                    };
                    return Ok(Principal {
                        subject: data.claims.sub,
                        scopes: Some(scopes),
                        customer,
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
            Some(jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(claim))
                if claim == "aud" =>
            {
                "the bearer token's audience is not accepted"
            }
            Some(jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(claim))
                if claim == "iss" =>
            {
                "the bearer token's issuer is not accepted"
            }
            Some(jsonwebtoken::errors::ErrorKind::ImmatureSignature) => {
                "the bearer token is not valid yet (its nbf lies ahead)"
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
        aud: audience.map(|audience| Audience::One(audience.to_string())),
        nbf: None,
        profile_id: None,
    };
    sign(key, &claims)
}

/// Mints an HS256 token for a customer-facing front end acting for the
/// customer `profile_id`: what the operator's sign-in hands its app or web
/// front end (`cairn token --profile-id` prints one for trials).
pub fn mint_customer_token(
    key: &SecretString,
    subject: &str,
    profile_id: Uuid,
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
        aud: audience.map(|audience| Audience::One(audience.to_string())),
        nbf: None,
        profile_id: Some(profile_id.to_string()),
    };
    sign(key, &claims)
}

/// Signs `claims` with HS256 and `key`.
pub fn sign(key: &SecretString, claims: &Claims) -> Result<String, Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
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
/// mints for itself (refreshed before it expires) or a configured one, and
/// with TLS on its client certificate.
#[derive(Clone)]
pub struct ServiceCredentials {
    inner: Arc<CredentialsInner>,
    tls: Option<crate::tls::TlsMaterial>,
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
    crate::caller::DELEGATE_SCOPE,
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
        // The files were checked when the process started (Shared::connect);
        // if they became unreadable since, calls to peers fail rather than
        // fall back to plain text.
        let tls = crate::tls::TlsMaterial::from_settings(settings).unwrap_or_else(|error| {
            tracing::error!(%error, "the TLS files cannot be read; calls to peers will fail");
            None
        });
        Self {
            inner: Arc::new(inner),
            tls,
        }
    }

    /// The TLS material the service presents to its peers, with TLS on.
    pub fn tls(&self) -> Option<&crate::tls::TlsMaterial> {
        self.tls.as_ref()
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
    open_to_customers: HashSet<String>,
}

/// The words of an RPC's comment that open it to a customer's own token.
pub const CUSTOMER_MARK: &str = "A customer's own token may call it";

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
        self.open_to_customers.extend(other.open_to_customers);
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
        for method in documented_customer_methods(service) {
            table
                .open_to_customers
                .insert(format!("/{service}/{method}"));
        }
        table
    }

    /// True when the method at `path` is open to a customer's own token.
    pub fn open_to_customers(&self, path: &str) -> bool {
        self.open_to_customers.contains(path)
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
    method_comments(service)
        .into_iter()
        .filter_map(|(method, comment)| {
            // Leaked once per method at start-up: scopes live as long as the process.
            first_scope(&comment).map(|scope| (method, &*Box::leak(scope.into_boxed_str())))
        })
        .collect()
}

/// The methods of `service` whose comment opens them to a customer's own
/// token ([`CUSTOMER_MARK`]); every other method refuses such a token.
pub fn documented_customer_methods(service: &str) -> Vec<String> {
    method_comments(service)
        .into_iter()
        .filter(|(_, comment)| comment.contains(CUSTOMER_MARK))
        .map(|(method, _)| method)
        .collect()
}

/// Each method of `service` with its leading comment, whitespace folded.
fn method_comments(service: &str) -> Vec<(String, String)> {
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
                    .map(|location| {
                        location
                            .leading_comments()
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                found.push((method.name().to_string(), comment));
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
        if principal.is_customer() && !layer.scopes.open_to_customers(path) {
            return Err(Error::PermissionDenied(format!(
                "{path} is not open to a customer's token; it is for the operator's systems"
            )));
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

    /// The claims of a valid token of `settings_with_audience`, to spoil one at a time.
    fn claims() -> Claims {
        let now = unix_now();
        Claims {
            sub: "crm".into(),
            scope: "profile.read".into(),
            exp: now + 300,
            iat: now,
            iss: None,
            aud: Some(Audience::One("cairn".into())),
            nbf: None,
            profile_id: None,
        }
    }

    fn settings_with_audience() -> Settings {
        let mut settings = settings_with_key();
        settings.auth_audience = Some("cairn".into());
        settings
    }

    fn verify(claims: &Claims) -> Result<Principal, Error> {
        let settings = settings_with_audience();
        let verifier = Verifier::from_settings(&settings).unwrap().unwrap();
        let token = sign(settings.auth_hs256_key.as_ref().unwrap(), claims).unwrap();
        verifier.verify(&token)
    }

    fn refusal(outcome: Result<Principal, Error>) -> String {
        match outcome {
            Err(Error::Unauthenticated(message)) => message,
            other => panic!("expected UNAUTHENTICATED, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_token_with_the_audience_verifies() {
        assert!(verify(&claims()).is_ok());
        let mut several = claims();
        several.aud = Some(Audience::Many(vec!["other".into(), "cairn".into()]));
        assert!(
            verify(&several).is_ok(),
            "one of several audiences is enough"
        );
    }

    #[test]
    fn an_expired_token_is_refused() {
        let mut expired = claims();
        // Past the 30 s leeway.
        expired.exp = unix_now() - 120;
        assert!(refusal(verify(&expired)).contains("expired"));
    }

    #[test]
    fn a_token_not_valid_yet_is_refused() {
        let mut early = claims();
        early.nbf = Some(unix_now() + 120);
        assert!(refusal(verify(&early)).contains("not valid yet"));
        let mut due = claims();
        due.nbf = Some(unix_now() - 1);
        assert!(verify(&due).is_ok(), "a token whose nbf has passed is fine");
    }

    #[test]
    fn a_token_for_another_audience_or_none_is_refused() {
        let mut other = claims();
        other.aud = Some(Audience::One("billing".into()));
        assert!(refusal(verify(&other)).contains("audience"));
        let mut missing = claims();
        missing.aud = None;
        assert!(refusal(verify(&missing)).contains("audience"));
    }

    #[test]
    fn a_token_without_the_configured_issuer_is_refused() {
        let mut settings = settings_with_key();
        settings.auth_issuer = Some("https://login.example".into());
        let verifier = Verifier::from_settings(&settings).unwrap().unwrap();
        let key = settings.auth_hs256_key.as_ref().unwrap();
        let mut missing = claims();
        missing.aud = None;
        let token = sign(key, &missing).unwrap();
        assert!(refusal(verifier.verify(&token)).contains("issuer"));
        let mut other = missing.clone();
        other.iss = Some("https://elsewhere.example".into());
        let token = sign(key, &other).unwrap();
        assert!(refusal(verifier.verify(&token)).contains("issuer"));
        let mut right = missing;
        right.iss = Some("https://login.example".into());
        assert!(verifier.verify(&sign(key, &right).unwrap()).is_ok());
    }

    #[test]
    fn a_wrongly_signed_token_is_refused() {
        let settings = settings_with_audience();
        let verifier = Verifier::from_settings(&settings).unwrap().unwrap();
        let forged = sign(&SecretString::from("x".repeat(32)), &claims()).unwrap();
        assert!(refusal(verifier.verify(&forged)).contains("signature"));
        // The right signature over changed claims: the payload was tampered with.
        let genuine = sign(settings.auth_hs256_key.as_ref().unwrap(), &claims()).unwrap();
        let mut elevated = claims();
        elevated.scope = "profile.admin".into();
        let payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&elevated).unwrap(),
        );
        let parts: Vec<&str> = genuine.split('.').collect();
        let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
        assert!(refusal(verifier.verify(&tampered)).contains("signature"));
    }

    #[test]
    fn an_unsigned_token_alg_none_is_refused() {
        let settings = settings_with_audience();
        let verifier = Verifier::from_settings(&settings).unwrap().unwrap();
        let encode = |json: &[u8]| {
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, json)
        };
        let header = encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = encode(&serde_json::to_vec(&claims()).unwrap());
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            assert!(refusal(verifier.verify(&token)).contains("unsigned"));
        }
        // "None" spelled otherwise, and an algorithm no key is configured for.
        let header = encode(br#"{"alg":"NONE","typ":"JWT"}"#);
        assert!(verifier.verify(&format!("{header}.{payload}.")).is_err());
        let header = encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        assert!(
            refusal(verifier.verify(&format!("{header}.{payload}.c2ln"))).contains("algorithm")
        );
    }

    #[test]
    fn a_customer_token_names_its_customer_and_admits_only_its_data() {
        let settings = settings_with_key();
        let verifier = Verifier::from_settings(&settings).unwrap().unwrap();
        let own = Uuid::new_v4();
        let other = Uuid::new_v4();
        let token = mint_customer_token(
            settings.auth_hs256_key.as_ref().unwrap(),
            "web",
            own,
            &["profile.read"],
            Duration::from_secs(60),
            None,
            None,
        )
        .unwrap();
        let customer = verifier.verify(&token).unwrap();
        assert_eq!(customer.customer(), Some(own));
        assert_eq!(customer.admit(Ok(own), |id| *id).unwrap(), own);
        for found in [Ok(other), Err(Error::not_found("profile", "x"))] {
            assert!(matches!(
                customer.admit(found, |id| *id),
                Err(Error::PermissionDenied(message)) if message == NOT_YOURS
            ));
        }
        assert!(matches!(
            customer.admit::<Uuid>(Err(Error::Unavailable("down".into())), |id| *id),
            Err(Error::Unavailable(_))
        ));
        let system = Principal::unrestricted();
        assert_eq!(system.admit(Ok(other), |id| *id).unwrap(), other);

        let mut bad = claims();
        bad.aud = None;
        bad.profile_id = Some("not-a-uuid".into());
        let token = sign(settings.auth_hs256_key.as_ref().unwrap(), &bad).unwrap();
        assert!(refusal(verifier.verify(&token)).contains("profile_id"));
    }

    #[test]
    fn authentication_on_without_keys_is_a_configuration_error() {
        let settings = Settings::defaults();
        assert!(Verifier::from_settings(&settings).is_err());
    }
}

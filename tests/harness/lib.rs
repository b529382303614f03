//! The integration-test harness: the whole suite started in this process on
//! ephemeral ports, against real PostgreSQL and Redis, isolated per test (a
//! fresh database and a fresh Redis key prefix each), with gRPC clients that
//! carry tokens of chosen scopes.
//!
//! PostgreSQL and Redis are found through `CAIRN_TEST_DATABASE_URL` (an
//! administrative URL; default `postgres://postgres@127.0.0.1:5432/test`) and
//! `CAIRN_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`). When one is
//! missing, a test fails at once saying which, instead of hanging.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod process;
pub mod proxy;
pub mod redis_server;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cairn::Suite;
use cairn_runtime::{ServiceKind, Settings, auth};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// Administrative PostgreSQL URL of the tests.
pub fn admin_database_url() -> String {
    std::env::var("CAIRN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Redis URL of the tests.
pub fn redis_url() -> String {
    std::env::var("CAIRN_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Fails the test at once, saying what is missing, when a store's port does not answer.
async fn require_reachable(what: &str, url: &str, variable: &str) {
    let authority = url.split("://").nth(1).unwrap_or(url);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let host_port = authority.split(['/', '?']).next().unwrap_or(authority);
    let connected = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect(host_port),
    )
    .await;
    if !matches!(connected, Ok(Ok(_))) {
        panic!(
            "{what} is not reachable at {host_port}: the integration tests need a running {what} \
             (set {variable} to point elsewhere). `make test` checks this before it starts."
        );
    }
}

/// A PostgreSQL database of one test, dropped when the test stops its app.
pub struct TestDatabase {
    /// The database's URL.
    pub url: String,
    name: String,
    admin: DatabaseConnection,
}

impl TestDatabase {
    /// Creates a fresh, empty database.
    pub async fn create() -> Self {
        let admin_url = admin_database_url();
        require_reachable("PostgreSQL", &admin_url, "CAIRN_TEST_DATABASE_URL").await;
        let admin = Database::connect(&admin_url)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to PostgreSQL: {error}"));
        let name = format!("cairn_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|error| panic!("cannot create the test database: {error}"));
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(&admin_url);
        Self {
            url: format!("{base}/{name}"),
            name,
            admin,
        }
    }

    /// A connection to the test's database, to check what the services stored.
    pub async fn connect(&self) -> DatabaseConnection {
        Database::connect(&self.url)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to the test database: {error}"))
    }

    /// Drops the database.
    pub async fn drop_database(&self) {
        let _ = self
            .admin
            .execute_unprepared(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

/// How a test wants its suite.
pub struct Options {
    /// Authentication on (the default, as in production).
    pub auth: bool,
    /// The services to start.
    pub services: Vec<ServiceKind>,
    /// Last changes to the settings.
    pub adjust: Box<dyn FnOnce(&mut Settings) + Send>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            auth: true,
            services: ServiceKind::ALL.to_vec(),
            adjust: Box::new(|_| {}),
        }
    }
}

/// The suite of one test.
pub struct TestApp {
    /// Where each service listens.
    pub addresses: std::collections::BTreeMap<ServiceKind, SocketAddr>,
    /// The test's database.
    pub database: Arc<TestDatabase>,
    /// The test's Redis key prefix.
    pub redis_prefix: String,
    /// The settings the suite runs with.
    pub settings: Settings,
    shutdown: CancellationToken,
    suite: Option<Suite>,
    client_tls: Option<tonic::transport::ClientTlsConfig>,
}

/// The HS256 key of test suites.
pub const TEST_KEY: &str = "test-key-of-at-least-thirty-two-bytes!!";

/// Starts all four services with authentication on.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

/// Starts the suite as `options` say.
pub async fn spawn_app_with(options: Options) -> TestApp {
    telemetry::install_once();
    let database = Arc::new(TestDatabase::create().await);
    spawn_on(
        database,
        format!("cairn-test:{}:", uuid::Uuid::new_v4().simple()),
        options,
    )
    .await
}

/// Starts a suite on an existing database and Redis prefix (a restart, or a second replica).
pub async fn spawn_on(
    database: Arc<TestDatabase>,
    redis_prefix: String,
    options: Options,
) -> TestApp {
    let redis = redis_url();
    require_reachable("Redis", &redis, "CAIRN_TEST_REDIS_URL").await;
    let mut settings = Settings::defaults();
    for service in ServiceKind::ALL {
        settings.set_port(service, 0);
    }
    settings.database_url = Some(SecretString::from(database.url.clone()));
    settings.database_max_connections = 5;
    settings.redis_url = Some(SecretString::from(redis));
    settings.redis_prefix = redis_prefix.clone();
    settings.metrics_port = 0;
    settings.shutdown_grace_ms = 5_000;
    if options.auth {
        settings.auth_hs256_key = Some(SecretString::from(TEST_KEY));
    } else {
        settings.auth_disabled = true;
    }
    (options.adjust)(&mut settings);
    let shutdown = CancellationToken::new();
    let suite = Suite::start(settings, &options.services, shutdown.clone())
        .await
        .unwrap_or_else(|error| panic!("the suite did not start: {error}"));
    // With TLS on, the test's clients present the suite's own certificate.
    let client_tls = cairn_runtime::tls::TlsMaterial::from_settings(&suite.shared.settings)
        .unwrap_or_else(|error| panic!("the suite's TLS files: {error}"))
        .map(|material| material.client());
    let app = TestApp {
        client_tls,
        addresses: suite.addresses.clone(),
        settings: suite.shared.settings.clone(),
        database,
        redis_prefix,
        shutdown,
        suite: Some(suite),
    };
    for service in &options.services {
        app.wait_until_serving(*service).await;
    }
    app
}

/// The interceptor of test clients: adds the bearer token, if any.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    /// An interceptor that sends `token` as the bearer token.
    pub fn token(token: &str) -> Self {
        Self(Some(
            format!("Bearer {token}")
                .parse()
                .unwrap_or_else(|_| panic!("token is ascii")),
        ))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

/// A channel to a service with a token.
pub type AuthedChannel = InterceptedService<Channel, Bearer>;

impl TestApp {
    /// A token with `scopes`, signed with the suite's key.
    pub fn token(&self, scopes: &[&str]) -> String {
        auth::mint_token(
            &SecretString::from(TEST_KEY),
            "test",
            scopes,
            Duration::from_secs(600),
            None,
            None,
        )
        .unwrap_or_else(|error| panic!("minting a token: {error}"))
    }

    /// A token of a customer-facing front end acting for the customer
    /// `profile_id`, with `scopes`, signed with the suite's key.
    pub fn customer_token(&self, profile_id: &str, scopes: &[&str]) -> String {
        auth::mint_customer_token(
            &SecretString::from(TEST_KEY),
            "web-front-end",
            uuid::Uuid::parse_str(profile_id).unwrap_or_else(|_| panic!("{profile_id} is a UUID")),
            scopes,
            Duration::from_secs(600),
            None,
            None,
        )
        .unwrap_or_else(|error| panic!("minting a token: {error}"))
    }

    /// A channel to `service` whose calls carry the bearer `token`.
    pub async fn with_token(&self, service: ServiceKind, token: &str) -> AuthedChannel {
        let value = format!("Bearer {token}")
            .parse()
            .unwrap_or_else(|_| panic!("token is ascii"));
        InterceptedService::new(self.channel(service).await, Bearer(Some(value)))
    }

    /// A plain channel to `service` (over TLS with the suite's certificate
    /// when the suite serves TLS).
    pub async fn channel(&self, service: ServiceKind) -> Channel {
        let address = self.addresses[&service];
        let scheme = if self.client_tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{address}"))
            .unwrap_or_else(|error| panic!("{error}"));
        if let Some(tls) = &self.client_tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .unwrap_or_else(|error| panic!("{error}"));
        }
        endpoint.connect().await.unwrap_or_else(|error| {
            panic!("cannot connect to the {service} service at {address}: {error}")
        })
    }

    /// A channel to `service` whose calls carry a token with `scopes` (none: no token).
    pub async fn authed(&self, service: ServiceKind, scopes: &[&str]) -> AuthedChannel {
        let token = (!scopes.is_empty()).then(|| {
            format!("Bearer {}", self.token(scopes))
                .parse()
                .unwrap_or_else(|_| panic!("token is ascii"))
        });
        InterceptedService::new(self.channel(service).await, Bearer(token))
    }

    /// A profile client with every profile scope.
    pub async fn profile(
        &self,
    ) -> cairn_contract::profile::v1::profile_service_client::ProfileServiceClient<AuthedChannel>
    {
        cairn_contract::profile::v1::profile_service_client::ProfileServiceClient::new(
            self.authed(
                ServiceKind::Profile,
                &["profile.read", "profile.write", "profile.admin"],
            )
            .await,
        )
    }

    /// A journey client with every journey scope.
    pub async fn journey(
        &self,
    ) -> cairn_contract::journey::v1::journey_service_client::JourneyServiceClient<AuthedChannel>
    {
        cairn_contract::journey::v1::journey_service_client::JourneyServiceClient::new(
            self.authed(
                ServiceKind::Journey,
                &["journey.read", "journey.ingest", "journey.write"],
            )
            .await,
        )
    }

    /// Creates a known profile with `identifiers` and string `attributes`; returns its id.
    pub async fn create_profile(
        &self,
        identifiers: Vec<cairn_contract::common::v1::Identifier>,
        attributes: &[(&str, &str)],
    ) -> String {
        use cairn_contract::common::v1::{Value, value};
        self.profile()
            .await
            .create_profile(cairn_contract::profile::v1::CreateProfileRequest {
                identifiers,
                attributes: attributes
                    .iter()
                    .map(|(name, text)| {
                        (
                            name.to_string(),
                            Value {
                                kind: Some(value::Kind::StringValue(text.to_string())),
                            },
                        )
                    })
                    .collect(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .profile
            .unwrap()
            .profile_id
    }

    /// Opens a CreateProfile call on the profile service and holds it open
    /// (headers sent, message held back) until the returned sender sends the
    /// request or is dropped: a call in flight, for shutdown and load tests.
    pub async fn hold_create_profile_call(
        &self,
    ) -> (
        tokio::sync::mpsc::Sender<cairn_contract::profile::v1::CreateProfileRequest>,
        tokio::task::JoinHandle<
            Result<tonic::Response<cairn_contract::profile::v1::CreateProfileResponse>, Status>,
        >,
    ) {
        use cairn_contract::profile::v1::{CreateProfileRequest, CreateProfileResponse};
        let token = format!("Bearer {}", self.token(&["profile.write"]));
        let mut grpc = tonic::client::Grpc::new(self.channel(ServiceKind::Profile).await);
        grpc.ready().await.unwrap();
        let (sender, receiver) = tokio::sync::mpsc::channel::<CreateProfileRequest>(1);
        let mut request = Request::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
        request
            .metadata_mut()
            .insert("authorization", token.parse().unwrap());
        let call = tokio::spawn(async move {
            let codec =
                tonic_prost::ProstCodec::<CreateProfileRequest, CreateProfileResponse>::default();
            let path = http::uri::PathAndQuery::from_static(
                "/cairn.profile.v1.ProfileService/CreateProfile",
            );
            grpc.client_streaming(request, path, codec).await
        });
        // Let the call's headers reach the server.
        tokio::time::sleep(Duration::from_millis(200)).await;
        (sender, call)
    }

    /// Polls the health service until `service` reports SERVING (10 s at most).
    pub async fn wait_until_serving(&self, service: ServiceKind) {
        let mut health =
            tonic_health::pb::health_client::HealthClient::new(self.channel(service).await);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|response| response.into_inner().status);
            if matches!(status, Ok(code) if code == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
            {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("the {service} service did not become SERVING within 10 s: {status:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fires the suite's shutdown without waiting for it.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Stops the suite and waits until every service has stopped; keeps the database.
    pub async fn stop_services(&mut self) {
        if let Some(suite) = self.suite.take() {
            suite
                .stop()
                .await
                .unwrap_or_else(|error| panic!("the suite did not stop cleanly: {error}"));
        }
    }

    /// Stops the suite, drops the test's database and deletes its Redis keys.
    pub async fn stop(mut self) {
        self.stop_services().await;
        self.database.drop_database().await;
        delete_redis_prefix(&self.redis_prefix).await;
    }
}

/// An identifier of `kind` with `value`.
pub fn identifier(
    kind: cairn_contract::common::v1::IdentifierType,
    value: &str,
) -> cairn_contract::common::v1::Identifier {
    cairn_contract::common::v1::Identifier {
        r#type: kind as i32,
        value: value.into(),
        custom_type: String::new(),
    }
}

/// A customer reference by `identifier`.
pub fn by_identifier(
    identifier: cairn_contract::common::v1::Identifier,
) -> cairn_contract::common::v1::CustomerRef {
    cairn_contract::common::v1::CustomerRef {
        customer: Some(cairn_contract::common::v1::customer_ref::Customer::Identifier(identifier)),
    }
}

/// A touchpoint `id` of `who` on `channel`, of `kind`, that happened
/// `minutes_ago`, with string `properties`.
pub fn touchpoint(
    id: &str,
    who: cairn_contract::common::v1::Identifier,
    channel: cairn_contract::common::v1::Channel,
    kind: cairn_contract::journey::v1::TouchpointType,
    minutes_ago: u64,
    properties: &[(&str, &str)],
) -> cairn_contract::journey::v1::Touchpoint {
    cairn_contract::journey::v1::Touchpoint {
        touchpoint_id: id.into(),
        customer: Some(by_identifier(who)),
        channel: channel as i32,
        r#type: kind as i32,
        occurred_at: Some(prost_types::Timestamp::from(
            std::time::SystemTime::now() - Duration::from_secs(minutes_ago * 60),
        )),
        properties: properties
            .iter()
            .map(|(name, value)| {
                (
                    name.to_string(),
                    cairn_contract::common::v1::Value {
                        kind: Some(cairn_contract::common::v1::value::Kind::StringValue(
                            value.to_string(),
                        )),
                    },
                )
            })
            .collect(),
        ..Default::default()
    }
}

/// Deletes every Redis key under `prefix` (best effort: a leftover is harmless).
pub async fn delete_redis_prefix(prefix: &str) {
    let Ok(client) = redis::Client::open(redis_url()) else {
        return;
    };
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<i64> = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut connection)
            .await;
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{what} did not happen within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

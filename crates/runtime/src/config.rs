//! Configuration from flags and environment variables: one table of settings,
//! documented in the README, shared by every service.
//!
//! Every setting is a flag of `cairn serve` with an environment variable of the
//! same meaning; the flag wins. Secrets (database URLs may carry passwords,
//! token keys) are held in [`SecretString`] so they never print in logs.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use secrecy::{ExposeSecret, SecretString};

/// The four services of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum ServiceKind {
    /// One view of each customer.
    Profile,
    /// Touchpoints and journeys.
    Journey,
    /// Next best action.
    Recommendation,
    /// Surveys, tickets and measures.
    Feedback,
}

impl ServiceKind {
    /// Every service, in the order they start.
    pub const ALL: [ServiceKind; 4] = [
        ServiceKind::Profile,
        ServiceKind::Journey,
        ServiceKind::Recommendation,
        ServiceKind::Feedback,
    ];

    /// The service's short name, used in logs, metrics, table prefixes and topics.
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Profile => "profile",
            ServiceKind::Journey => "journey",
            ServiceKind::Recommendation => "recommendation",
            ServiceKind::Feedback => "feedback",
        }
    }

    /// The port the service listens on unless configured otherwise.
    pub fn default_port(self) -> u16 {
        match self {
            ServiceKind::Profile => 50051,
            ServiceKind::Journey => 50052,
            ServiceKind::Recommendation => 50053,
            ServiceKind::Feedback => 50054,
        }
    }
}

impl std::fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every setting of a Cairn process. See the configuration table in the README.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address the gRPC servers bind to.
    #[arg(long, env = "CAIRN_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port of the profile service.
    #[arg(long, env = "CAIRN_PROFILE_PORT", default_value_t = 50051)]
    pub profile_port: u16,
    /// Port of the journey service.
    #[arg(long, env = "CAIRN_JOURNEY_PORT", default_value_t = 50052)]
    pub journey_port: u16,
    /// Port of the recommendation service.
    #[arg(long, env = "CAIRN_RECOMMENDATION_PORT", default_value_t = 50053)]
    pub recommendation_port: u16,
    /// Port of the feedback service.
    #[arg(long, env = "CAIRN_FEEDBACK_PORT", default_value_t = 50054)]
    pub feedback_port: u16,

    /// Database of every service, unless a service has its own below.
    /// `postgres://…` in production; unset means one SQLite file per service
    /// under the data directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,
    /// Folder of the SQLite files used when no database URL is set.
    #[arg(long, env = "CAIRN_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Connections in each service's database pool.
    #[arg(long, env = "CAIRN_DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,
    /// Apply pending migrations when a service starts (Kubernetes runs
    /// `cairn migrate` as a Job instead and sets this to false).
    #[arg(long, env = "CAIRN_MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,

    /// Redis for sessions, counters and the event bus. Unset means in-process
    /// stand-ins, which are not shared across replicas (a local trial only).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key, so that several suites (or tests) can share one Redis.
    #[arg(long, env = "CAIRN_REDIS_PREFIX", default_value = "cairn:")]
    pub redis_prefix: String,
    /// Events kept on the bus for listeners that reconnect (approximate).
    /// A consumer group that falls further behind gets the trimmed events
    /// it missed redelivered from the outboxes (see `outbox::Outbox::redeliver_missed`).
    #[arg(long, env = "CAIRN_EVENT_RETENTION", default_value_t = 1_000_000)]
    pub event_retention: usize,
    /// How long each service keeps the events it published in its outbox
    /// (PostgreSQL), so that they are replayed when the bus loses its log
    /// (Redis restarted without its data). Redis is the bus, not the record.
    #[arg(long, env = "CAIRN_OUTBOX_RETENTION_HOURS", default_value_t = 168)]
    pub outbox_retention_hours: u64,

    /// Switch authentication off. For a local trial only: the server says so
    /// loudly at start.
    #[arg(long, env = "CAIRN_AUTH_DISABLED", default_value_t = false, action = clap::ArgAction::Set)]
    pub auth_disabled: bool,
    /// Shared secret of HS256 bearer tokens (at least 32 bytes). Services also
    /// sign their own calls to each other with it.
    #[arg(long, env = "CAIRN_AUTH_HS256_KEY", hide_env_values = true)]
    pub auth_hs256_key: Option<SecretString>,
    /// PEM file with an RSA or EC public key of an identity provider whose
    /// RS256/ES256 tokens are accepted as well.
    #[arg(long, env = "CAIRN_AUTH_PUBLIC_KEY_FILE")]
    pub auth_public_key_file: Option<PathBuf>,
    /// Required `iss` claim, when set.
    #[arg(long, env = "CAIRN_AUTH_ISSUER")]
    pub auth_issuer: Option<String>,
    /// Required `aud` claim, when set.
    #[arg(long, env = "CAIRN_AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,
    /// Token the services present to each other when they cannot mint one
    /// (no HS256 key, only an identity provider's public key).
    #[arg(long, env = "CAIRN_SERVICE_TOKEN", hide_env_values = true)]
    pub service_token: Option<SecretString>,

    /// PEM certificate chain of this process: its listeners serve TLS with
    /// it, and it is the client certificate the services present to each
    /// other. Unset: plain-text gRPC (behind a mesh or on a trusted network).
    #[arg(long, env = "CAIRN_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the certificate in `CAIRN_TLS_CERT_FILE`.
    #[arg(long, env = "CAIRN_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM certificate(s) of the authority the suite trusts, required with
    /// TLS: the services' server certificates are checked against it when
    /// they call each other, and callers must present a client certificate
    /// it signed (mutual TLS).
    #[arg(long, env = "CAIRN_TLS_CA_FILE", requires = "tls_cert_file")]
    pub tls_ca_file: Option<PathBuf>,
    /// `required` refuses every caller without a client
    /// certificate the CA signed; `optional` lets callers without one in
    /// (front ends with bearer tokens) but still refuses a wrong one.
    #[arg(long, env = "CAIRN_TLS_CLIENT_AUTH", default_value = "required")]
    pub tls_client_auth: ClientAuth,

    /// Key of the keyed hashes that erasure leaves of a person's identifiers
    /// (suppression records). Unset: the HS256 token key, or a fixed local
    /// trial key when authentication is off.
    #[arg(long, env = "CAIRN_SUPPRESSION_KEY", hide_env_values = true)]
    pub suppression_key: Option<SecretString>,

    /// Key of the HMAC that signs page tokens (at least 32 bytes; the same on
    /// every replica, so a token from one works on another). Unset: derived
    /// from the HS256 token key, or a fixed local-trial key when
    /// authentication is off.
    #[arg(long, env = "CAIRN_PAGE_TOKEN_KEY", hide_env_values = true)]
    pub page_token_key: Option<SecretString>,

    /// Accept phone numbers written with letters (vanity numbers such as
    /// `+1 800 FLOWERS`, the letters read as keypad digits). Off: a phone
    /// number holds digits, spaces, one leading `+` and the separators
    /// `-`, `.`, `(`, `)`, `/` only.
    #[arg(long, env = "CAIRN_PHONE_ALLOW_LETTERS", default_value_t = false, action = clap::ArgAction::Set)]
    pub phone_allow_letters: bool,

    /// Most identifiers of one kind a profile may hold after an automatic
    /// merge; a merge beyond it (a kiosk device seen by hundreds) is refused.
    #[arg(
        long,
        env = "CAIRN_MERGE_MAX_IDENTIFIERS_PER_KIND",
        default_value_t = 50
    )]
    pub merge_max_identifiers_per_kind: usize,

    /// How long a customer's cross-channel session lives without activity,
    /// in seconds; any change or resume starts the wait again.
    #[arg(long, env = "CAIRN_SESSION_IDLE_SECONDS", default_value_t = 1800)]
    pub session_idle_seconds: u64,
    /// How often each journey replica looks for positions whose deadline
    /// passed (abandonment, inactivity) and for re-engagements to retry, in
    /// milliseconds.
    #[arg(long, env = "CAIRN_DEADLINE_POLL_MS", default_value_t = 1000)]
    pub deadline_poll_ms: u64,
    /// First wait before a failed re-engagement (recommendation unavailable)
    /// is tried again, in milliseconds; it doubles with each attempt, up to an hour.
    #[arg(long, env = "CAIRN_REENGAGEMENT_RETRY_MS", default_value_t = 30_000)]
    pub reengagement_retry_ms: u64,

    /// Region (ISO 3166 alpha-2, for example `SE`) of phone numbers written
    /// without a country code; unset means such numbers are refused.
    #[arg(long, env = "CAIRN_DEFAULT_PHONE_REGION")]
    pub default_phone_region: Option<String>,

    /// What Decide does for a customer no profile holds: `anonymous` decides
    /// for them as a customer with no attributes, segments or consent;
    /// `not-found` answers NOT_FOUND.
    #[arg(
        long,
        env = "CAIRN_RECOMMENDATION_UNKNOWN_CUSTOMER",
        default_value = "anonymous"
    )]
    pub recommendation_unknown_customer: UnknownCustomer,
    /// How long after a decision its outcomes are accepted, in seconds;
    /// afterwards actions without a final outcome count as ignored.
    #[arg(
        long,
        env = "CAIRN_RECOMMENDATION_OUTCOME_WINDOW_SECS",
        default_value_t = 7 * 24 * 3600
    )]
    pub recommendation_outcome_window_secs: u64,
    /// How long decisions stay in the decision log, in days.
    #[arg(
        long,
        env = "CAIRN_RECOMMENDATION_DECISION_RETENTION_DAYS",
        default_value_t = 90
    )]
    pub recommendation_decision_retention_days: u32,
    /// String profile attributes the recommendation scorer uses as
    /// categorical features (comma-separated); other strings are never
    /// features, so free text and identifiers stay out of the model.
    #[arg(
        long,
        env = "CAIRN_RECOMMENDATION_CATEGORICAL_ATTRIBUTES",
        default_value = "plan",
        value_delimiter = ','
    )]
    pub recommendation_categorical_attributes: Vec<String>,

    /// Address of the profile service, for the other services' calls.
    #[arg(long, env = "CAIRN_PROFILE_ADDR")]
    pub profile_addr: Option<String>,
    /// Address of the journey service, for the other services' calls.
    #[arg(long, env = "CAIRN_JOURNEY_ADDR")]
    pub journey_addr: Option<String>,
    /// Address of the recommendation service, for the other services' calls.
    #[arg(long, env = "CAIRN_RECOMMENDATION_ADDR")]
    pub recommendation_addr: Option<String>,
    /// Address of the feedback service, for the other services' calls.
    #[arg(long, env = "CAIRN_FEEDBACK_ADDR")]
    pub feedback_addr: Option<String>,
    /// Deadline of one service-to-service call, in milliseconds.
    #[arg(long, env = "CAIRN_PEER_DEADLINE_MS", default_value_t = 2000)]
    pub peer_deadline_ms: u64,

    /// Largest request or response message, in bytes.
    #[arg(long, env = "CAIRN_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Deadline applied to calls that carry none, and the longest a call
    /// with its own deadline gets, in milliseconds; a call past it is
    /// answered DEADLINE_EXCEEDED. Streaming calls are not cut by it.
    #[arg(long, env = "CAIRN_DEFAULT_DEADLINE_MS", default_value_t = 30_000)]
    pub default_deadline_ms: u64,
    /// HTTP/2 streams one connection may have open at once.
    #[arg(long, env = "CAIRN_MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    pub max_concurrent_streams: u32,
    /// Calls a service works on at once; calls beyond it are shed at once with
    /// UNAVAILABLE (the server is overloaded; retry with backoff) instead of
    /// queueing without bound.
    #[arg(long, env = "CAIRN_MAX_IN_FLIGHT", default_value_t = 2048)]
    pub max_in_flight: usize,
    /// Calls one client (a token's subject, or an IP address with
    /// authentication off; a Cairn service's call for a client counts as
    /// that client's) may have open at once on one replica, waiting or at
    /// work, streams until they end; more are answered RESOURCE_EXHAUSTED.
    /// 0: no limit.
    #[arg(long, env = "CAIRN_CLIENT_MAX_IN_FLIGHT", default_value_t = 256)]
    pub client_max_in_flight: usize,
    /// Calls of one client a replica works on at once while it is busy (as
    /// many calls at work as its database pool has connections); the
    /// client's further calls wait their turn within their deadline while
    /// other clients' calls start at once. Unset: half the database pool,
    /// rounded up; 0: no limit.
    #[arg(long, env = "CAIRN_CLIENT_SHARE")]
    pub client_share: Option<usize>,
    /// Calls one client may start per second on one replica, on average;
    /// more are answered RESOURCE_EXHAUSTED with a retry delay. 0: no limit.
    #[arg(long, env = "CAIRN_CLIENT_RATE_PER_SECOND", default_value_t = 0)]
    pub client_rate_per_second: u32,
    /// Calls one client may start at once above its rate after a quiet
    /// spell; 0: one second's worth.
    #[arg(long, env = "CAIRN_CLIENT_RATE_BURST", default_value_t = 0)]
    pub client_rate_burst: u32,
    /// Time in-flight calls get to finish after SIGTERM, in milliseconds.
    #[arg(long, env = "CAIRN_SHUTDOWN_GRACE_MS", default_value_t = 20_000)]
    pub shutdown_grace_ms: u64,

    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, env = "CAIRN_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// OTLP/gRPC endpoint of an OpenTelemetry Collector; traces and metrics
    /// are exported there when set.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Which traces are recorded and exported, by OpenTelemetry's sampler
    /// names: `parentbased_always_on` (the default: every trace, and the
    /// caller's decision when it sent one), `always_on`, `always_off`,
    /// `traceidratio`, `parentbased_always_off`, `parentbased_traceidratio`.
    #[arg(
        long,
        env = "OTEL_TRACES_SAMPLER",
        default_value = "parentbased_always_on"
    )]
    pub traces_sampler: TracesSampler,
    /// The share of traces the ratio samplers keep, from 0 to 1.
    #[arg(long, env = "OTEL_TRACES_SAMPLER_ARG", default_value_t = 1.0, value_parser = parse_ratio)]
    pub traces_sampler_arg: f64,
    /// Which spans are exported as traces, in `RUST_LOG`'s syntax but apart
    /// from it: quieter logs never switch tracing off.
    #[arg(
        long,
        env = "CAIRN_TRACES_FILTER",
        default_value = crate::telemetry::DEFAULT_TRACES_FILTER
    )]
    pub traces_filter: String,
    /// Port of the Prometheus `/metrics` endpoint; 0 switches it off.
    #[arg(long, env = "CAIRN_METRICS_PORT", default_value_t = 9464)]
    pub metrics_port: u16,
}

/// What the recommendation service does for a customer no profile holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UnknownCustomer {
    /// Decide for them as an anonymous customer.
    Anonymous,
    /// Answer NOT_FOUND.
    NotFound,
}

/// Whether callers must present a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientAuth {
    /// Every caller presents a certificate the CA signed (mutual TLS).
    Required,
    /// A certificate is checked when presented; callers without one get in.
    Optional,
}

/// OpenTelemetry's samplers, by the names `OTEL_TRACES_SAMPLER` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TracesSampler {
    /// Every trace.
    #[value(name = "always_on")]
    AlwaysOn,
    /// No trace.
    #[value(name = "always_off")]
    AlwaysOff,
    /// The share of traces `OTEL_TRACES_SAMPLER_ARG` says, by trace id.
    #[value(name = "traceidratio")]
    TraceIdRatio,
    /// The caller's decision when it sent one, else every trace.
    #[value(name = "parentbased_always_on")]
    ParentBasedAlwaysOn,
    /// The caller's decision when it sent one, else none.
    #[value(name = "parentbased_always_off")]
    ParentBasedAlwaysOff,
    /// The caller's decision when it sent one, else the share `OTEL_TRACES_SAMPLER_ARG` says.
    #[value(name = "parentbased_traceidratio")]
    ParentBasedTraceIdRatio,
}

/// A sampler ratio: a number from 0 to 1.
fn parse_ratio(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!("{value} is not a ratio from 0 to 1")),
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Settings {
    /// The settings with every default, as `cairn serve` without flags or
    /// environment would have them; tests start from here.
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        // Parsing an empty command line cannot fail: every field has a default
        // or is optional. Environment variables are ignored here on purpose.
        let command = <Only as clap::CommandFactory>::command();
        let command = command
            .get_arguments()
            .fold(command.clone(), |command, argument| {
                let id = argument.get_id().clone();
                command.mut_arg(id, |argument| argument.env(None::<&str>))
            });
        let matches = command.get_matches_from(["cairn"]);
        <Only as clap::FromArgMatches>::from_arg_matches(&matches)
            .map(|only| only.settings)
            .unwrap_or_else(|error| unreachable!("defaults parse: {error}"))
    }

    /// The port of `service`.
    pub fn port(&self, service: ServiceKind) -> u16 {
        match service {
            ServiceKind::Profile => self.profile_port,
            ServiceKind::Journey => self.journey_port,
            ServiceKind::Recommendation => self.recommendation_port,
            ServiceKind::Feedback => self.feedback_port,
        }
    }

    /// Sets the port of `service` (tests bind port 0 and record what they got).
    pub fn set_port(&mut self, service: ServiceKind, port: u16) {
        match service {
            ServiceKind::Profile => self.profile_port = port,
            ServiceKind::Journey => self.journey_port = port,
            ServiceKind::Recommendation => self.recommendation_port = port,
            ServiceKind::Feedback => self.feedback_port = port,
        }
    }

    /// The address other services use to call `service`: the configured one,
    /// else this process's own host and port.
    pub fn peer_address(&self, service: ServiceKind) -> String {
        let configured = match service {
            ServiceKind::Profile => &self.profile_addr,
            ServiceKind::Journey => &self.journey_addr,
            ServiceKind::Recommendation => &self.recommendation_addr,
            ServiceKind::Feedback => &self.feedback_addr,
        };
        configured.clone().unwrap_or_else(|| {
            let host = match self.host {
                IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".to_string(),
                IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
                IpAddr::V4(v4) => v4.to_string(),
            };
            let scheme = if self.tls_cert_file.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{host}:{}", self.port(service))
        })
    }

    /// The database URL of `service`: `CAIRN_<SERVICE>_DATABASE_URL` when set,
    /// else `DATABASE_URL`, else a SQLite file in the data directory.
    pub fn database_url(&self, service: ServiceKind) -> SecretString {
        let own = format!("CAIRN_{}_DATABASE_URL", service.name().to_uppercase());
        if let Ok(url) = std::env::var(own) {
            return SecretString::from(url);
        }
        if let Some(url) = &self.database_url {
            return url.clone();
        }
        let path = self.data_dir.join(format!("{}.db", service.name()));
        SecretString::from(format!("sqlite://{}?mode=rwc", path.display()))
    }

    /// True when the services share state through Redis.
    pub fn uses_redis(&self) -> bool {
        self.redis_url.is_some()
    }

    /// The Redis URL, when one is configured.
    pub fn redis_url(&self) -> Option<&str> {
        self.redis_url.as_ref().map(|url| url.expose_secret())
    }

    /// The default deadline as a duration.
    pub fn default_deadline(&self) -> Duration {
        Duration::from_millis(self.default_deadline_ms)
    }

    /// The service-to-service deadline as a duration.
    pub fn peer_deadline(&self) -> Duration {
        Duration::from_millis(self.peer_deadline_ms)
    }

    /// How long published events stay in the outboxes, as a duration.
    pub fn outbox_retention(&self) -> Duration {
        Duration::from_secs(self.outbox_retention_hours.saturating_mul(3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ports() {
        let settings = Settings::defaults();
        for service in ServiceKind::ALL {
            assert_eq!(settings.port(service), service.default_port());
        }
        assert_eq!(
            settings.peer_address(ServiceKind::Profile),
            "http://127.0.0.1:50051"
        );
        assert!(!settings.auth_disabled);
        assert_eq!(settings.traces_sampler, TracesSampler::ParentBasedAlwaysOn);
        assert_eq!(settings.traces_sampler_arg, 1.0);
    }

    #[test]
    fn sampler_ratios_outside_zero_to_one_are_refused() {
        assert_eq!(parse_ratio("0.25"), Ok(0.25));
        assert!(parse_ratio("1.5").is_err());
        assert!(parse_ratio("-0.1").is_err());
        assert!(parse_ratio("half").is_err());
    }
}

//! A suite of its own for one benchmark run: a fresh database on the
//! PostgreSQL server, a fresh Redis prefix, authentication off, every
//! service on an ephemeral port.

use anyhow::Context;
use cairn::Suite;
use cairn_runtime::{ServiceKind, Settings};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

/// A running suite and what to clean up.
pub struct BenchSuite {
    /// The suite.
    pub suite: Suite,
    admin: DatabaseConnection,
    database: String,
}

impl BenchSuite {
    /// Starts `services` against a new database on `admin_url` and `redis_url`.
    pub async fn start(
        admin_url: &str,
        redis_url: &str,
        services: &[ServiceKind],
    ) -> anyhow::Result<Self> {
        Self::start_with(admin_url, redis_url, services, |_| {}).await
    }

    /// Like [`BenchSuite::start`], with `adjust` changing the settings last
    /// (pool sizes, timers) before the services start.
    pub async fn start_with(
        admin_url: &str,
        redis_url: &str,
        services: &[ServiceKind],
        adjust: impl FnOnce(&mut Settings),
    ) -> anyhow::Result<Self> {
        let admin = Database::connect(admin_url)
            .await
            .with_context(|| "connecting to PostgreSQL (is it running?)")?;
        let database = format!("cairn_bench_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{database}\""))
            .await?;
        // "postgres://user@host/db?options": the new database replaces "db".
        let (address, options) = admin_url.split_once('?').unwrap_or((admin_url, ""));
        let base = address
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(address);
        let options = if options.is_empty() {
            String::new()
        } else {
            format!("?{options}")
        };
        let mut settings = Settings::defaults();
        for service in ServiceKind::ALL {
            settings.set_port(service, 0);
        }
        settings.database_url = Some(SecretString::from(format!("{base}/{database}{options}")));
        settings.database_max_connections = 16;
        settings.redis_url = Some(SecretString::from(redis_url.to_string()));
        settings.redis_prefix = format!("cairn-bench:{}:", uuid::Uuid::new_v4().simple());
        settings.auth_disabled = true;
        // The load generator is one client standing for many: the per-client
        // limit of open calls would refuse its deliberate overload.
        settings.client_max_in_flight = 1_000_000;
        // Nor should its calls wait for one client's share of the replica.
        settings.client_share = Some(0);
        settings.metrics_port = 0;
        adjust(&mut settings);
        let suite = Suite::start(settings, services, CancellationToken::new())
            .await
            .map_err(|error| anyhow::anyhow!("the suite did not start: {error}"))?;
        Ok(Self {
            suite,
            admin,
            database,
        })
    }

    /// The URL of the suite's own database, for seeding it directly.
    pub fn database_url(&self) -> String {
        use secrecy::ExposeSecret;
        self.suite
            .shared
            .settings
            .database_url
            .as_ref()
            .map(|url| url.expose_secret().to_string())
            .unwrap_or_default()
    }

    /// The address of `service`.
    pub fn address(&self, service: ServiceKind) -> String {
        format!("http://{}", self.suite.addresses[&service])
    }

    /// Stops the suite and drops its database and Redis keys.
    pub async fn stop(self, redis_url: &str) -> anyhow::Result<()> {
        let prefix = self.suite.shared.settings.redis_prefix.clone();
        self.suite
            .stop()
            .await
            .map_err(|error| anyhow::anyhow!("the suite did not stop: {error}"))?;
        self.admin
            .execute_unprepared(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.database
            ))
            .await?;
        let client = redis::Client::open(redis_url)?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut connection)
            .await?;
        for chunk in keys.chunks(1000) {
            let _: i64 = redis::cmd("DEL")
                .arg(chunk)
                .query_async(&mut connection)
                .await?;
        }
        Ok(())
    }
}

//! The recommendation service: the next best action for one customer, on
//! one channel, at one moment, within consent and the contact policy,
//! explained, logged, and learnt from outcomes.
//!
//! # Layout
//! - [`domain`]: actions, the contact policy, features, the bandit, decisions.
//! - [`storage`]: tables, migrations, the decision log and the model's
//!   shared statistics.
//! - [`engine`]: Decide, the contact budget and outcomes.
//! - [`counters`]: contact caps, volume limits and cool-downs in Redis.
//! - [`learning`]: folding outcomes into the model and keeping it loaded.
//! - [`evaluation`]: offline estimates (inverse propensity scoring).
//! - [`profiles`]: calls to the profile service.
//! - [`events`]: what the service does on other services' events.
//! - [`grpc`]: the `RecommendationService` handlers and wire conversions.

pub mod counters;
pub mod domain;
pub mod engine;
pub mod evaluation;
pub mod events;
pub mod grpc;
pub mod learning;
pub mod profiles;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

use cairn_contract::recommendation::v1::recommendation_service_server::RecommendationServiceServer;
use cairn_runtime::auth::ServiceCredentials;
use cairn_runtime::bus::{ConsumerOptions, spawn_consumer};
use cairn_runtime::config::UnknownCustomer;
use cairn_runtime::inbox::Inbox;
use cairn_runtime::outbox::Outbox;
use cairn_runtime::server::{ServiceParts, Shared};
use cairn_runtime::{Result, ServiceKind, Settings, peer, storage as db};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::engine::{Engine, EngineSettings};
use crate::storage::RecommendationStore;
use crate::storage::migration::Migrator;
use crate::storage::model::ModelStore;

/// How often a replica closes expired decisions and applies retention.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Applies the recommendation service's migrations to its database.
pub async fn migrate(settings: &Settings) -> Result<()> {
    let db = db::connect_service(settings, ServiceKind::Recommendation).await?;
    db::migrate::<Migrator>(&db, "recommendation").await
}

/// Connects the service to its stores, starts its background work (outbox
/// relay, learning, expiry and retention sweeps, event consumer) and
/// returns what the runtime serves.
pub async fn start(shared: &Shared) -> Result<ServiceParts> {
    let settings = &shared.settings;
    let db = db::connect_service(settings, ServiceKind::Recommendation).await?;
    if settings.migrate_on_start {
        db::migrate::<Migrator>(&db, "recommendation").await?;
    }
    let outbox = Outbox::new("recommendation_outbox");
    outbox.spawn_relay(
        db.clone(),
        shared.bus.clone(),
        settings.outbox_retention(),
        shared.shutdown.clone(),
    );
    let store = RecommendationStore::new(db.clone(), outbox, Inbox::new("recommendation_inbox"));
    store.ensure_defaults().await?;
    let learner = Arc::new(learning::Learner::new(ModelStore::new(db.clone())));
    learner.refresh().await?;
    learner.spawn(shared.shutdown.clone());
    let credentials = ServiceCredentials::from_settings(settings, "recommendation");
    let profiles = profiles::ProfileDirectory::new(peer::channel(
        &settings.peer_address(ServiceKind::Profile),
        credentials,
        settings.peer_deadline(),
    )?);
    let engine = Arc::new(Engine::new(
        store,
        profiles,
        counters::Counters::new(shared.state.clone()),
        learner,
        EngineSettings {
            refuse_unknown_customers: settings.recommendation_unknown_customer
                == UnknownCustomer::NotFound,
            outcome_window: chrono::Duration::seconds(
                settings.recommendation_outcome_window_secs.max(1) as i64,
            ),
            categorical_attributes: settings.recommendation_categorical_attributes.clone(),
        },
    ));
    spawn_consumer(
        shared.bus.clone(),
        ConsumerOptions::new("recommendation"),
        Arc::new(events::EventsHandler::new(engine.clone())),
        shared.shutdown.clone(),
    );
    spawn_sweeps(
        engine.clone(),
        i64::from(settings.recommendation_decision_retention_days),
        shared.shutdown.clone(),
    );
    let api = grpc::RecommendationApi::new(
        engine,
        cairn_runtime::pagination::PageTokens::from_settings(settings)?,
    );
    let server = cairn_runtime::limited!(RecommendationServiceServer::new(api), settings);
    Ok(ServiceParts {
        kind: ServiceKind::Recommendation,
        routes: Routes::new(server),
        grpc_services: vec![grpc::SERVICE_NAME],
        scopes: grpc::scopes(),
        readiness: Arc::new(db::DatabaseReady(db)),
    })
}

/// Closes expired decisions (their open actions count as ignored) and
/// deletes decisions past retention, until `shutdown`.
fn spawn_sweeps(engine: Arc<Engine>, retention_days: i64, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            if let Err(error) = engine.expire_open_decisions().await {
                tracing::warn!(%error, "closing expired decisions failed; retrying");
            }
            let now = chrono::Utc::now();
            if let Err(error) = engine
                .store()
                .sweep(
                    now - chrono::Duration::days(retention_days),
                    now - chrono::Duration::hours(48),
                )
                .await
            {
                tracing::warn!(%error, "deleting old decisions failed; retrying");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
            }
        }
    });
}

//! The journey service: touchpoints from every channel and each customer's
//! place in their journeys.
//!
//! # Layout
//! - [`domain`]: touchpoints and their limits.
//! - [`storage`]: tables, migrations and the transactional store.
//! - [`grpc`]: the `JourneyService` handlers and the wire conversions.
//! - [`profiles`]: calls to the profile service.
//! - [`erasure`]: what the service does on `profile.erased`.

pub mod deadlines;
pub mod domain;
pub mod erasure;
pub mod feedback;
pub mod grpc;
pub mod ingest;
pub mod profiles;
pub mod recommendations;
pub mod storage;

use std::sync::Arc;

use cairn_contract::journey::v1::journey_service_server::JourneyServiceServer;
use cairn_runtime::auth::ServiceCredentials;
use cairn_runtime::bus::{ConsumerOptions, spawn_consumer};
use cairn_runtime::inbox::Inbox;
use cairn_runtime::outbox::Outbox;
use cairn_runtime::server::{ServiceParts, Shared};
use cairn_runtime::{Result, ServiceKind, Settings, peer, storage as db};
use tonic::service::Routes;

use crate::storage::TouchpointStore;
use crate::storage::journeys::JourneyStore;
use crate::storage::migration::Migrator;
use crate::storage::sessions::SessionStore;

/// Applies the journey service's migrations to its database.
pub async fn migrate(settings: &Settings) -> Result<()> {
    db::migrate::<Migrator>(
        &db::connect_service(settings, ServiceKind::Journey).await?,
        "journey",
    )
    .await
}

/// Connects the service, starts its background work (outbox relay, erasure
/// consumer) and returns what the runtime serves.
pub async fn start(shared: &Shared) -> Result<ServiceParts> {
    let settings = &shared.settings;
    let db = db::connect_service(settings, ServiceKind::Journey).await?;
    if settings.migrate_on_start {
        db::migrate::<Migrator>(&db, "journey").await?;
    }
    let outbox = Outbox::new("journey_outbox");
    outbox.spawn_relay(
        db.clone(),
        shared.bus.clone(),
        settings.outbox_retention(),
        shared.shutdown.clone(),
    );
    let journeys = JourneyStore::new(db.clone(), outbox.clone());
    journeys.seed(&domain::definition::built_in()).await?;
    let store = TouchpointStore::new(
        db.clone(),
        outbox.clone(),
        Inbox::new("journey_inbox"),
        journeys.clone(),
    );
    spawn_consumer(
        shared.bus.clone(),
        ConsumerOptions::new("journey"),
        Arc::new(erasure::ErasureHandler::new(store.clone())),
        shared.shutdown.clone(),
    );
    let credentials = ServiceCredentials::from_settings(settings, "journey");
    let profiles = profiles::ProfileDirectory::new(peer::channel(
        &settings.peer_address(ServiceKind::Profile),
        credentials.clone(),
        settings.peer_deadline(),
    )?);
    let recommendations = recommendations::Recommendations::new(peer::channel(
        &settings.peer_address(ServiceKind::Recommendation),
        credentials.clone(),
        settings.peer_deadline(),
    )?);
    deadlines::DeadlineWorker::new(
        journeys.clone(),
        outbox,
        recommendations.clone(),
        std::time::Duration::from_millis(settings.reengagement_retry_ms.max(1)),
    )
    .spawn(
        std::time::Duration::from_millis(settings.deadline_poll_ms.max(10)),
        shared.shutdown.clone(),
    );
    let sessions = SessionStore::new(
        shared.state.clone(),
        std::time::Duration::from_secs(settings.session_idle_seconds.max(1)),
    );
    spawn_consumer(
        shared.bus.clone(),
        ConsumerOptions::new("journey-sessions"),
        Arc::new(erasure::SessionFollower::new(sessions.clone())),
        shared.shutdown.clone(),
    );
    let feedback = feedback::FeedbackDesk::new(peer::channel(
        &settings.peer_address(ServiceKind::Feedback),
        credentials.clone(),
        settings.peer_deadline(),
    )?);
    let api = grpc::JourneyApi::new(
        store,
        sessions,
        grpc::Peers {
            profiles,
            recommendations,
            feedback,
        },
        shared.bus.clone(),
        shared.shutdown.clone(),
        settings.peer_deadline(),
        cairn_runtime::pagination::PageTokens::from_settings(settings)?,
    );
    let server = cairn_runtime::limited!(JourneyServiceServer::new(api), settings);
    Ok(ServiceParts {
        kind: ServiceKind::Journey,
        routes: Routes::new(server),
        grpc_services: vec![grpc::SERVICE_NAME],
        scopes: grpc::scopes(),
        readiness: Arc::new(db::DatabaseReady(db)),
    })
}

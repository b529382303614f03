//! The profile service: one view of each customer across every channel.
//!
//! # Layout
//! - [`domain`]: identifiers (parsed and normalised) and profiles.
//! - [`storage`]: tables, migrations and the transactional store.
//! - [`grpc`]: the `ProfileService` handlers and the wire conversions.
//! - [`peers`]: the other services' parts of a person's data, for the export.
//!
//! [`start`] wires them to the shared runtime.

pub mod domain;
pub mod feedback_facts;
pub mod grpc;
pub mod peers;
pub mod storage;

use std::sync::Arc;

use cairn_contract::profile::v1::profile_service_server::ProfileServiceServer;
use cairn_runtime::outbox::Outbox;
use cairn_runtime::server::{ServiceParts, Shared};
use cairn_runtime::{Result, ServiceKind, Settings, storage as db};
use tonic::service::Routes;

use crate::storage::ProfileStore;
use crate::storage::migration::Migrator;

/// Applies the profile service's migrations to its database.
pub async fn migrate(settings: &Settings) -> Result<()> {
    let db = db::connect_service(settings, ServiceKind::Profile).await?;
    db::migrate::<Migrator>(&db, "profile").await
}

/// The keyed hash of erased identifiers: the configured suppression key,
/// else the token key, else (authentication off: a local trial) a fixed one.
fn suppressor(settings: &Settings) -> storage::Suppressor {
    let key = settings.suppression_key.clone().or_else(|| settings.auth_hs256_key.clone()).unwrap_or_else(|| {
        tracing::warn!("no CAIRN_SUPPRESSION_KEY or CAIRN_AUTH_HS256_KEY: erased identifiers are hashed with a fixed local-trial key");
        secrecy::SecretString::from("cairn-local-trial-suppression-key")
    });
    storage::Suppressor::new(key)
}

/// Connects the service to its stores, starts its background work (the
/// outbox relay), and returns what the runtime serves.
pub async fn start(shared: &Shared) -> Result<ServiceParts> {
    let settings = &shared.settings;
    let db = db::connect_service(settings, ServiceKind::Profile).await?;
    if settings.migrate_on_start {
        db::migrate::<Migrator>(&db, "profile").await?;
    }
    let outbox = Outbox::new("profile_outbox");
    outbox.spawn_relay(
        db.clone(),
        shared.bus.clone(),
        settings.outbox_retention(),
        shared.shutdown.clone(),
    );
    // Erasure reaches the bus: the person's events go once every service handled them.
    cairn_runtime::bus::spawn_consumer(
        shared.bus.clone(),
        cairn_runtime::bus::ConsumerOptions::new(cairn_runtime::bus::FORGET_GROUP),
        Arc::new(
            cairn_runtime::bus::ForgetErased::new(shared.bus.clone())
                .with_outbox(db.clone(), outbox.clone()),
        ),
        shared.shutdown.clone(),
    );
    let store = ProfileStore::new(db.clone(), outbox, suppressor(settings));
    cairn_runtime::bus::spawn_consumer(
        shared.bus.clone(),
        cairn_runtime::bus::ConsumerOptions::new("profile-feedback"),
        Arc::new(feedback_facts::FeedbackFacts::new(store.clone())),
        shared.shutdown.clone(),
    );
    let api = grpc::ProfileApi::new(
        store,
        domain::PhoneRules {
            default_region: settings.default_phone_region.clone(),
            allow_letters: settings.phone_allow_letters,
        },
        domain::MergeRule {
            max_per_kind: settings.merge_max_identifiers_per_kind,
        },
        cairn_runtime::pagination::PageTokens::from_settings(settings)?,
    )
    .with_peers(peers::PersonalDataPeers::from_settings(settings)?);
    let server = cairn_runtime::limited!(ProfileServiceServer::new(api), settings);
    Ok(ServiceParts {
        kind: ServiceKind::Profile,
        routes: Routes::new(server),
        grpc_services: vec![grpc::SERVICE_NAME],
        scopes: grpc::scopes(),
        readiness: Arc::new(db::DatabaseReady(db)),
    })
}

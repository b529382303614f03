//! The profile service's migrations, one file per change, each written
//! against its own table definitions (never the live entities), so that a
//! later entity change cannot rewrite history.

mod m20261122_000001_create_profile_tables;
mod m20261122_000002_add_merges;
mod m20261122_000003_add_suppressions;
mod m20261122_000004_add_consents;
mod m20261122_000005_add_attribute_definitions;
mod m20261122_000006_add_imports_and_exports;
mod m20261122_000007_add_segments;
mod m20261122_000008_add_groups;
mod m20261204_000009_hash_erased_profile_ids;
mod m20261204_000010_add_audit_log;
mod m20261204_000011_index_groups_and_referrals_by_customer;
mod m20261207_000012_index_merges_by_merged_profile;

use sea_orm_migration::prelude::*;

/// The profile service's migrator. Its history lives in its own table,
/// `profile_migrations`, so the four services can share one database.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_profile_tables::Migration),
            Box::new(m20261122_000002_add_merges::Migration),
            Box::new(m20261122_000003_add_suppressions::Migration),
            Box::new(m20261122_000004_add_consents::Migration),
            Box::new(m20261122_000005_add_attribute_definitions::Migration),
            Box::new(m20261122_000006_add_imports_and_exports::Migration),
            Box::new(m20261122_000007_add_segments::Migration),
            Box::new(m20261122_000008_add_groups::Migration),
            Box::new(m20261204_000009_hash_erased_profile_ids::Migration),
            Box::new(m20261204_000010_add_audit_log::Migration),
            Box::new(m20261204_000011_index_groups_and_referrals_by_customer::Migration),
            Box::new(m20261207_000012_index_merges_by_merged_profile::Migration),
            Box::new(cairn_runtime::outbox::KeepPublishedEvents::new(
                "m20261207_000100_keep_published_events",
                "profile_outbox",
            )),
            Box::new(cairn_runtime::outbox::TrackRedeliveries::new(
                "m20261215_000101_track_redeliveries",
                "profile_outbox",
            )),
        ]
    }

    fn migration_table_name() -> DynIden {
        "profile_migrations".into_iden()
    }
}

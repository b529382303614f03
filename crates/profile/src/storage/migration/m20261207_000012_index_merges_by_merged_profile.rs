//! An index for reading the merges a profile took part in as the merged
//! one: ListMerges filters by survivor or merged profile, and the journey
//! service now asks it on every session call (to combine the sessions of
//! profiles merged into the customer's at once). Only the survivor was
//! indexed, so the filter scanned every merge.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000012_index_merges_by_merged_profile"
    }
}

const INDEX: &str = "profile_merges_merged";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table("profile_merges")
                    .col("merged_id")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table("profile_merges").to_owned())
            .await
    }
}

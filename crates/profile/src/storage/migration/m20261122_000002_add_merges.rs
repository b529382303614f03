//! Merges: a merged-away profile stays as a tombstone pointing at its
//! survivor (so its id keeps resolving), and every merge is logged with what
//! the merged profile brought, so that it can be undone.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000002_add_merges"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("profile_profiles")
                    .add_column(ColumnDef::new("merged_into").string_len(36).null())
                    .to_owned(),
            )
            .await?;
        // When each attribute was last observed, so that a merge keeps the
        // most recent observation of each.
        manager
            .alter_table(
                Table::alter()
                    .table("profile_profiles")
                    .add_column(ColumnDef::new("attribute_times").json_binary().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("profile_merges")
                    .col(ColumnDef::new("id").string_len(36).not_null().primary_key())
                    .col(ColumnDef::new("survivor_id").string_len(36).not_null())
                    .col(ColumnDef::new("merged_id").string_len(36).not_null())
                    .col(ColumnDef::new("reason").string_len(256).not_null())
                    .col(
                        ColumnDef::new("created_at")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    // What the merged profile brought and the survivor had
                    // before: identifiers' row ids and both attribute maps.
                    .col(ColumnDef::new("snapshot").json_binary().not_null())
                    .col(
                        ColumnDef::new("undone_at")
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("profile_merges_survivor")
                    .table("profile_merges")
                    .col("survivor_id")
                    .col("created_at")
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("profile_merges").if_exists().to_owned())
            .await?;
        for column in ["merged_into", "attribute_times"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("profile_profiles")
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

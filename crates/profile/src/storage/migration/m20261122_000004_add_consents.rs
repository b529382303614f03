//! Consent answers (append-only history; the newest per purpose and channel
//! is in force) and contact preferences.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000004_add_consents"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("profile_consents")
                    .col(
                        ColumnDef::new("id")
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new("profile_id").string_len(36).not_null())
                    .col(ColumnDef::new("purpose").string_len(64).not_null())
                    .col(ColumnDef::new("channel").integer().not_null())
                    .col(ColumnDef::new("granted").boolean().not_null())
                    .col(ColumnDef::new("source").string_len(128).not_null())
                    .col(
                        ColumnDef::new("recorded_at")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new("expires_at")
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    // Set on the answer a merge wrote (the most restrictive of
                    // both profiles'), so that an unmerge can remove it.
                    .col(ColumnDef::new("merge_id").string_len(36).null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("profile_consents_current")
                    .table("profile_consents")
                    .col("profile_id")
                    .col("purpose")
                    .col("channel")
                    .col("recorded_at")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("profile_preferences")
                    .col(
                        ColumnDef::new("profile_id")
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new("language").string_len(35).null())
                    .col(ColumnDef::new("preferred_channel").integer().null())
                    .col(ColumnDef::new("time_zone").string_len(64).null())
                    .col(ColumnDef::new("quiet_start").string_len(5).null())
                    .col(ColumnDef::new("quiet_end").string_len(5).null())
                    .col(
                        ColumnDef::new("updated_at")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["profile_preferences", "profile_consents"] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

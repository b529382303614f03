//! Groups (households, families, companies) with member roles, and referrals.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000008_add_groups"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("profile_groups")
                    .col(ColumnDef::new("id").string_len(36).not_null().primary_key())
                    .col(ColumnDef::new("group_type").string_len(16).not_null())
                    .col(ColumnDef::new("display_name").string_len(256).not_null())
                    .col(
                        ColumnDef::new("created_at")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("profile_group_members")
                    .col(ColumnDef::new("group_id").string_len(36).not_null())
                    .col(ColumnDef::new("profile_id").string_len(36).not_null())
                    .col(ColumnDef::new("role").string_len(16).not_null())
                    .col(
                        ColumnDef::new("joined_at")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(Index::create().col("group_id").col("profile_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("profile_referrals")
                    .col(ColumnDef::new("id").string_len(36).not_null().primary_key())
                    .col(ColumnDef::new("referrer_id").string_len(36).not_null())
                    .col(ColumnDef::new("referred_id").string_len(36).not_null())
                    .col(
                        ColumnDef::new("referred_at")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new("outcome").string_len(16).not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "profile_referrals",
            "profile_group_members",
            "profile_groups",
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

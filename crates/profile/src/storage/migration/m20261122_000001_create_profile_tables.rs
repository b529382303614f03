//! Profiles, their identifiers, idempotency keys, erasure requests, and the
//! service's outbox and inbox.

use cairn_runtime::inbox::Inbox;
use cairn_runtime::outbox::Outbox;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000001_create_profile_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("profile_profiles")
                    .col(ColumnDef::new("id").string_len(36).not_null().primary_key())
                    .col(ColumnDef::new("state").string_len(16).not_null())
                    .col(ColumnDef::new("attributes").json_binary().not_null())
                    .col(
                        ColumnDef::new("created_at")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new("updated_at")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("profile_profiles_created")
                    .table("profile_profiles")
                    .col("created_at")
                    .col("id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("profile_identifiers")
                    .col(
                        ColumnDef::new("id")
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new("profile_id").string_len(36).not_null())
                    .col(ColumnDef::new("kind").string_len(80).not_null())
                    .col(ColumnDef::new("value").string_len(512).not_null())
                    .col(ColumnDef::new("shared").boolean().not_null().default(false))
                    .col(
                        ColumnDef::new("valid_from")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new("valid_until")
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from("profile_identifiers", "profile_id")
                            .to("profile_profiles", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // An identifier belongs to at most one profile at a time; released
        // identifiers (valid_until set) stay as history.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX profile_identifiers_current ON profile_identifiers (kind, value) WHERE valid_until IS NULL",
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("profile_identifiers_profile")
                    .table("profile_identifiers")
                    .col("profile_id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("profile_requests")
                    .col(
                        ColumnDef::new("request_id")
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new("profile_id").string_len(36).not_null())
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
                    .table("profile_erasures")
                    .col(ColumnDef::new("id").string_len(36).not_null().primary_key())
                    .col(ColumnDef::new("profile_id").string_len(36).not_null())
                    .col(
                        ColumnDef::new("received_at")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new("completed_at")
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(Outbox::create_table("profile_outbox"))
            .await?;
        manager
            .create_table(Inbox::create_table("profile_inbox"))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "profile_inbox",
            "profile_outbox",
            "profile_erasures",
            "profile_requests",
            "profile_identifiers",
            "profile_profiles",
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

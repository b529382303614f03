//! Indexes for reading a customer's groups and referrals by the customer:
//! Decide and the segment rules read a customer's groups on every call, and
//! export and erasure find a person's referrals. Without them each such read
//! scanned every membership (measured: Decide timing out at 1,000,000
//! profiles in `make bench`).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000011_index_groups_and_referrals_by_customer"
    }
}

/// (index name, table, column)
const INDEXES: [(&str, &str, &str); 3] = [
    (
        "profile_group_members_profile",
        "profile_group_members",
        "profile_id",
    ),
    (
        "profile_referrals_referrer",
        "profile_referrals",
        "referrer_id",
    ),
    (
        "profile_referrals_referred",
        "profile_referrals",
        "referred_id",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, column) in INDEXES {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(table)
                        .col(column)
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, _) in INDEXES {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

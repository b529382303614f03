//! The catalogue, the contact policy, policies, the decision log with
//! outcomes, the learned model's statistics, what events told the service
//! (open complaints, journey stages), idempotency keys, and the service's
//! outbox and inbox.

use cairn_runtime::inbox::Inbox;
use cairn_runtime::outbox::Outbox;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000001_create_recommendation_tables"
    }
}

fn text(name: &'static str, length: u32) -> ColumnDef {
    ColumnDef::new(name)
        .string_len(length)
        .not_null()
        .to_owned()
}

fn time(name: &'static str) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn json(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).json_binary().not_null().to_owned()
}

const TABLES: &[&str] = &[
    "recommendation_actions",
    "recommendation_contact_policy",
    "recommendation_policies",
    "recommendation_decisions",
    "recommendation_decision_actions",
    "recommendation_outcomes",
    "recommendation_learning_events",
    "recommendation_model_statistics",
    "recommendation_model",
    "recommendation_versions",
    "recommendation_complaints",
    "recommendation_journey_stages",
    "recommendation_idempotency",
    "recommendation_outbox",
    "recommendation_inbox",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The catalogue: the action as a JSON document, with the columns
        // queries filter and order by.
        manager
            .create_table(
                Table::create()
                    .table("recommendation_actions")
                    .col(text("action_id", 64).primary_key())
                    .col(text("kind", 32))
                    .col(text("state", 16))
                    .col(json("channels"))
                    .col(json("body"))
                    .col(time("create_time"))
                    .col(ColumnDef::new("version").big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("recommendation_actions_order")
                    .table("recommendation_actions")
                    .col("create_time")
                    .col("action_id")
                    .to_owned(),
            )
            .await?;
        // One contact policy per installation, created with the contract's
        // initial values by the service on first start.
        manager
            .create_table(
                Table::create()
                    .table("recommendation_contact_policy")
                    .col(ColumnDef::new("id").integer().not_null().primary_key())
                    .col(json("body"))
                    .col(ColumnDef::new("version").big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("recommendation_policies")
                    .col(text("policy_id", 64).primary_key())
                    .col(text("display_name", 200))
                    .col(ColumnDef::new("description").text().not_null())
                    .col(json("scorer"))
                    .col(text("state", 16))
                    .col(time("create_time"))
                    .col(ColumnDef::new("promote_time").timestamp_with_time_zone())
                    .col(ColumnDef::new("retire_time").timestamp_with_time_zone())
                    .to_owned(),
            )
            .await?;
        // The decision log. `customer_id` follows merges (the profile or its
        // survivor); `profile_id` is who the decision was made for.
        manager
            .create_table(
                Table::create()
                    .table("recommendation_decisions")
                    .col(text("decision_id", 36).primary_key())
                    .col(ColumnDef::new("request_id").string_len(128))
                    .col(text("profile_id", 36))
                    .col(text("customer_id", 36))
                    .col(ColumnDef::new("channel").integer().not_null())
                    .col(text("policy_id", 64))
                    .col(ColumnDef::new("no_action_reason").integer().not_null())
                    .col(json("context"))
                    .col(json("features"))
                    .col(json("candidates"))
                    .col(json("shadow_choices"))
                    .col(time("decide_time"))
                    .col(time("expire_time"))
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            (
                "recommendation_decisions_customer",
                &["customer_id", "decide_time"][..],
            ),
            ("recommendation_decisions_time", &["decide_time"][..]),
        ] {
            let mut index = Index::create();
            index.name(name).table("recommendation_decisions");
            for column in columns {
                index.col(*column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        // The chosen actions of each decision, with the latest outcome: what
        // RecordOutcome checks, ListDecisions filters on, the scorer status
        // counts and the expiry sweep closes.
        manager
            .create_table(
                Table::create()
                    .table("recommendation_decision_actions")
                    .col(text("decision_id", 36))
                    .col(text("action_id", 64))
                    .col(ColumnDef::new("rank").integer().not_null())
                    .col(text("customer_id", 36))
                    .col(text("policy_id", 64))
                    .col(ColumnDef::new("latest_outcome").integer().not_null())
                    .col(ColumnDef::new("final").boolean().not_null())
                    .col(ColumnDef::new("propensity").double().not_null())
                    .col(json("chosen"))
                    .col(time("decide_time"))
                    .col(time("expire_time"))
                    .primary_key(Index::create().col("decision_id").col("action_id"))
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            (
                "recommendation_decision_actions_open",
                &["final", "expire_time"][..],
            ),
            (
                "recommendation_decision_actions_action",
                &["action_id", "decide_time"][..],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table("recommendation_decision_actions");
            for column in columns {
                index.col(*column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        // Outcomes; one per decision, action and type, so a repeat is
        // counted once.
        manager
            .create_table(
                Table::create()
                    .table("recommendation_outcomes")
                    .col(
                        ColumnDef::new("id")
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(text("decision_id", 36))
                    .col(text("action_id", 64))
                    .col(ColumnDef::new("outcome").integer().not_null())
                    .col(ColumnDef::new("channel").integer().not_null())
                    .col(ColumnDef::new("source").integer().not_null())
                    .col(time("occur_time"))
                    .col(time("record_time"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("recommendation_outcomes_once")
                    .table("recommendation_outcomes")
                    .col("decision_id")
                    .col("action_id")
                    .col("outcome")
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Final outcomes waiting to be folded into the model. No customer
        // or decision id: what the model learns from holds no personal data.
        manager
            .create_table(
                Table::create()
                    .table("recommendation_learning_events")
                    .col(
                        ColumnDef::new("id")
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(text("action_id", 64))
                    .col(text("group_key", 200))
                    .col(json("features"))
                    .col(ColumnDef::new("reward").double().not_null())
                    .to_owned(),
            )
            .await?;
        // The model's sufficient statistics per level (global, group,
        // action), and the model's version and feature names in one row
        // that folds lock, so folds apply one after the other.
        manager
            .create_table(
                Table::create()
                    .table("recommendation_model_statistics")
                    .col(text("model_key", 200).primary_key())
                    .col(text("group_key", 200))
                    .col(ColumnDef::new("version").big_integer().not_null())
                    .col(ColumnDef::new("dimension").integer().not_null())
                    .col(ColumnDef::new("gram").blob().not_null())
                    .col(ColumnDef::new("response").blob().not_null())
                    .col(ColumnDef::new("outcomes").big_integer().not_null())
                    .col(ColumnDef::new("accepted").big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("recommendation_model")
                    .col(ColumnDef::new("id").integer().not_null().primary_key())
                    .col(ColumnDef::new("version").big_integer().not_null())
                    .col(json("features"))
                    .col(ColumnDef::new("outcomes_learned").big_integer().not_null())
                    .col(ColumnDef::new("update_time").timestamp_with_time_zone())
                    .to_owned(),
            )
            .await?;
        // Versions of what replicas cache (catalogue, contact policy,
        // policies): a Decide reads them in one query and reloads what changed.
        manager
            .create_table(
                Table::create()
                    .table("recommendation_versions")
                    .col(text("name", 32).primary_key())
                    .col(ColumnDef::new("version").big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("recommendation_complaints")
                    .col(text("profile_id", 36))
                    .col(text("ticket_id", 128))
                    .col(ColumnDef::new("open").boolean().not_null())
                    .col(ColumnDef::new("close_time").timestamp_with_time_zone())
                    .primary_key(Index::create().col("profile_id").col("ticket_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("recommendation_journey_stages")
                    .col(text("profile_id", 36))
                    .col(text("journey_id", 64))
                    .col(text("stage", 64))
                    .col(time("update_time"))
                    .primary_key(Index::create().col("profile_id").col("journey_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("recommendation_idempotency")
                    .col(text("request_key", 200).primary_key())
                    .col(text("fingerprint", 64))
                    .col(ColumnDef::new("response").blob().not_null())
                    .col(text("profile_id", 36))
                    .col(time("create_time"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(Outbox::create_table("recommendation_outbox"))
            .await?;
        manager
            .create_table(Inbox::create_table("recommendation_inbox"))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in TABLES.iter().rev() {
            manager
                .drop_table(Table::drop().table(*table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

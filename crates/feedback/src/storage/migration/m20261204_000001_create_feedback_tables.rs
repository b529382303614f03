//! Surveys, invitations and the once-per-period rule, answers, comments and
//! their themes, tickets with contacts, history and skills, follow-up tasks,
//! churn records, feature requests with votes, the journey stages heard on
//! the bus, and the service's outbox and inbox.

use cairn_runtime::inbox::Inbox;
use cairn_runtime::outbox::Outbox;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000001_create_feedback_tables"
    }
}

fn id(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).string_len(36).not_null().to_owned()
}

fn text(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).text().not_null().to_owned()
}

fn time(name: &'static str) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn optional_time(name: &'static str) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

fn optional_key(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).string_len(200).null().to_owned()
}

fn index(
    name: &str,
    table: &'static str,
    columns: &[&'static str],
    unique: bool,
) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table);
    for column in columns {
        index.col(*column);
    }
    if unique {
        index.unique();
    }
    index.to_owned()
}

const TABLES: &[&str] = &[
    "feedback_surveys",
    "feedback_contact_slots",
    "feedback_invitations",
    "feedback_responses",
    "feedback_comments",
    "feedback_comment_themes",
    "feedback_tickets",
    "feedback_ticket_contacts",
    "feedback_ticket_history",
    "feedback_ticket_skills",
    "feedback_follow_ups",
    "feedback_churn",
    "feedback_feature_requests",
    "feedback_feature_votes",
    "feedback_journey_stages",
    "feedback_outbox",
    "feedback_inbox",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("feedback_surveys")
                    .col(id("id").primary_key())
                    .col(text("display_name"))
                    // Questions, triggers and texts as one JSON document: they
                    // are read and written with the survey, never queried apart.
                    .col(ColumnDef::new("definition").json_binary().not_null())
                    .col(ColumnDef::new("channel").integer().not_null())
                    .col(text("consent_purpose"))
                    .col(
                        ColumnDef::new("minimum_period_seconds")
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new("global_period").boolean().not_null())
                    .col(ColumnDef::new("closed").boolean().not_null())
                    .col(optional_key("request_id").unique_key())
                    .col(time("create_time"))
                    .col(time("update_time"))
                    .to_owned(),
            )
            .await?;
        // One row per customer and scope (a survey's id, or "*" for every
        // survey): the once-per-period rule is a conditional upsert on it, so
        // it holds across replicas and concurrent triggers.
        manager
            .create_table(
                Table::create()
                    .table("feedback_contact_slots")
                    .col(id("profile_id"))
                    .col(ColumnDef::new("scope").string_len(64).not_null())
                    .col(time("last_invited_at"))
                    .col(id("invitation_id"))
                    .primary_key(Index::create().col("profile_id").col("scope"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("feedback_invitations")
                    .col(id("id").primary_key())
                    .col(id("survey_id"))
                    .col(id("profile_id"))
                    .col(text("touchpoint_id"))
                    // The idempotency key: the caller's request id, or
                    // "touchpoint:<id>" for a trigger from the bus.
                    .col(ColumnDef::new("request_key").string_len(200).not_null())
                    .col(ColumnDef::new("invited").boolean().not_null())
                    .col(ColumnDef::new("refusal").integer().not_null())
                    .col(text("refusal_detail"))
                    .col(ColumnDef::new("language").string_len(35).not_null())
                    .col(time("create_time"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "feedback_invitations_request",
                "feedback_invitations",
                &["survey_id", "request_key"],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "feedback_invitations_profile",
                "feedback_invitations",
                &["profile_id"],
                false,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("feedback_responses")
                    .col(id("id").primary_key())
                    .col(id("survey_id"))
                    .col(id("profile_id"))
                    .col(ColumnDef::new("channel").integer().not_null())
                    // An invitation is answered once.
                    .col(
                        ColumnDef::new("invitation_id")
                            .string_len(36)
                            .null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new("answers").json_binary().not_null())
                    .col(ColumnDef::new("nps").integer().null())
                    .col(ColumnDef::new("csat").integer().null())
                    .col(ColumnDef::new("effort").integer().null())
                    .col(ColumnDef::new("segments").json_binary().not_null())
                    .col(ColumnDef::new("journey_stage").string_len(64).not_null())
                    .col(
                        ColumnDef::new("request_id")
                            .string_len(200)
                            .not_null()
                            .unique_key(),
                    )
                    .col(time("submit_time"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "feedback_responses_time",
                "feedback_responses",
                &["submit_time"],
                false,
            ))
            .await?;
        manager
            .create_index(index(
                "feedback_responses_profile",
                "feedback_responses",
                &["profile_id"],
                false,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("feedback_comments")
                    .col(id("id").primary_key())
                    .col(ColumnDef::new("profile_id").string_len(36).null())
                    .col(ColumnDef::new("source").integer().not_null())
                    .col(ColumnDef::new("channel").integer().not_null())
                    .col(text("text"))
                    .col(ColumnDef::new("rating").integer().not_null())
                    .col(ColumnDef::new("language").string_len(35).not_null())
                    .col(ColumnDef::new("themes").json_binary().not_null())
                    .col(ColumnDef::new("response_id").string_len(36).null())
                    .col(optional_key("request_id").unique_key())
                    .col(time("write_time"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "feedback_comments_time",
                "feedback_comments",
                &["write_time"],
                false,
            ))
            .await?;
        manager
            .create_index(index(
                "feedback_comments_profile",
                "feedback_comments",
                &["profile_id"],
                false,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("feedback_comment_themes")
                    .col(id("comment_id"))
                    .col(ColumnDef::new("theme").string_len(128).not_null())
                    .col(ColumnDef::new("language").string_len(35).not_null())
                    .col(time("write_time"))
                    .primary_key(Index::create().col("comment_id").col("theme"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "feedback_comment_themes_time",
                "feedback_comment_themes",
                &["theme", "write_time"],
                false,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("feedback_tickets")
                    .col(id("id").primary_key())
                    .col(optional_key("external_id").unique_key())
                    .col(optional_key("request_id").unique_key())
                    .col(id("profile_id"))
                    .col(ColumnDef::new("channel").integer().not_null())
                    .col(ColumnDef::new("category").string_len(128).not_null())
                    .col(ColumnDef::new("priority").integer().not_null())
                    .col(ColumnDef::new("severity").string_len(64).not_null())
                    .col(text("description"))
                    .col(ColumnDef::new("complaint").boolean().not_null())
                    .col(ColumnDef::new("status").integer().not_null())
                    .col(ColumnDef::new("language").string_len(35).not_null())
                    .col(optional_time("due_time"))
                    .col(ColumnDef::new("assignee").string_len(128).not_null())
                    .col(ColumnDef::new("segments").json_binary().not_null())
                    .col(ColumnDef::new("inbound_contacts").integer().not_null())
                    .col(ColumnDef::new("reopened").boolean().not_null())
                    .col(ColumnDef::new("decision_id").string_len(128).not_null())
                    .col(ColumnDef::new("action_id").string_len(128).not_null())
                    .col(optional_time("first_response_time"))
                    .col(optional_time("resolve_time"))
                    .col(time("create_time"))
                    .col(time("update_time"))
                    .to_owned(),
            )
            .await?;
        // The shared queue: waiting tickets by priority and due time.
        manager
            .create_index(index(
                "feedback_tickets_queue",
                "feedback_tickets",
                &["status", "priority", "due_time", "create_time"],
                false,
            ))
            .await?;
        manager
            .create_index(index(
                "feedback_tickets_profile",
                "feedback_tickets",
                &["profile_id"],
                false,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("feedback_ticket_contacts")
                    .col(
                        ColumnDef::new("id")
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(id("ticket_id"))
                    .col(ColumnDef::new("channel").integer().not_null())
                    .col(ColumnDef::new("handled_by").string_len(128).not_null())
                    .col(time("contact_time"))
                    .col(text("note"))
                    .col(ColumnDef::new("outbound").boolean().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "feedback_ticket_contacts_ticket",
                "feedback_ticket_contacts",
                &["ticket_id"],
                false,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("feedback_ticket_history")
                    .col(
                        ColumnDef::new("id")
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(id("ticket_id"))
                    .col(ColumnDef::new("status").integer().not_null())
                    .col(time("change_time"))
                    .col(text("reason"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "feedback_ticket_history_ticket",
                "feedback_ticket_history",
                &["ticket_id"],
                false,
            ))
            .await?;
        // Required skills one per row, so that routing is one SQL condition
        // ("no required skill outside the agent's") under SKIP LOCKED.
        manager
            .create_table(
                Table::create()
                    .table("feedback_ticket_skills")
                    .col(id("ticket_id"))
                    .col(ColumnDef::new("skill").string_len(64).not_null())
                    .primary_key(Index::create().col("ticket_id").col("skill"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("feedback_follow_ups")
                    .col(id("id").primary_key())
                    .col(id("profile_id"))
                    .col(id("response_id").unique_key())
                    .col(text("reason"))
                    .col(time("due_time"))
                    .col(ColumnDef::new("assignee").string_len(128).not_null())
                    .col(text("answer"))
                    .col(ColumnDef::new("status").string_len(16).not_null())
                    .col(time("create_time"))
                    .col(time("update_time"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "feedback_follow_ups_due",
                "feedback_follow_ups",
                &["status", "due_time"],
                false,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("feedback_churn")
                    .col(id("id").primary_key())
                    .col(id("profile_id"))
                    .col(text("reason"))
                    .col(ColumnDef::new("source").string_len(16).not_null())
                    .col(optional_key("request_id").unique_key())
                    .col(time("churn_time"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "feedback_churn_time",
                "feedback_churn",
                &["churn_time"],
                false,
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("feedback_feature_requests")
                    .col(id("id").primary_key())
                    .col(text("text"))
                    .col(ColumnDef::new("language").string_len(35).not_null())
                    .col(ColumnDef::new("signature").json_binary().not_null())
                    .col(ColumnDef::new("votes").big_integer().not_null())
                    .col(time("create_time"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("feedback_feature_votes")
                    .col(id("feature_request_id"))
                    // The voter's profile id, or a fresh id for an anonymous vote.
                    .col(id("voter"))
                    .col(time("vote_time"))
                    .primary_key(Index::create().col("feature_request_id").col("voter"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("feedback_journey_stages")
                    .col(id("profile_id").primary_key())
                    .col(ColumnDef::new("stage").string_len(64).not_null())
                    .col(time("update_time"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(Outbox::create_table("feedback_outbox"))
            .await?;
        manager
            .create_table(Inbox::create_table("feedback_inbox"))
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

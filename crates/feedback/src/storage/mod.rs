//! The feedback service's storage: every write in one transaction with its
//! change events (outbox), every consumed event once (inbox).

pub mod entity;
pub mod migration;

mod analytics;
mod comments;
mod people;
mod surveys;
mod tickets;

pub use analytics::{ResolvedTicket, ThemeMention};
pub use comments::{CommentFilter, NewComment};
pub use people::PersonalFeedback;
pub use surveys::{BudgetAnswer, InvitationRefusals, NewInvitation, NewResponse, ResponseFilter};
pub use tickets::{NewTicket, QueueFilter, TicketChanges, TicketFilter, TicketView};

use cairn_runtime::inbox::Inbox;
use cairn_runtime::outbox::Outbox;
use cairn_runtime::{Error, Result};
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr, SqlErr};

/// The name this service publishes under.
const SOURCE: &str = "feedback";

/// The feedback service's tables.
#[derive(Clone)]
pub struct FeedbackStore {
    db: DatabaseConnection,
    outbox: Outbox,
    inbox: Inbox,
}

impl FeedbackStore {
    /// A store on `db`, publishing through `outbox`, consuming through `inbox`.
    pub fn new(db: DatabaseConnection, outbox: Outbox, inbox: Inbox) -> Self {
        Self { db, outbox, inbox }
    }
}

/// True when `error` is a unique-constraint violation (a lost race).
fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// A page position "time|id" of newest-first listings.
fn position(time: DateTime<Utc>, id: &str) -> String {
    format!("{}|{id}", time.to_rfc3339())
}

/// Reads a position written by [`position`].
fn parse_position(after: &str) -> Result<(DateTime<Utc>, String)> {
    let invalid = || Error::invalid("page_token", "not a token of this listing");
    let (time, id) = after.split_once('|').ok_or_else(invalid)?;
    let time = DateTime::parse_from_rfc3339(time)
        .map_err(|_| invalid())?
        .with_timezone(&Utc);
    Ok((time, id.to_string()))
}

/// A JSON list of strings.
fn string_list(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    //! The store on SQLite, the local-trial database: the migrations apply,
    //! the once-per-period upsert and the queue's claim work there too
    //! (PostgreSQL is covered by the integration tests).
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::domain::survey::{Definition, Survey};
    use crate::storage::entity::ticket;
    use cairn_contract::events::v1::ChangeEvent;
    use uuid::Uuid;

    async fn sqlite_store() -> (FeedbackStore, std::path::PathBuf) {
        let folder = std::env::temp_dir().join(format!("cairn-feedback-{}", Uuid::now_v7()));
        let url = secrecy::SecretString::from(format!(
            "sqlite://{}/feedback.db?mode=rwc",
            folder.display()
        ));
        let db = cairn_runtime::storage::connect(&url, 1).await.unwrap();
        cairn_runtime::storage::migrate::<migration::Migrator>(&db, "feedback")
            .await
            .unwrap();
        (
            FeedbackStore::new(
                db,
                Outbox::new("feedback_outbox"),
                Inbox::new("feedback_inbox"),
            ),
            folder,
        )
    }

    fn survey() -> Survey {
        Survey {
            id: Uuid::now_v7(),
            display_name: "s".into(),
            definition: Definition {
                questions: vec![],
                triggers: vec![],
                follow_up_due_seconds: 3600,
            },
            channel: 8,
            consent_purpose: "service".into(),
            minimum_period_seconds: 3600,
            global_period: false,
            closed: false,
            create_time: Utc::now(),
        }
    }

    fn refusals() -> InvitationRefusals {
        InvitationRefusals {
            recently: (2, "recently".into()),
            budget: 4,
            quiet_hours: 5,
        }
    }

    fn invitation(profile_id: Uuid, key: &str) -> NewInvitation {
        NewInvitation {
            id: Uuid::now_v7(),
            profile_id,
            touchpoint_id: String::new(),
            request_key: key.into(),
            language: "en".into(),
        }
    }

    #[tokio::test]
    async fn the_period_rule_and_the_queue_work_on_sqlite() {
        let (store, folder) = sqlite_store().await;
        let survey = store.create_survey(survey(), None).await.unwrap();
        let anna = Uuid::now_v7();
        let granted = || async {
            Ok(BudgetAnswer {
                granted: true,
                ..BudgetAnswer::default()
            })
        };
        let first = store
            .invite(
                &survey,
                &invitation(anna, "a"),
                refusals(),
                ChangeEvent::default(),
                granted(),
            )
            .await
            .unwrap();
        assert!(first.0.invited);
        let second = store
            .invite(
                &survey,
                &invitation(anna, "b"),
                refusals(),
                ChangeEvent::default(),
                granted(),
            )
            .await
            .unwrap();
        assert!(!second.0.invited);
        assert_eq!(second.0.refusal, 2);
        // A refused budget gives the slot back.
        let bo = Uuid::now_v7();
        let refused = store
            .invite(
                &survey,
                &invitation(bo, "c"),
                refusals(),
                ChangeEvent::default(),
                async {
                    Ok(BudgetAnswer {
                        granted: false,
                        detail: "capped".into(),
                        quiet_hours_until: None,
                    })
                },
            )
            .await
            .unwrap();
        assert_eq!(refused.0.refusal, 4);
        // The contact policy's quiet hours are recorded as such, with their end.
        let until = Utc::now() + chrono::Duration::hours(3);
        let quiet = store
            .invite(
                &survey,
                &invitation(Uuid::now_v7(), "q"),
                refusals(),
                ChangeEvent::default(),
                async move {
                    Ok(BudgetAnswer {
                        granted: false,
                        detail: "quiet hours".into(),
                        quiet_hours_until: Some(until),
                    })
                },
            )
            .await
            .unwrap();
        assert_eq!((quiet.0.refusal, quiet.1), (5, Some(until)));
        let later = store
            .invite(
                &survey,
                &invitation(bo, "d"),
                refusals(),
                ChangeEvent::default(),
                granted(),
            )
            .await
            .unwrap();
        assert!(later.0.invited);

        let now = Utc::now();
        for index in 0..2 {
            store
                .create_ticket(NewTicket {
                    row: ticket::Model {
                        id: Uuid::now_v7().to_string(),
                        external_id: None,
                        request_id: None,
                        profile_id: anna.to_string(),
                        channel: 6,
                        category: "billing".into(),
                        priority: 2 + index,
                        severity: String::new(),
                        description: String::new(),
                        complaint: false,
                        status: 1,
                        language: "sv".into(),
                        due_time: None,
                        assignee: String::new(),
                        segments: serde_json::json!([]),
                        inbound_contacts: 1,
                        reopened: false,
                        decision_id: String::new(),
                        action_id: String::new(),
                        first_response_time: None,
                        resolve_time: None,
                        create_time: now,
                        update_time: now,
                    },
                    skills: if index == 0 {
                        vec!["fiber".into()]
                    } else {
                        vec![]
                    },
                })
                .await
                .unwrap();
        }
        let queue = QueueFilter {
            channels: vec![6],
            languages: vec!["sv".into()],
            skills: vec![],
        };
        let high = store.claim_next("a1", &queue).await.unwrap().unwrap();
        assert_eq!(high.ticket.priority, 3);
        assert!(
            store.claim_next("a2", &queue).await.unwrap().is_none(),
            "the other needs fiber"
        );
        let skilled = QueueFilter {
            skills: vec!["fiber".into()],
            ..queue
        };
        assert!(store.claim_next("a2", &skilled).await.unwrap().is_some());
        assert!(store.erase("erasure-1", &[anna.to_string()]).await.unwrap() > 0);
        let _ = std::fs::remove_dir_all(folder);
    }
}

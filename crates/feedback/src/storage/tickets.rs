//! Tickets: TMF621 lifecycle with history, contacts on any channel, and the
//! shared queue that agents claim from atomically.

use cairn_contract::events::v1::TicketChanged;
use cairn_contract::events::v1::change_event::Payload;
use cairn_runtime::outbox;
use cairn_runtime::storage::BeginWrite;
use cairn_runtime::{Error, Result};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseTransaction,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement, Value,
};
use uuid::Uuid;

use super::entity::{ticket, ticket_contact, ticket_history, ticket_skill};
use super::{FeedbackStore, SOURCE, is_unique_violation, parse_position, position};
use crate::domain::ticket::TicketStatus;

/// A ticket with its contacts, history and required skills.
#[derive(Debug, Clone)]
pub struct TicketView {
    /// The ticket.
    pub ticket: ticket::Model,
    /// Contacts, oldest first.
    pub contacts: Vec<ticket_contact::Model>,
    /// Status changes, oldest first.
    pub history: Vec<ticket_history::Model>,
    /// Required skills.
    pub skills: Vec<String>,
}

/// A ticket to open.
#[derive(Debug, Clone)]
pub struct NewTicket {
    /// The row.
    pub row: ticket::Model,
    /// Required skills.
    pub skills: Vec<String>,
}

/// Changes to a ticket, by field; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TicketChanges {
    /// A new status.
    pub status: Option<TicketStatus>,
    /// A new priority.
    pub priority: Option<i32>,
    /// A new category.
    pub category: Option<String>,
    /// A new severity.
    pub severity: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// A new complaint flag.
    pub complaint: Option<bool>,
    /// A new due time (`Some(None)` clears it).
    pub due_time: Option<Option<DateTime<Utc>>>,
    /// New required skills.
    pub skills: Option<Vec<String>>,
    /// A new language.
    pub language: Option<String>,
}

/// What ListTickets keeps.
#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    /// Only this customer's.
    pub profile_id: Option<String>,
    /// Only these statuses (enum numbers).
    pub statuses: Vec<i32>,
    /// Only this category.
    pub category: Option<String>,
    /// Only this channel.
    pub channel: Option<i32>,
}

/// What an agent can take from the queue.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    /// Channels served; empty means all.
    pub channels: Vec<i32>,
    /// Languages spoken (lower case); empty means all.
    pub languages: Vec<String>,
    /// Skills held.
    pub skills: Vec<String>,
}

fn status_of(row: &ticket::Model) -> Result<TicketStatus> {
    TicketStatus::from_number(row.status)
        .ok_or_else(|| Error::internal(format!("ticket {} has status {}", row.id, row.status)))
}

/// The `feedback.ticket_changed` event of `row` after a change from `previous`.
fn changed_event(
    row: &ticket::Model,
    previous: Option<TicketStatus>,
) -> Result<cairn_contract::events::v1::ChangeEvent> {
    let status = status_of(row)?;
    Ok(outbox::event(
        SOURCE,
        "feedback.ticket_changed",
        &row.profile_id,
        Payload::TicketChanged(TicketChanged {
            ticket_id: row.id.clone(),
            status: status.tmf_name().to_string(),
            open_complaint: row.complaint && status.is_open(),
            category: row.category.clone(),
            decision_id: row.decision_id.clone(),
            action_id: row.action_id.clone(),
            complaint: row.complaint,
            previous_status: previous
                .map(|s| s.tmf_name().to_string())
                .unwrap_or_default(),
            channel: row.channel,
        }),
    ))
}

async fn add_history(
    transaction: &DatabaseTransaction,
    ticket_id: &str,
    status: TicketStatus,
    time: DateTime<Utc>,
    reason: &str,
) -> Result<()> {
    ticket_history::Entity::insert(ticket_history::ActiveModel {
        ticket_id: sea_orm::Set(ticket_id.to_string()),
        status: sea_orm::Set(status as i32),
        change_time: sea_orm::Set(time),
        reason: sea_orm::Set(reason.to_string()),
        ..Default::default()
    })
    .exec_without_returning(transaction)
    .await?;
    Ok(())
}

async fn set_skills(
    transaction: &DatabaseTransaction,
    ticket_id: &str,
    skills: &[String],
) -> Result<()> {
    ticket_skill::Entity::delete_many()
        .filter(ticket_skill::Column::TicketId.eq(ticket_id))
        .exec(transaction)
        .await?;
    let unique: std::collections::BTreeSet<&String> = skills.iter().collect();
    for skill in unique {
        ticket_skill::Entity::insert(ticket_skill::ActiveModel::from(ticket_skill::Model {
            ticket_id: ticket_id.to_string(),
            skill: skill.clone(),
        }))
        .exec_without_returning(transaction)
        .await?;
    }
    Ok(())
}

/// Placeholders of one backend, numbered on PostgreSQL.
struct Params {
    backend: DatabaseBackend,
    values: Vec<Value>,
}

impl Params {
    fn push(&mut self, value: impl Into<Value>) -> String {
        self.values.push(value.into());
        match self.backend {
            DatabaseBackend::Postgres => format!("${}", self.values.len()),
            _ => "?".to_string(),
        }
    }

    fn list(&mut self, values: &[impl Into<Value> + Clone]) -> String {
        values
            .iter()
            .map(|value| self.push(value.clone()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl FeedbackStore {
    /// Opens a ticket with its first contact, history and event. A retry with
    /// the same request id returns the first; a reused external id is ALREADY_EXISTS.
    pub async fn create_ticket(&self, new: NewTicket) -> Result<TicketView> {
        if let Some(key) = &new.row.request_id
            && let Some(row) = ticket::Entity::find()
                .filter(ticket::Column::RequestId.eq(key.clone()))
                .one(&self.db)
                .await?
        {
            return self.ticket_view(row).await;
        }
        let transaction = self.db.begin_write().await?;
        let row = new.row.clone();
        match ticket::Entity::insert(ticket::ActiveModel::from(row.clone()))
            .exec_without_returning(&transaction)
            .await
        {
            Ok(_) => {}
            Err(error) if is_unique_violation(&error) => {
                transaction.rollback().await?;
                if let Some(key) = &row.request_id
                    && let Some(stored) = ticket::Entity::find()
                        .filter(ticket::Column::RequestId.eq(key.clone()))
                        .one(&self.db)
                        .await?
                {
                    return self.ticket_view(stored).await;
                }
                return Err(Error::AlreadyExists(format!(
                    "ticket.external_id: a ticket with external id {:?} exists",
                    row.external_id.unwrap_or_default()
                )));
            }
            Err(error) => return Err(error.into()),
        }
        let status = status_of(&row)?;
        ticket_contact::Entity::insert(ticket_contact::ActiveModel {
            ticket_id: sea_orm::Set(row.id.clone()),
            channel: sea_orm::Set(row.channel),
            handled_by: sea_orm::Set(String::new()),
            contact_time: sea_orm::Set(row.create_time),
            note: sea_orm::Set("opened".into()),
            outbound: sea_orm::Set(false),
            ..Default::default()
        })
        .exec_without_returning(&transaction)
        .await?;
        add_history(&transaction, &row.id, status, row.create_time, "opened").await?;
        set_skills(&transaction, &row.id, &new.skills).await?;
        self.outbox
            .enqueue(&transaction, &changed_event(&row, None)?)
            .await?;
        transaction.commit().await?;
        self.outbox.committed();
        self.ticket_view(row).await
    }

    /// The ticket named `reference`: Cairn's id, or "external:<id>".
    pub async fn find_ticket(&self, reference: &str) -> Result<ticket::Model> {
        find_ticket(&self.db, reference, false).await
    }

    /// A ticket with its contacts, history and skills.
    pub async fn ticket_view(&self, row: ticket::Model) -> Result<TicketView> {
        let contacts = ticket_contact::Entity::find()
            .filter(ticket_contact::Column::TicketId.eq(row.id.clone()))
            .order_by_asc(ticket_contact::Column::ContactTime)
            .order_by_asc(ticket_contact::Column::Id)
            .all(&self.db)
            .await?;
        let history = ticket_history::Entity::find()
            .filter(ticket_history::Column::TicketId.eq(row.id.clone()))
            .order_by_asc(ticket_history::Column::Id)
            .all(&self.db)
            .await?;
        let skills = ticket_skill::Entity::find()
            .filter(ticket_skill::Column::TicketId.eq(row.id.clone()))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|s| s.skill)
            .collect();
        Ok(TicketView {
            ticket: row,
            contacts,
            history,
            skills,
        })
    }

    /// Tickets, newest first.
    pub async fn list_tickets(
        &self,
        filter: &TicketFilter,
        limit: u64,
        after: Option<String>,
    ) -> Result<(Vec<TicketView>, Option<String>)> {
        let mut query = ticket::Entity::find()
            .order_by_desc(ticket::Column::CreateTime)
            .order_by_desc(ticket::Column::Id)
            .limit(limit + 1);
        if let Some(profile_id) = &filter.profile_id {
            query = query.filter(ticket::Column::ProfileId.eq(profile_id.clone()));
        }
        if !filter.statuses.is_empty() {
            query = query.filter(ticket::Column::Status.is_in(filter.statuses.clone()));
        }
        if let Some(category) = &filter.category {
            query = query.filter(ticket::Column::Category.eq(category.clone()));
        }
        if let Some(channel) = filter.channel {
            query = query.filter(ticket::Column::Channel.eq(channel));
        }
        if let Some(after) = after {
            let (time, id) = parse_position(&after)?;
            query = query.filter(
                sea_orm::Condition::any()
                    .add(ticket::Column::CreateTime.lt(time))
                    .add(
                        sea_orm::Condition::all()
                            .add(ticket::Column::CreateTime.eq(time))
                            .add(ticket::Column::Id.lt(id)),
                    ),
            );
        }
        let mut rows = query.all(&self.db).await?;
        let next = if rows.len() as u64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|row| position(row.create_time, &row.id))
        } else {
            None
        };
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            views.push(self.ticket_view(row).await?);
        }
        Ok((views, next))
    }

    /// Applies `changes` to the ticket `reference` under a row lock, with a
    /// history entry for a status change and a `feedback.ticket_changed` event.
    pub async fn update_ticket(
        &self,
        reference: &str,
        changes: TicketChanges,
        reason: &str,
    ) -> Result<TicketView> {
        let transaction = self.db.begin_write().await?;
        let mut row = find_ticket(&transaction, reference, true).await?;
        let previous = status_of(&row)?;
        let now = Utc::now();
        if let Some(next) = changes.status
            && next != previous
        {
            previous.check_transition(next)?;
            row.status = next as i32;
            if next == TicketStatus::Resolved {
                row.resolve_time = Some(now);
            }
            if previous == TicketStatus::Resolved && next.is_open() {
                row.reopened = true;
            }
            if next == TicketStatus::Acknowledged {
                row.assignee.clear();
            }
            add_history(&transaction, &row.id, next, now, reason).await?;
        } else if previous.is_final() {
            return Err(Error::FailedPrecondition(format!(
                "ticket.status: the ticket is {}; it cannot change",
                previous.tmf_name()
            )));
        }
        if let Some(priority) = changes.priority {
            row.priority = priority;
        }
        if let Some(category) = changes.category {
            row.category = category;
        }
        if let Some(severity) = changes.severity {
            row.severity = severity;
        }
        if let Some(description) = changes.description {
            row.description = description;
        }
        if let Some(complaint) = changes.complaint {
            row.complaint = complaint;
        }
        if let Some(due_time) = changes.due_time {
            row.due_time = due_time;
        }
        if let Some(language) = changes.language {
            row.language = language;
        }
        if let Some(skills) = &changes.skills {
            set_skills(&transaction, &row.id, skills).await?;
        }
        row.update_time = now;
        ticket::Entity::update(ticket::ActiveModel::from(row.clone()).reset_all())
            .exec(&transaction)
            .await?;
        self.outbox
            .enqueue(&transaction, &changed_event(&row, Some(previous))?)
            .await?;
        transaction.commit().await?;
        self.outbox.committed();
        self.ticket_view(row).await
    }

    /// Records a contact on a ticket: an inbound one counts against
    /// first-contact resolution, the first outbound one is the first response.
    pub async fn add_contact(
        &self,
        reference: &str,
        contact: ticket_contact::Model,
    ) -> Result<TicketView> {
        let transaction = self.db.begin_write().await?;
        let mut row = find_ticket(&transaction, reference, true).await?;
        let status = status_of(&row)?;
        if status.is_final() {
            return Err(Error::FailedPrecondition(format!(
                "ticket_id: the ticket is {}; it takes no more contacts",
                status.tmf_name()
            )));
        }
        ticket_contact::Entity::insert(ticket_contact::ActiveModel {
            ticket_id: sea_orm::Set(row.id.clone()),
            channel: sea_orm::Set(contact.channel),
            handled_by: sea_orm::Set(contact.handled_by),
            contact_time: sea_orm::Set(contact.contact_time),
            note: sea_orm::Set(contact.note),
            outbound: sea_orm::Set(contact.outbound),
            ..Default::default()
        })
        .exec_without_returning(&transaction)
        .await?;
        if contact.outbound {
            if row
                .first_response_time
                .is_none_or(|first| contact.contact_time < first)
            {
                row.first_response_time = Some(contact.contact_time);
            }
        } else {
            row.inbound_contacts += 1;
        }
        row.update_time = Utc::now();
        ticket::Entity::update(ticket::ActiveModel::from(row.clone()).reset_all())
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        self.ticket_view(row).await
    }

    /// Claims the first waiting ticket `queue` allows (priority, then due
    /// time, then age) for `agent`, atomically: on PostgreSQL the candidate
    /// row is locked with `FOR UPDATE SKIP LOCKED`, so concurrent agents on
    /// any replica take different tickets without waiting on each other; on
    /// SQLite writes are serialised and the one statement is atomic.
    pub async fn claim_next(&self, agent: &str, queue: &QueueFilter) -> Result<Option<TicketView>> {
        let backend = self.db.get_database_backend();
        let now = Utc::now();
        let mut params = Params {
            backend,
            values: Vec::new(),
        };
        let assignee = params.push(agent.to_string());
        let updated = params.push(now);
        let mut conditions = vec![format!(
            "t.status = {} AND t.assignee = ''",
            TicketStatus::Acknowledged as i32
        )];
        if !queue.channels.is_empty() {
            conditions.push(format!("t.channel IN ({})", params.list(&queue.channels)));
        }
        if !queue.languages.is_empty() {
            let mut alternatives = vec!["t.language = ''".to_string()];
            for language in &queue.languages {
                let exact = params.push(language.clone());
                let prefix = params.push(format!("{language}-%"));
                alternatives.push(format!("t.language = {exact} OR t.language LIKE {prefix}"));
            }
            conditions.push(format!("({})", alternatives.join(" OR ")));
        }
        let skills = if queue.skills.is_empty() {
            String::new()
        } else {
            format!(" AND s.skill NOT IN ({})", params.list(&queue.skills))
        };
        conditions.push(format!(
            "NOT EXISTS (SELECT 1 FROM feedback_ticket_skills s WHERE s.ticket_id = t.id{skills})"
        ));
        let lock = if backend == DatabaseBackend::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE feedback_tickets SET status = {in_progress}, assignee = {assignee}, update_time = {updated} \
             WHERE id = (SELECT t.id FROM feedback_tickets t WHERE {conditions} \
             ORDER BY t.priority DESC, CASE WHEN t.due_time IS NULL THEN 1 ELSE 0 END, t.due_time ASC, \
             t.create_time ASC, t.id ASC LIMIT 1{lock}) \
             AND status = {acknowledged} AND assignee = '' RETURNING id",
            in_progress = TicketStatus::InProgress as i32,
            acknowledged = TicketStatus::Acknowledged as i32,
            conditions = conditions.join(" AND "),
        );
        let transaction = self.db.begin_write().await?;
        let claimed = transaction
            .query_one_raw(Statement::from_sql_and_values(backend, sql, params.values))
            .await?;
        let Some(claimed) = claimed else {
            transaction.rollback().await?;
            return Ok(None);
        };
        let id: String = claimed.try_get_by_index(0)?;
        let row = ticket::Entity::find_by_id(id.clone())
            .one(&transaction)
            .await?
            .ok_or_else(|| Error::internal("a claimed ticket vanished"))?;
        add_history(
            &transaction,
            &id,
            TicketStatus::InProgress,
            now,
            &format!("claimed by {agent}"),
        )
        .await?;
        self.outbox
            .enqueue(
                &transaction,
                &changed_event(&row, Some(TicketStatus::Acknowledged))?,
            )
            .await?;
        transaction.commit().await?;
        self.outbox.committed();
        Ok(Some(self.ticket_view(row).await?))
    }

    /// Puts a ticket claimed by `agent` back in the queue.
    pub async fn release(&self, reference: &str, agent: &str) -> Result<TicketView> {
        let transaction = self.db.begin_write().await?;
        let mut row = find_ticket(&transaction, reference, true).await?;
        if row.assignee.is_empty() || row.assignee != agent {
            return Err(Error::FailedPrecondition(format!(
                "agent_id: the ticket is not claimed by {agent:?}"
            )));
        }
        let previous = status_of(&row)?;
        if previous != TicketStatus::InProgress {
            return Err(Error::FailedPrecondition(format!(
                "ticket_id: only an inProgress ticket goes back to the queue; it is {}",
                previous.tmf_name()
            )));
        }
        let now = Utc::now();
        row.status = TicketStatus::Acknowledged as i32;
        row.assignee.clear();
        row.update_time = now;
        ticket::Entity::update(ticket::ActiveModel::from(row.clone()).reset_all())
            .exec(&transaction)
            .await?;
        add_history(
            &transaction,
            &row.id,
            TicketStatus::Acknowledged,
            now,
            &format!("released by {agent}"),
        )
        .await?;
        self.outbox
            .enqueue(&transaction, &changed_event(&row, Some(previous))?)
            .await?;
        transaction.commit().await?;
        self.outbox.committed();
        self.ticket_view(row).await
    }
}

/// The ticket named `reference`, locked for update when `lock` (PostgreSQL).
async fn find_ticket(
    connection: &impl ConnectionTrait,
    reference: &str,
    lock: bool,
) -> Result<ticket::Model> {
    let mut query = match reference.strip_prefix("external:") {
        Some(external) => ticket::Entity::find().filter(ticket::Column::ExternalId.eq(external)),
        None => {
            if Uuid::parse_str(reference).is_err() {
                return Err(Error::invalid(
                    "ticket_id",
                    "a ticket id (UUID) or \"external:<external id>\"",
                ));
            }
            ticket::Entity::find().filter(ticket::Column::Id.eq(reference))
        }
    };
    if lock && connection.get_database_backend() == DatabaseBackend::Postgres {
        query = query.lock_exclusive();
    }
    query
        .one(connection)
        .await?
        .ok_or_else(|| Error::not_found("ticket", reference))
}

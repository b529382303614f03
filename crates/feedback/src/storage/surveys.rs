//! Surveys, invitations under the once-per-period rule, and responses with
//! what they set off (follow-up tasks, comments, exit-survey churn).

use cairn_runtime::storage::BeginWrite;
use std::future::Future;

use cairn_contract::events::v1::ChangeEvent;
use cairn_runtime::{Error, Result};
use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseTransaction,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, Statement,
};
use uuid::Uuid;

use super::entity::{churn, comment, comment_theme, follow_up, invitation, response, survey};
use super::{FeedbackStore, NewComment, is_unique_violation, parse_position, position};
use crate::domain::survey::{Definition, GLOBAL_SCOPE, Survey};

/// An invitation about to be decided.
#[derive(Debug, Clone)]
pub struct NewInvitation {
    /// Its id, when it is made.
    pub id: Uuid,
    /// The customer.
    pub profile_id: Uuid,
    /// The triggering touchpoint, or empty.
    pub touchpoint_id: String,
    /// The idempotency key.
    pub request_key: String,
    /// The language to ask in.
    pub language: String,
}

/// The shared contact budget's answer.
#[derive(Debug, Clone, Default)]
pub struct BudgetAnswer {
    /// True when the contact was counted.
    pub granted: bool,
    /// Why not, in words.
    pub detail: String,
    /// Set when the contact policy's quiet hours refused the contact: when
    /// they end, so the invitation says quiet hours (not a spent budget) and
    /// a scheduler knows when to try again.
    pub quiet_hours_until: Option<DateTime<Utc>>,
}

/// The refusal codes [`FeedbackStore::invite`] records for what it checks.
#[derive(Debug, Clone)]
pub struct InvitationRefusals {
    /// Surveyed within the period: the code and the detail.
    pub recently: (i32, String),
    /// The shared contact budget is spent.
    pub budget: i32,
    /// The contact policy's quiet hours.
    pub quiet_hours: i32,
}

/// A checked response ready to store.
#[derive(Debug, Clone)]
pub struct NewResponse {
    /// The row.
    pub row: response::Model,
    /// A follow-up task's reason and due time, when the answer needs one.
    pub follow_up: Option<(String, DateTime<Utc>)>,
    /// Free-text answers, stored as survey comments.
    pub comments: Vec<NewComment>,
    /// An exit survey's churn reason.
    pub churn_reason: Option<String>,
    /// For an answer a customer's own token gives without an invitation:
    /// the answer is refused (ALREADY_EXISTS) when the customer answered the
    /// same survey at or after this time. Checked under a lock on the
    /// customer and survey, so concurrent calls cannot both pass.
    pub once_since: Option<DateTime<Utc>>,
}

/// What ListSurveyResponses keeps.
#[derive(Debug, Clone, Default)]
pub struct ResponseFilter {
    /// Only this survey's.
    pub survey_id: Option<String>,
    /// Only this customer's.
    pub profile_id: Option<String>,
    /// From this time on.
    pub start: Option<DateTime<Utc>>,
    /// Before this time.
    pub end: Option<DateTime<Utc>>,
}

fn survey_row(survey: &Survey, request_id: Option<String>) -> Result<survey::ActiveModel> {
    Ok(survey::ActiveModel {
        id: Set(survey.id.to_string()),
        display_name: Set(survey.display_name.clone()),
        definition: Set(serde_json::to_value(&survey.definition).map_err(Error::internal)?),
        channel: Set(survey.channel),
        consent_purpose: Set(survey.consent_purpose.clone()),
        minimum_period_seconds: Set(survey.minimum_period_seconds),
        global_period: Set(survey.global_period),
        closed: Set(survey.closed),
        request_id: Set(request_id),
        create_time: Set(survey.create_time),
        update_time: Set(Utc::now()),
    })
}

fn to_survey(row: survey::Model) -> Result<Survey> {
    let definition: Definition = serde_json::from_value(row.definition).map_err(Error::internal)?;
    Ok(Survey {
        id: Uuid::parse_str(&row.id).map_err(Error::internal)?,
        display_name: row.display_name,
        definition,
        channel: row.channel,
        consent_purpose: row.consent_purpose,
        minimum_period_seconds: row.minimum_period_seconds,
        global_period: row.global_period,
        closed: row.closed,
        create_time: row.create_time,
    })
}

impl FeedbackStore {
    /// Stores a new survey; a retry with the same `request_id` returns the first.
    pub async fn create_survey(
        &self,
        survey: Survey,
        request_id: Option<String>,
    ) -> Result<Survey> {
        if let Some(key) = &request_id
            && let Some(row) = survey::Entity::find()
                .filter(survey::Column::RequestId.eq(key.clone()))
                .one(&self.db)
                .await?
        {
            return to_survey(row);
        }
        let row = survey_row(&survey, request_id.clone())?;
        match survey::Entity::insert(row)
            .exec_without_returning(&self.db)
            .await
        {
            Ok(_) => Ok(survey),
            Err(error) if is_unique_violation(&error) => {
                let key = request_id.unwrap_or_default();
                let row = survey::Entity::find()
                    .filter(survey::Column::RequestId.eq(key))
                    .one(&self.db)
                    .await?
                    .ok_or_else(|| Error::Aborted("a concurrent create won; retry".into()))?;
                to_survey(row)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The survey `id`.
    pub async fn survey(&self, id: &str) -> Result<Survey> {
        survey::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
            .map(to_survey)
            .transpose()?
            .ok_or_else(|| Error::not_found("survey", id))
    }

    /// Surveys, newest first.
    pub async fn list_surveys(
        &self,
        limit: u64,
        after: Option<String>,
    ) -> Result<(Vec<Survey>, Option<String>)> {
        let mut query = survey::Entity::find()
            .order_by_desc(survey::Column::CreateTime)
            .order_by_desc(survey::Column::Id)
            .limit(limit + 1);
        if let Some(after) = after {
            let (time, id) = parse_position(&after)?;
            query = query.filter(
                sea_orm::Condition::any()
                    .add(survey::Column::CreateTime.lt(time))
                    .add(
                        sea_orm::Condition::all()
                            .add(survey::Column::CreateTime.eq(time))
                            .add(survey::Column::Id.lt(id)),
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
        let surveys = rows.into_iter().map(to_survey).collect::<Result<_>>()?;
        Ok((surveys, next))
    }

    /// Every open survey (triggers are matched against them).
    pub async fn open_surveys(&self) -> Result<Vec<Survey>> {
        survey::Entity::find()
            .filter(survey::Column::Closed.eq(false))
            .all(&self.db)
            .await?
            .into_iter()
            .map(to_survey)
            .collect()
    }

    /// True when the survey has answers.
    pub async fn has_responses(&self, survey_id: &str) -> Result<bool> {
        Ok(response::Entity::find()
            .filter(response::Column::SurveyId.eq(survey_id))
            .count(&self.db)
            .await?
            > 0)
    }

    /// Replaces a survey's stored definition.
    pub async fn save_survey(&self, survey: &Survey) -> Result<Survey> {
        let mut row = survey_row(survey, None)?;
        row.request_id = sea_orm::ActiveValue::NotSet;
        survey::Entity::update(row).exec(&self.db).await?;
        self.survey(&survey.id.to_string()).await
    }

    /// The decision already made for `request_key` of `survey_id`, if any.
    pub async fn invitation_for(
        &self,
        survey_id: Uuid,
        request_key: &str,
    ) -> Result<Option<invitation::Model>> {
        Ok(invitation::Entity::find()
            .filter(invitation::Column::SurveyId.eq(survey_id.to_string()))
            .filter(invitation::Column::RequestKey.eq(request_key))
            .one(&self.db)
            .await?)
    }

    /// The invitation `id`.
    pub async fn invitation(&self, id: &str) -> Result<Option<invitation::Model>> {
        Ok(invitation::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?)
    }

    /// Records a refusal; returns the first decision for the request key.
    pub async fn refuse(
        &self,
        survey: &Survey,
        new: &NewInvitation,
        refusal: i32,
        detail: String,
    ) -> Result<invitation::Model> {
        let row = invitation::Model {
            id: Uuid::now_v7().to_string(),
            survey_id: survey.id.to_string(),
            profile_id: new.profile_id.to_string(),
            touchpoint_id: new.touchpoint_id.clone(),
            request_key: new.request_key.clone(),
            invited: false,
            refusal,
            refusal_detail: detail,
            language: new.language.clone(),
            create_time: Utc::now(),
        };
        self.insert_decision(&self.db, row).await
    }

    async fn insert_decision(
        &self,
        connection: &impl ConnectionTrait,
        row: invitation::Model,
    ) -> Result<invitation::Model> {
        let inserted = invitation::Entity::insert(invitation::ActiveModel::from(row.clone()))
            .on_conflict(
                OnConflict::columns([invitation::Column::SurveyId, invitation::Column::RequestKey])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(connection)
            .await?;
        if inserted == 1 {
            return Ok(row);
        }
        invitation::Entity::find()
            .filter(invitation::Column::SurveyId.eq(row.survey_id.clone()))
            .filter(invitation::Column::RequestKey.eq(row.request_key.clone()))
            .one(connection)
            .await?
            .ok_or_else(|| Error::Aborted("the invitation was erased during the call".into()))
    }

    /// Takes the customer's survey slot when the once-per-period rule allows,
    /// then asks `reserve` (the shared contact budget) and records the
    /// invitation with `event`, all in one transaction: concurrent triggers
    /// for one customer wait on the slot's row and find it taken, on any
    /// replica. A refused budget gives the slot back. Returns the stored
    /// decision, and when the contact policy's quiet hours refused it, when
    /// they end.
    pub async fn invite<F>(
        &self,
        survey: &Survey,
        new: &NewInvitation,
        refusals: InvitationRefusals,
        event: ChangeEvent,
        reserve: F,
    ) -> Result<(invitation::Model, Option<DateTime<Utc>>)>
    where
        F: Future<Output = Result<BudgetAnswer>>,
    {
        let now = Utc::now();
        let threshold = now - Duration::seconds(Ord::max(survey.minimum_period_seconds, 0));
        let transaction = self.db.begin_write().await?;
        // Always the survey's row first, then the global one: one lock order,
        // so concurrent invitations cannot deadlock.
        let survey_scope = survey.id.to_string();
        let gates = [
            (survey_scope.as_str(), !survey.global_period),
            (GLOBAL_SCOPE, survey.global_period),
        ];
        for (scope, gated) in gates {
            let taken = take_slot(
                &transaction,
                &new.profile_id.to_string(),
                scope,
                now,
                &new.id.to_string(),
                gated.then_some(threshold),
            )
            .await?;
            if !taken {
                transaction.rollback().await?;
                let (code, detail) = refusals.recently;
                return Ok((self.refuse(survey, new, code, detail).await?, None));
            }
        }
        let budget = match reserve.await {
            Ok(budget) => budget,
            Err(error) => {
                transaction.rollback().await?;
                return Err(error);
            }
        };
        if !budget.granted {
            transaction.rollback().await?;
            let code = match budget.quiet_hours_until {
                Some(_) => refusals.quiet_hours,
                None => refusals.budget,
            };
            let refused = self.refuse(survey, new, code, budget.detail).await?;
            return Ok((refused, budget.quiet_hours_until));
        }
        let row = invitation::Model {
            id: new.id.to_string(),
            survey_id: survey.id.to_string(),
            profile_id: new.profile_id.to_string(),
            touchpoint_id: new.touchpoint_id.clone(),
            request_key: new.request_key.clone(),
            invited: true,
            refusal: 0,
            refusal_detail: String::new(),
            language: new.language.clone(),
            create_time: now,
        };
        let stored = self.insert_decision(&transaction, row).await?;
        if stored.id != new.id.to_string() {
            // The same request was decided concurrently: keep its answer.
            transaction.rollback().await?;
            return Ok((stored, None));
        }
        self.outbox.enqueue(&transaction, &event).await?;
        transaction.commit().await?;
        self.outbox.committed();
        Ok((stored, None))
    }

    /// Stores a response with its follow-up task, comments, churn record and
    /// event (none for an imported answer, which is history, not news).
    /// Returns the stored response and whether its request id was seen
    /// before (then nothing changed).
    pub async fn submit_response(
        &self,
        new: NewResponse,
        event: Option<ChangeEvent>,
    ) -> Result<(response::Model, bool)> {
        if let Some(stored) = self.response_by_request(&new.row.request_id).await? {
            return Ok((stored, true));
        }
        if let Some(invitation_id) = &new.row.invitation_id
            && response::Entity::find()
                .filter(response::Column::InvitationId.eq(invitation_id.clone()))
                .one(&self.db)
                .await?
                .is_some()
        {
            return Err(Error::AlreadyExists(format!(
                "response.invitation_id: invitation {invitation_id} was answered already"
            )));
        }
        let transaction = self.db.begin_write().await?;
        if let Some(since) = new.once_since
            && let Some(earlier) = answered_since(&transaction, &new.row, since).await?
        {
            transaction.rollback().await?;
            return Err(Error::AlreadyExists(format!(
                "response: this customer answered survey {} at {}; without an invitation, a customer's own token may answer it again from {} (use the request_id of the earlier call to read that answer)",
                new.row.survey_id,
                earlier.to_rfc3339(),
                (earlier + (new.row.submit_time - since)).to_rfc3339(),
            )));
        }
        let row = new.row.clone();
        let insert = response::Entity::insert(response::ActiveModel::from(row.clone()))
            .exec_without_returning(&transaction)
            .await;
        match insert {
            Ok(_) => {}
            Err(error) if is_unique_violation(&error) => {
                transaction.rollback().await?;
                if let Some(stored) = self.response_by_request(&row.request_id).await? {
                    return Ok((stored, true));
                }
                return Err(Error::AlreadyExists(
                    "response.invitation_id: the invitation was answered already".into(),
                ));
            }
            Err(error) => return Err(error.into()),
        }
        if let Some((reason, due_time)) = new.follow_up {
            follow_up::Entity::insert(follow_up::ActiveModel::from(follow_up::Model {
                id: Uuid::now_v7().to_string(),
                profile_id: row.profile_id.clone(),
                response_id: row.id.clone(),
                reason,
                due_time,
                assignee: String::new(),
                answer: String::new(),
                status: "open".into(),
                create_time: row.submit_time,
                update_time: row.submit_time,
            }))
            .exec_without_returning(&transaction)
            .await?;
        }
        for comment in &new.comments {
            super::comments::insert_comment(&transaction, comment).await?;
        }
        if let Some(reason) = new.churn_reason {
            churn::Entity::insert(churn::ActiveModel::from(churn::Model {
                id: Uuid::now_v7().to_string(),
                profile_id: row.profile_id.clone(),
                reason,
                source: "exit_survey".into(),
                request_id: None,
                churn_time: row.submit_time,
            }))
            .exec_without_returning(&transaction)
            .await?;
        }
        if let Some(event) = &event {
            self.outbox.enqueue(&transaction, event).await?;
        }
        transaction.commit().await?;
        self.outbox.committed();
        Ok((row, false))
    }

    /// The response stored for `request_id`, if any.
    pub async fn response_by_request(&self, request_id: &str) -> Result<Option<response::Model>> {
        Ok(response::Entity::find()
            .filter(response::Column::RequestId.eq(request_id))
            .one(&self.db)
            .await?)
    }

    /// Responses, newest first.
    pub async fn list_responses(
        &self,
        filter: &ResponseFilter,
        limit: u64,
        after: Option<String>,
    ) -> Result<(Vec<response::Model>, Option<String>)> {
        let mut query = response::Entity::find()
            .order_by_desc(response::Column::SubmitTime)
            .order_by_desc(response::Column::Id)
            .limit(limit + 1);
        if let Some(survey_id) = &filter.survey_id {
            query = query.filter(response::Column::SurveyId.eq(survey_id.clone()));
        }
        if let Some(profile_id) = &filter.profile_id {
            query = query.filter(response::Column::ProfileId.eq(profile_id.clone()));
        }
        if let Some(start) = filter.start {
            query = query.filter(response::Column::SubmitTime.gte(start));
        }
        if let Some(end) = filter.end {
            query = query.filter(response::Column::SubmitTime.lt(end));
        }
        if let Some(after) = after {
            let (time, id) = parse_position(&after)?;
            query = query.filter(
                sea_orm::Condition::any()
                    .add(response::Column::SubmitTime.lt(time))
                    .add(
                        sea_orm::Condition::all()
                            .add(response::Column::SubmitTime.eq(time))
                            .add(response::Column::Id.lt(id)),
                    ),
            );
        }
        let mut rows = query.all(&self.db).await?;
        let next = if rows.len() as u64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|row| position(row.submit_time, &row.id))
        } else {
            None
        };
        Ok((rows, next))
    }

    /// Follow-up tasks, earliest due first.
    pub async fn list_follow_ups(
        &self,
        overdue_only: bool,
        assignee: Option<String>,
        limit: u64,
        after: Option<String>,
    ) -> Result<(Vec<follow_up::Model>, Option<String>)> {
        let mut query = follow_up::Entity::find()
            .order_by_asc(follow_up::Column::DueTime)
            .order_by_asc(follow_up::Column::Id)
            .limit(limit + 1);
        if overdue_only {
            query = query
                .filter(follow_up::Column::Status.eq("open"))
                .filter(follow_up::Column::DueTime.lt(Utc::now()));
        }
        if let Some(assignee) = assignee {
            query = query.filter(follow_up::Column::Assignee.eq(assignee));
        }
        if let Some(after) = after {
            let (time, id) = parse_position(&after)?;
            query = query.filter(
                sea_orm::Condition::any()
                    .add(follow_up::Column::DueTime.gt(time))
                    .add(
                        sea_orm::Condition::all()
                            .add(follow_up::Column::DueTime.eq(time))
                            .add(follow_up::Column::Id.gt(id)),
                    ),
            );
        }
        let mut rows = query.all(&self.db).await?;
        let next = if rows.len() as u64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|row| position(row.due_time, &row.id))
        } else {
            None
        };
        Ok((rows, next))
    }

    /// The follow-up task `id`.
    pub async fn follow_up(&self, id: &str) -> Result<follow_up::Model> {
        follow_up::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("follow-up task", id))
    }

    /// Saves a changed follow-up task.
    pub async fn save_follow_up(&self, task: follow_up::Model) -> Result<follow_up::Model> {
        let mut task = task;
        task.update_time = Utc::now();
        follow_up::Entity::update(follow_up::ActiveModel::from(task.clone()).reset_all())
            .exec(&self.db)
            .await?;
        Ok(task)
    }

    /// The comments stored with a response.
    pub async fn response_comments(&self, response_id: &str) -> Result<Vec<comment::Model>> {
        Ok(comment::Entity::find()
            .filter(comment::Column::ResponseId.eq(response_id))
            .all(&self.db)
            .await?)
    }

    /// Theme rows of a comment (erasure and tests).
    pub async fn comment_themes(&self, comment_id: &str) -> Result<Vec<String>> {
        Ok(comment_theme::Entity::find()
            .filter(comment_theme::Column::CommentId.eq(comment_id))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| row.theme)
            .collect())
    }
}

/// Takes the slot of `profile_id` in `scope`: always when `threshold` is
/// `None`, else only when its last invitation is not after `threshold`.
/// True when taken. One statement, atomic on PostgreSQL and SQLite alike.
async fn take_slot(
    connection: &impl ConnectionTrait,
    profile_id: &str,
    scope: &str,
    now: DateTime<Utc>,
    invitation_id: &str,
    threshold: Option<DateTime<Utc>>,
) -> Result<bool> {
    let mut on_conflict = OnConflict::columns(["profile_id", "scope"]);
    on_conflict.update_columns(["last_invited_at", "invitation_id"]);
    if let Some(threshold) = threshold {
        on_conflict.action_and_where(
            Expr::col(("feedback_contact_slots", "last_invited_at")).lte(threshold),
        );
    }
    let insert = Query::insert()
        .into_table("feedback_contact_slots")
        .columns(["profile_id", "scope", "last_invited_at", "invitation_id"])
        .values_panic([
            profile_id.into(),
            scope.into(),
            now.into(),
            invitation_id.into(),
        ])
        .on_conflict(on_conflict.to_owned())
        .to_owned();
    let result = connection.execute(&insert).await?;
    Ok(result.rows_affected() == 1)
}

/// When the customer of `row` last answered its survey at or after `since`,
/// if they did. On PostgreSQL the customer and survey are locked for the
/// rest of the transaction first (SQLite's write transactions are serial
/// already), so two concurrent answers cannot both find none.
async fn answered_since(
    transaction: &DatabaseTransaction,
    row: &response::Model,
    since: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    if transaction.get_database_backend() == DatabaseBackend::Postgres {
        transaction
            .execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 11))",
                [format!("{}/{}", row.survey_id, row.profile_id).into()],
            ))
            .await?;
    }
    Ok(response::Entity::find()
        .filter(response::Column::SurveyId.eq(row.survey_id.clone()))
        .filter(response::Column::ProfileId.eq(row.profile_id.clone()))
        .filter(response::Column::SubmitTime.gte(since))
        .order_by_desc(response::Column::SubmitTime)
        .one(transaction)
        .await?
        .map(|earlier| earlier.submit_time))
}

//! Comments with their themes, churn records, feature requests with votes,
//! and the journey stages heard on the bus.

use cairn_runtime::storage::BeginWrite;
use cairn_runtime::{Error, Result};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::entity::{churn, comment, comment_theme, feature_request, feature_vote, journey_stage};
use super::{FeedbackStore, is_unique_violation, parse_position, position, string_list};
use crate::domain::text::Signature;

/// A comment ready to store.
#[derive(Debug, Clone)]
pub struct NewComment {
    /// The row (themes included).
    pub row: comment::Model,
}

impl NewComment {
    /// Its themes.
    pub fn themes(&self) -> Vec<String> {
        string_list(&self.row.themes)
    }
}

/// What ListComments keeps.
#[derive(Debug, Clone, Default)]
pub struct CommentFilter {
    /// Only this customer's.
    pub profile_id: Option<String>,
    /// Only with this theme.
    pub theme: Option<String>,
    /// From this time on.
    pub start: Option<DateTime<Utc>>,
    /// Before this time.
    pub end: Option<DateTime<Utc>>,
}

/// Inserts a comment and one theme row per theme.
pub(super) async fn insert_comment(
    connection: &impl ConnectionTrait,
    new: &NewComment,
) -> Result<()> {
    comment::Entity::insert(comment::ActiveModel::from(new.row.clone()))
        .exec_without_returning(connection)
        .await?;
    for theme in new.themes() {
        comment_theme::Entity::insert(comment_theme::ActiveModel::from(comment_theme::Model {
            comment_id: new.row.id.clone(),
            theme,
            language: new.row.language.clone(),
            write_time: new.row.write_time,
        }))
        .on_conflict(
            OnConflict::columns([
                comment_theme::Column::CommentId,
                comment_theme::Column::Theme,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(connection)
        .await?;
    }
    Ok(())
}

impl FeedbackStore {
    /// Stores a comment; a retry with the same request id returns the first.
    pub async fn create_comment(&self, new: NewComment) -> Result<comment::Model> {
        if let Some(key) = &new.row.request_id
            && let Some(stored) = self.comment_by_request(key).await?
        {
            return Ok(stored);
        }
        let transaction = self.db.begin_write().await?;
        match insert_comment(&transaction, &new).await {
            Ok(()) => {
                transaction.commit().await?;
                Ok(new.row)
            }
            Err(error) => {
                transaction.rollback().await?;
                if let Some(key) = &new.row.request_id
                    && let Some(stored) = self.comment_by_request(key).await?
                {
                    return Ok(stored);
                }
                Err(error)
            }
        }
    }

    async fn comment_by_request(&self, key: &str) -> Result<Option<comment::Model>> {
        Ok(comment::Entity::find()
            .filter(comment::Column::RequestId.eq(key))
            .one(&self.db)
            .await?)
    }

    /// Comments, newest first.
    pub async fn list_comments(
        &self,
        filter: &CommentFilter,
        limit: u64,
        after: Option<String>,
    ) -> Result<(Vec<comment::Model>, Option<String>)> {
        let mut query = comment::Entity::find()
            .order_by_desc(comment::Column::WriteTime)
            .order_by_desc(comment::Column::Id)
            .limit(limit + 1);
        if let Some(profile_id) = &filter.profile_id {
            query = query.filter(comment::Column::ProfileId.eq(profile_id.clone()));
        }
        if let Some(theme) = &filter.theme {
            let with_theme = sea_orm::sea_query::Query::select()
                .column(comment_theme::Column::CommentId)
                .from(comment_theme::Entity)
                .and_where(comment_theme::Column::Theme.eq(theme.clone()))
                .to_owned();
            query = query.filter(comment::Column::Id.in_subquery(with_theme));
        }
        if let Some(start) = filter.start {
            query = query.filter(comment::Column::WriteTime.gte(start));
        }
        if let Some(end) = filter.end {
            query = query.filter(comment::Column::WriteTime.lt(end));
        }
        if let Some(after) = after {
            let (time, id) = parse_position(&after)?;
            query = query.filter(
                sea_orm::Condition::any()
                    .add(comment::Column::WriteTime.lt(time))
                    .add(
                        sea_orm::Condition::all()
                            .add(comment::Column::WriteTime.eq(time))
                            .add(comment::Column::Id.lt(id)),
                    ),
            );
        }
        let mut rows = query.all(&self.db).await?;
        let next = if rows.len() as u64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|row| position(row.write_time, &row.id))
        } else {
            None
        };
        Ok((rows, next))
    }

    /// Records that a customer left; a retry with the same request id counts once.
    pub async fn record_churn(&self, row: churn::Model) -> Result<()> {
        match churn::Entity::insert(churn::ActiveModel::from(row))
            .exec_without_returning(&self.db)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if is_unique_violation(&error) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Churn reasons given in `[start, end)`, most frequent first.
    pub async fn churn_reasons(
        &self,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Result<Vec<(String, i64)>> {
        let mut query = churn::Entity::find();
        if let Some(start) = start {
            query = query.filter(churn::Column::ChurnTime.gte(start));
        }
        if let Some(end) = end {
            query = query.filter(churn::Column::ChurnTime.lt(end));
        }
        let mut counts: std::collections::BTreeMap<
            String,
            (String, std::collections::BTreeSet<String>),
        > = Default::default();
        for row in query.all(&self.db).await? {
            let reason = row.reason.trim();
            let reason = if reason.is_empty() { "unknown" } else { reason };
            let key = reason.to_lowercase();
            counts
                .entry(key)
                .or_insert_with(|| (reason.to_string(), Default::default()))
                .1
                .insert(row.profile_id);
        }
        let mut reasons: Vec<(String, i64)> = counts
            .into_values()
            .map(|(reason, customers)| (reason, customers.len() as i64))
            .collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(reasons)
    }

    /// Records a feature request, or a vote for an existing one asking the
    /// same; one vote per voter. Returns the request and whether it merged.
    pub async fn request_feature(
        &self,
        text: &str,
        language: &str,
        signature: Signature,
        voter: String,
    ) -> Result<(feature_request::Model, bool)> {
        let transaction = self.db.begin_write().await?;
        // Serialise feature requests so that two alike ones arriving at once
        // become one request (PostgreSQL: a transaction-scoped advisory lock).
        if transaction.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            transaction
                .execute_raw(sea_orm::Statement::from_string(
                    sea_orm::DatabaseBackend::Postgres,
                    "SELECT pg_advisory_xact_lock(hashtext('cairn-feedback-feature-requests'))",
                ))
                .await?;
        }
        let existing = feature_request::Entity::find()
            .order_by_asc(feature_request::Column::CreateTime)
            .all(&transaction)
            .await?
            .into_iter()
            .find(|row| {
                serde_json::from_value::<Signature>(row.signature.clone())
                    .map(|stored| stored.same_request(&signature))
                    .unwrap_or(false)
            });
        let now = Utc::now();
        let (request, merged) = match existing {
            Some(row) => (row, true),
            None => {
                let row = feature_request::Model {
                    id: Uuid::now_v7().to_string(),
                    text: text.to_string(),
                    language: language.to_string(),
                    signature: serde_json::to_value(&signature).map_err(Error::internal)?,
                    votes: 0,
                    create_time: now,
                };
                feature_request::Entity::insert(feature_request::ActiveModel::from(row.clone()))
                    .exec_without_returning(&transaction)
                    .await?;
                (row, false)
            }
        };
        let voted =
            feature_vote::Entity::insert(feature_vote::ActiveModel::from(feature_vote::Model {
                feature_request_id: request.id.clone(),
                voter,
                vote_time: now,
            }))
            .on_conflict(
                OnConflict::columns([
                    feature_vote::Column::FeatureRequestId,
                    feature_vote::Column::Voter,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&transaction)
            .await?;
        if voted == 1 {
            feature_request::Entity::update_many()
                .col_expr(
                    feature_request::Column::Votes,
                    Expr::col(feature_request::Column::Votes).add(1),
                )
                .filter(feature_request::Column::Id.eq(request.id.clone()))
                .exec(&transaction)
                .await?;
        }
        let stored = feature_request::Entity::find_by_id(request.id.clone())
            .one(&transaction)
            .await?
            .ok_or_else(|| Error::internal("a feature request vanished in its transaction"))?;
        transaction.commit().await?;
        Ok((stored, merged))
    }

    /// Feature requests, most votes first.
    pub async fn list_feature_requests(
        &self,
        limit: u64,
        after: Option<String>,
    ) -> Result<(Vec<feature_request::Model>, Option<String>)> {
        let offset: u64 = match after {
            Some(after) => after
                .parse()
                .map_err(|_| Error::invalid("page_token", "not a token of this listing"))?,
            None => 0,
        };
        let mut rows = feature_request::Entity::find()
            .order_by_desc(feature_request::Column::Votes)
            .order_by_asc(feature_request::Column::CreateTime)
            .order_by_asc(feature_request::Column::Id)
            .offset(offset)
            .limit(limit + 1)
            .all(&self.db)
            .await?;
        let next = if rows.len() as u64 > limit {
            rows.truncate(limit as usize);
            Some((offset + limit).to_string())
        } else {
            None
        };
        Ok((rows, next))
    }

    /// Remembers the stage a customer entered, once per event.
    pub async fn record_stage(&self, event_id: &str, profile_id: &str, stage: &str) -> Result<()> {
        let transaction = self.db.begin_write().await?;
        if !self.inbox.first_delivery(&transaction, event_id).await? {
            return Ok(());
        }
        journey_stage::Entity::insert(journey_stage::ActiveModel::from(journey_stage::Model {
            profile_id: profile_id.to_string(),
            stage: stage.to_string(),
            update_time: Utc::now(),
        }))
        .on_conflict(
            OnConflict::column(journey_stage::Column::ProfileId)
                .update_columns([
                    journey_stage::Column::Stage,
                    journey_stage::Column::UpdateTime,
                ])
                .to_owned(),
        )
        .exec_without_returning(&transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// The last stage heard for a customer; empty when none.
    pub async fn stage_of(&self, profile_id: &str) -> Result<String> {
        Ok(journey_stage::Entity::find_by_id(profile_id.to_string())
            .one(&self.db)
            .await?
            .map(|row| row.stage)
            .unwrap_or_default())
    }

    /// Marks `event_id` handled when it needs nothing else (an event for
    /// which nothing is to be done still counts once).
    pub async fn handled(&self, event_id: &str) -> Result<bool> {
        let transaction = self.db.begin_write().await?;
        let first = self.inbox.first_delivery(&transaction, event_id).await?;
        transaction.commit().await?;
        Ok(first)
    }
}

//! A person's feedback: the export, and erasure on `profile.erased`.

use cairn_runtime::storage::BeginWrite;
use cairn_runtime::{Error, Result};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, Set,
};

use super::entity::{
    churn, comment, comment_theme, feature_request, feature_vote, follow_up, invitation,
    journey_stage, response, ticket, ticket_contact, ticket_history, ticket_skill,
};
use super::{FeedbackStore, TicketView};
use crate::domain::text::Signature;

/// Everything the service holds about a person.
#[derive(Debug, Clone, Default)]
pub struct PersonalFeedback {
    /// Their survey responses.
    pub responses: Vec<response::Model>,
    /// Their comments.
    pub comments: Vec<comment::Model>,
    /// Their tickets.
    pub tickets: Vec<TicketView>,
}

impl FeedbackStore {
    /// Everything held about `profile_id`, oldest first.
    pub async fn export(&self, profile_id: &str) -> Result<PersonalFeedback> {
        let responses = response::Entity::find()
            .filter(response::Column::ProfileId.eq(profile_id))
            .order_by_asc(response::Column::SubmitTime)
            .all(&self.db)
            .await?;
        let comments = comment::Entity::find()
            .filter(comment::Column::ProfileId.eq(profile_id))
            .order_by_asc(comment::Column::WriteTime)
            .all(&self.db)
            .await?;
        let rows = ticket::Entity::find()
            .filter(ticket::Column::ProfileId.eq(profile_id))
            .order_by_asc(ticket::Column::CreateTime)
            .all(&self.db)
            .await?;
        let mut tickets = Vec::with_capacity(rows.len());
        for row in rows {
            tickets.push(self.ticket_view(row).await?);
        }
        Ok(PersonalFeedback {
            responses,
            comments,
            tickets,
        })
    }

    /// Moves what is held about `merged` to `survivor` after a profile
    /// merge, once per event, so that a person's export and listings by
    /// customer find it. An unmerge does not move it back: the answers of
    /// the merged time stay with the survivor, as the profile service keeps
    /// what was learned after a merge.
    pub async fn follow_merge(&self, event_id: &str, survivor: &str, merged: &str) -> Result<u64> {
        use sea_orm::sea_query::{Expr, ExprTrait, Query};
        let transaction = self.db.begin_write().await?;
        if !self.inbox.first_delivery(&transaction, event_id).await? {
            return Ok(0);
        }
        let mut moved = 0;
        for table in [
            "feedback_responses",
            "feedback_comments",
            "feedback_tickets",
            "feedback_follow_ups",
            "feedback_churn",
            "feedback_invitations",
        ] {
            let update = Query::update()
                .table(table)
                .value("profile_id", survivor)
                .and_where(Expr::col("profile_id").eq(merged))
                .to_owned();
            moved += sea_orm::ConnectionTrait::execute(&transaction, &update)
                .await?
                .rows_affected();
        }
        transaction.commit().await?;
        Ok(moved)
    }

    /// Deletes everything held about `profile_ids`, once per erasure event.
    /// Feature requests keep their vote counts (an aggregate) without the
    /// votes that name the person. Returns the rows deleted.
    pub async fn erase(&self, event_id: &str, profile_ids: &[String]) -> Result<u64> {
        let transaction = self.db.begin_write().await?;
        if !self.inbox.first_delivery(&transaction, event_id).await? {
            return Ok(0);
        }
        let ids = profile_ids.to_vec();
        let mut deleted = 0;
        let comment_ids: Vec<String> = comment::Entity::find()
            .filter(comment::Column::ProfileId.is_in(ids.clone()))
            .all(&transaction)
            .await?
            .into_iter()
            .map(|row| row.id)
            .collect();
        deleted += comment_theme::Entity::delete_many()
            .filter(comment_theme::Column::CommentId.is_in(comment_ids.clone()))
            .exec(&transaction)
            .await?
            .rows_affected;
        deleted += comment::Entity::delete_many()
            .filter(comment::Column::Id.is_in(comment_ids))
            .exec(&transaction)
            .await?
            .rows_affected;
        let ticket_ids: Vec<String> = ticket::Entity::find()
            .filter(ticket::Column::ProfileId.is_in(ids.clone()))
            .all(&transaction)
            .await?
            .into_iter()
            .map(|row| row.id)
            .collect();
        deleted += ticket_contact::Entity::delete_many()
            .filter(ticket_contact::Column::TicketId.is_in(ticket_ids.clone()))
            .exec(&transaction)
            .await?
            .rows_affected;
        deleted += ticket_history::Entity::delete_many()
            .filter(ticket_history::Column::TicketId.is_in(ticket_ids.clone()))
            .exec(&transaction)
            .await?
            .rows_affected;
        deleted += ticket_skill::Entity::delete_many()
            .filter(ticket_skill::Column::TicketId.is_in(ticket_ids.clone()))
            .exec(&transaction)
            .await?
            .rows_affected;
        deleted += ticket::Entity::delete_many()
            .filter(ticket::Column::Id.is_in(ticket_ids))
            .exec(&transaction)
            .await?
            .rows_affected;
        deleted += response::Entity::delete_many()
            .filter(response::Column::ProfileId.is_in(ids.clone()))
            .exec(&transaction)
            .await?
            .rows_affected;
        deleted += follow_up::Entity::delete_many()
            .filter(follow_up::Column::ProfileId.is_in(ids.clone()))
            .exec(&transaction)
            .await?
            .rows_affected;
        deleted += invitation::Entity::delete_many()
            .filter(invitation::Column::ProfileId.is_in(ids.clone()))
            .exec(&transaction)
            .await?
            .rows_affected;
        deleted += churn::Entity::delete_many()
            .filter(churn::Column::ProfileId.is_in(ids.clone()))
            .exec(&transaction)
            .await?
            .rows_affected;
        deleted += redact_authored_feature_requests(&transaction, &ids).await?;
        deleted += feature_vote::Entity::delete_many()
            .filter(feature_vote::Column::Voter.is_in(ids.clone()))
            .exec(&transaction)
            .await?
            .rows_affected;
        deleted += journey_stage::Entity::delete_many()
            .filter(journey_stage::Column::ProfileId.is_in(ids.clone()))
            .exec(&transaction)
            .await?
            .rows_affected;
        // The once-per-period slots hold only ids and times; deleted too so
        // that nothing links to the person.
        let slots = sea_orm::sea_query::Query::delete()
            .from_table("feedback_contact_slots")
            .and_where(sea_orm::sea_query::ExprTrait::is_in(
                sea_orm::sea_query::Expr::col("profile_id"),
                ids,
            ))
            .to_owned();
        deleted += sea_orm::ConnectionTrait::execute(&transaction, &slots)
            .await?
            .rows_affected();
        transaction.commit().await?;
        Ok(deleted)
    }
}

/// Feature requests keep only their first wording, which is its author's
/// own words (the first vote is the author's): on the author's erasure the
/// wording goes, replaced by the request's themes (words of a fixed
/// lexicon, nothing of the person's), and so do the stems it was compared
/// on; the votes stay counted and alike requests still join it by theme.
/// Returns how many requests were redacted.
async fn redact_authored_feature_requests(
    transaction: &DatabaseTransaction,
    profile_ids: &[String],
) -> Result<u64> {
    let voted: Vec<String> = feature_vote::Entity::find()
        .filter(feature_vote::Column::Voter.is_in(profile_ids.to_vec()))
        .all(transaction)
        .await?
        .into_iter()
        .map(|vote| vote.feature_request_id)
        .collect();
    let mut redacted = 0;
    for request_id in voted {
        let author = feature_vote::Entity::find()
            .filter(feature_vote::Column::FeatureRequestId.eq(request_id.clone()))
            .order_by_asc(feature_vote::Column::VoteTime)
            .one(transaction)
            .await?;
        if !author.is_some_and(|vote| profile_ids.contains(&vote.voter)) {
            continue;
        }
        let Some(request) = feature_request::Entity::find_by_id(request_id)
            .one(transaction)
            .await?
        else {
            continue;
        };
        let themes = serde_json::from_value::<Signature>(request.signature.clone())
            .map(|signature| signature.themes)
            .unwrap_or_default();
        let text = if themes.is_empty() {
            "[the author's words were erased]".to_string()
        } else {
            format!(
                "[the author's words were erased; themes: {}]",
                themes.join(", ")
            )
        };
        let signature = serde_json::to_value(Signature {
            themes,
            stems: Vec::new(),
        })
        .map_err(Error::internal)?;
        let mut row = request.into_active_model();
        row.text = Set(text);
        row.signature = Set(signature);
        row.update(transaction).await?;
        redacted += 1;
    }
    Ok(redacted)
}

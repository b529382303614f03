//! What the measures and trends are computed from: the answers, resolved
//! tickets, churn records and theme mentions of a window.

use cairn_runtime::Result;
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::entity::{churn, comment, comment_theme, response, ticket};
use super::{FeedbackStore, string_list};
use crate::domain::kpi::ResponseFact;
use crate::domain::ticket::first_contact_resolution;

/// A ticket resolved in the window.
#[derive(Debug, Clone)]
pub struct ResolvedTicket {
    /// When it was resolved.
    pub resolve_time: DateTime<Utc>,
    /// The opening channel's enum number.
    pub channel: i32,
    /// Segment ids at opening.
    pub segments: Vec<String>,
    /// The agent it was assigned to.
    pub assignee: String,
    /// Resolved on the first contact.
    pub first_contact_resolution: bool,
}

/// One mention of a theme.
#[derive(Debug, Clone)]
pub struct ThemeMention {
    /// The theme.
    pub theme: String,
    /// The language it was found in (empty for a ticket category).
    pub language: String,
    /// When.
    pub time: DateTime<Utc>,
}

impl FeedbackStore {
    /// Answers with a score submitted in `[start, end)`.
    pub async fn response_facts(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<ResponseFact>> {
        let rows = response::Entity::find()
            .filter(response::Column::SubmitTime.gte(start))
            .filter(response::Column::SubmitTime.lt(end))
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| ResponseFact {
                time: row.submit_time,
                survey_id: row.survey_id,
                channel: row.channel,
                segments: string_list(&row.segments),
                stage: row.journey_stage,
                nps: row.nps,
                csat: row.csat,
                effort: row.effort,
            })
            .collect())
    }

    /// Tickets whose (last) resolution falls in `[start, end)`, closed ones included.
    pub async fn resolved_tickets(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<ResolvedTicket>> {
        let rows = ticket::Entity::find()
            .filter(ticket::Column::ResolveTime.gte(start))
            .filter(ticket::Column::ResolveTime.lt(end))
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                Some(ResolvedTicket {
                    resolve_time: row.resolve_time?,
                    channel: row.channel,
                    segments: string_list(&row.segments),
                    first_contact_resolution: first_contact_resolution(
                        true,
                        row.reopened,
                        row.inbound_contacts,
                    ),
                    assignee: row.assignee,
                })
            })
            .collect())
    }

    /// Times of churn in `[start, end)`, one per customer (their first).
    pub async fn churn_times(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>> {
        let rows = churn::Entity::find()
            .filter(churn::Column::ChurnTime.gte(start))
            .filter(churn::Column::ChurnTime.lt(end))
            .order_by_asc(churn::Column::ChurnTime)
            .all(&self.db)
            .await?;
        let mut seen = std::collections::BTreeSet::new();
        Ok(rows
            .into_iter()
            .filter(|row| seen.insert(row.profile_id.clone()))
            .map(|row| row.churn_time)
            .collect())
    }

    /// Theme mentions of comments and ticket categories in `[start, end)`.
    pub async fn theme_mentions(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<ThemeMention>> {
        let mut mentions: Vec<ThemeMention> = comment_theme::Entity::find()
            .filter(comment_theme::Column::WriteTime.gte(start))
            .filter(comment_theme::Column::WriteTime.lt(end))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| ThemeMention {
                theme: row.theme,
                language: row.language,
                time: row.write_time,
            })
            .collect();
        let tickets = ticket::Entity::find()
            .filter(ticket::Column::CreateTime.gte(start))
            .filter(ticket::Column::CreateTime.lt(end))
            .filter(ticket::Column::Category.ne(""))
            .all(&self.db)
            .await?;
        mentions.extend(tickets.into_iter().map(|row| ThemeMention {
            theme: row.category.to_lowercase(),
            language: String::new(),
            time: row.create_time,
        }));
        Ok(mentions)
    }

    /// The newest comments of `[start, end)` with `theme`, at most `limit`.
    pub async fn theme_examples(
        &self,
        theme: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<String>> {
        let ids: Vec<String> = comment_theme::Entity::find()
            .filter(comment_theme::Column::Theme.eq(theme))
            .filter(comment_theme::Column::WriteTime.gte(start))
            .filter(comment_theme::Column::WriteTime.lt(end))
            .order_by_desc(comment_theme::Column::WriteTime)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| row.comment_id)
            .collect();
        Ok(comment::Entity::find()
            .filter(comment::Column::Id.is_in(ids))
            .order_by_desc(comment::Column::WriteTime)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| row.text)
            .collect())
    }
}

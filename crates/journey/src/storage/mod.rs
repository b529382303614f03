//! The journey service's storage: touchpoints, durable before a call returns.

pub mod abandonments;
pub mod batch;
pub mod journeys;
pub mod migration;
pub mod sessions;

use cairn_contract::events::v1::TouchpointRecorded;
use cairn_contract::events::v1::change_event::Payload;
use cairn_runtime::common::timestamp_to_proto;
use cairn_runtime::inbox::Inbox;
use cairn_runtime::outbox::{self, Outbox};
use cairn_runtime::storage::BeginWrite;
use cairn_runtime::{Error, Result};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{DatabaseConnection, QueryOrder, QuerySelect, Set};

use crate::domain::progress::{RuleVariables, Transition};
use crate::domain::{Properties, Touchpoint, TouchpointKind};
use journeys::JourneyStore;

const SOURCE: &str = "journey";

/// `journey_touchpoints` rows.
pub mod touchpoint {
    use sea_orm::entity::prelude::*;

    /// A touchpoint row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "journey_touchpoints")]
    pub struct Model {
        /// The client-chosen id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The profile it was recorded for.
        pub profile_id: String,
        /// The customer it belongs to now: that profile, or its merge survivor.
        pub customer_id: String,
        /// The channel's enum number.
        pub channel: i32,
        /// The kind's stored name.
        pub kind: String,
        /// When it happened.
        pub occurred_at: DateTimeUtc,
        /// When it was stored.
        pub received_at: DateTimeUtc,
        /// Properties as JSON.
        pub properties: Json,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// What a timeline keeps.
#[derive(Debug, Clone, Default)]
pub struct TimelineFilter {
    /// Only these channels (enum numbers); empty means all.
    pub channels: Vec<i32>,
    /// Only these kinds (stored names); empty means all.
    pub kinds: Vec<String>,
    /// From this time on.
    pub start: Option<chrono::DateTime<chrono::Utc>>,
    /// Before this time.
    pub end: Option<chrono::DateTime<chrono::Utc>>,
}

/// Touchpoints in the database.
#[derive(Clone)]
pub struct TouchpointStore {
    db: DatabaseConnection,
    outbox: Outbox,
    inbox: Inbox,
    journeys: JourneyStore,
}

impl TouchpointStore {
    /// A store on `db`; touchpoints move customers through `journeys`.
    pub fn new(
        db: DatabaseConnection,
        outbox: Outbox,
        inbox: Inbox,
        journeys: JourneyStore,
    ) -> Self {
        Self {
            db,
            outbox,
            inbox,
            journeys,
        }
    }

    /// The journeys touchpoints move customers through.
    pub fn journeys(&self) -> &JourneyStore {
        &self.journeys
    }

    /// The stored touchpoint `id`, if any.
    pub async fn find(&self, id: &str) -> Result<Option<Touchpoint>> {
        touchpoint::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
            .map(to_domain)
            .transpose()
    }

    /// Stores `touchpoint` with its `journey.touchpoint_recorded` event and
    /// moves the customer through the journeys `heads` (latest versions) in
    /// the same transaction; `profile` is the `profile` variable of the
    /// journeys' conditions. Returns the stored touchpoint and whether it was
    /// already there (then nothing changed and no event is published).
    pub async fn record(
        &self,
        touchpoint: Touchpoint,
        heads: &[std::sync::Arc<crate::domain::definition::JourneyDefinition>],
        profile: serde_json::Value,
    ) -> Result<(Touchpoint, bool)> {
        let transaction = self.db.begin_write().await?;
        let insert = touchpoint::Entity::insert(touchpoint_row(&touchpoint)?)
            .on_conflict(
                OnConflict::column(touchpoint::Column::Id)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&transaction)
            .await?;
        if insert == 0 {
            drop(transaction);
            let stored = self.find(&touchpoint.id).await?.ok_or_else(|| {
                Error::Aborted("the touchpoint was erased during the call; retry".into())
            })?;
            return Ok((stored, true));
        }
        self.outbox
            .enqueue(&transaction, &recorded_event(&touchpoint))
            .await?;
        let variables = rule_variables(&touchpoint, profile);
        let _transitions: Vec<Transition> = self
            .journeys
            .progress(
                &transaction,
                heads,
                &touchpoint.profile_id.to_string(),
                &touchpoint,
                &variables,
            )
            .await?;
        transaction.commit().await?;
        self.outbox.committed();
        metrics::counter!("cairn_touchpoints_ingested_total").increment(1);
        Ok((touchpoint, false))
    }

    /// A customer's touchpoints (following merges), newest first, after
    /// `after` (a position of a previous page), filtered.
    pub async fn timeline(
        &self,
        customer: Uuid,
        filter: &TimelineFilter,
        limit: u64,
        after: Option<String>,
    ) -> Result<(Vec<Touchpoint>, Option<String>)> {
        let mut query = touchpoint::Entity::find()
            .filter(touchpoint::Column::CustomerId.eq(customer.to_string()))
            .order_by_desc(touchpoint::Column::OccurredAt)
            .order_by_desc(touchpoint::Column::Id)
            .limit(limit + 1);
        if !filter.channels.is_empty() {
            query = query.filter(touchpoint::Column::Channel.is_in(filter.channels.clone()));
        }
        if !filter.kinds.is_empty() {
            query = query.filter(touchpoint::Column::Kind.is_in(filter.kinds.clone()));
        }
        if let Some(start) = filter.start {
            query = query.filter(touchpoint::Column::OccurredAt.gte(start));
        }
        if let Some(end) = filter.end {
            query = query.filter(touchpoint::Column::OccurredAt.lt(end));
        }
        if let Some(after) = after {
            let invalid = || Error::invalid("page_token", "not a token of this timeline");
            let (time, id) = after.split_once('|').ok_or_else(invalid)?;
            let time = chrono::DateTime::parse_from_rfc3339(time)
                .map_err(|_| invalid())?
                .with_timezone(&chrono::Utc);
            query = query.filter(
                sea_orm::Condition::any()
                    .add(touchpoint::Column::OccurredAt.lt(time))
                    .add(
                        sea_orm::Condition::all()
                            .add(touchpoint::Column::OccurredAt.eq(time))
                            .add(touchpoint::Column::Id.lt(id.to_string())),
                    ),
            );
        }
        let mut rows = query.all(&self.db).await?;
        let next = if rows.len() as u64 > limit {
            rows.truncate(limit as usize);
            rows.last()
                .map(|row| format!("{}|{}", row.occurred_at.to_rfc3339(), row.id))
        } else {
            None
        };
        let touchpoints = rows
            .into_iter()
            .map(to_domain)
            .collect::<Result<Vec<_>>>()?;
        Ok((touchpoints, next))
    }

    /// Every touchpoint that happened in `[start, end)`, by customer and time:
    /// what funnels and paths are computed from.
    pub async fn between(
        &self,
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<(String, Touchpoint)>> {
        let rows = touchpoint::Entity::find()
            .filter(touchpoint::Column::OccurredAt.gte(start))
            .filter(touchpoint::Column::OccurredAt.lt(end))
            .order_by_asc(touchpoint::Column::CustomerId)
            .order_by_asc(touchpoint::Column::OccurredAt)
            .order_by_asc(touchpoint::Column::Id)
            .all(&self.db)
            .await?;
        rows.into_iter()
            .map(|row| {
                let customer = row.customer_id.clone();
                to_domain(row).map(|touchpoint| (customer, touchpoint))
            })
            .collect()
    }

    /// Moves the touchpoints of `merged` to `survivor`'s timeline, once per event.
    pub async fn follow_merge(&self, event_id: &str, survivor: &str, merged: &str) -> Result<()> {
        let transaction = self.db.begin_write().await?;
        if !self.inbox.first_delivery(&transaction, event_id).await? {
            return Ok(());
        }
        touchpoint::Entity::update_many()
            .col_expr(
                touchpoint::Column::CustomerId,
                sea_orm::sea_query::Expr::value(survivor.to_string()),
            )
            .filter(touchpoint::Column::CustomerId.eq(merged))
            .exec(&transaction)
            .await?;
        self.journeys
            .follow_merge(&transaction, survivor, merged)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Gives `restored` back the touchpoints recorded for it, once per event.
    pub async fn follow_unmerge(
        &self,
        event_id: &str,
        survivor: &str,
        restored: &str,
    ) -> Result<()> {
        let transaction = self.db.begin_write().await?;
        if !self.inbox.first_delivery(&transaction, event_id).await? {
            return Ok(());
        }
        touchpoint::Entity::update_many()
            .col_expr(
                touchpoint::Column::CustomerId,
                sea_orm::sea_query::Expr::value(restored.to_string()),
            )
            .filter(touchpoint::Column::ProfileId.eq(restored))
            .filter(touchpoint::Column::CustomerId.eq(survivor))
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Deletes everything held about `profile_ids`, once per erasure event.
    pub async fn erase(&self, event_id: &str, profile_ids: &[String]) -> Result<u64> {
        let transaction = self.db.begin_write().await?;
        if !self.inbox.first_delivery(&transaction, event_id).await? {
            return Ok(0);
        }
        let deleted = touchpoint::Entity::delete_many()
            .filter(
                sea_orm::Condition::any()
                    .add(touchpoint::Column::ProfileId.is_in(profile_ids.to_vec()))
                    .add(touchpoint::Column::CustomerId.is_in(profile_ids.to_vec())),
            )
            .exec(&transaction)
            .await?
            .rows_affected;
        let deleted = deleted + self.journeys.erase(&transaction, profile_ids).await?;
        transaction.commit().await?;
        Ok(deleted)
    }
}

/// The `journey_touchpoints` row of a new touchpoint (its customer is the
/// profile it was resolved to; merges move it later).
fn touchpoint_row(touchpoint: &Touchpoint) -> Result<touchpoint::ActiveModel> {
    Ok(touchpoint::ActiveModel {
        id: Set(touchpoint.id.clone()),
        profile_id: Set(touchpoint.profile_id.to_string()),
        customer_id: Set(touchpoint.profile_id.to_string()),
        channel: Set(touchpoint.channel),
        kind: Set(touchpoint.kind.as_str().to_string()),
        occurred_at: Set(touchpoint.occurred_at),
        received_at: Set(touchpoint.received_at),
        properties: Set(serde_json::to_value(&touchpoint.properties).map_err(Error::internal)?),
    })
}

/// The `journey.touchpoint_recorded` event of a stored touchpoint.
fn recorded_event(touchpoint: &Touchpoint) -> cairn_contract::events::v1::ChangeEvent {
    outbox::event(
        SOURCE,
        "journey.touchpoint_recorded",
        &touchpoint.profile_id.to_string(),
        Payload::TouchpointRecorded(TouchpointRecorded {
            touchpoint_id: touchpoint.id.clone(),
            channel: touchpoint.channel,
            r#type: touchpoint.kind.as_str().to_string(),
            occurred_at: Some(timestamp_to_proto(touchpoint.occurred_at)),
            // Offer touchpoints carry the recommendation decision they
            // report on, so the recommendation service learns from them.
            decision_id: text_property(&touchpoint.properties, "decision_id"),
            action_id: text_property(&touchpoint.properties, "action_id"),
        }),
    )
}

/// The variables of the journeys' conditions for `touchpoint`: itself, and
/// its customer's `profile`.
fn rule_variables(touchpoint: &Touchpoint, profile: serde_json::Value) -> RuleVariables {
    let mut variables = RuleVariables::new();
    variables.insert(
        "touchpoint".into(),
        crate::domain::progress::touchpoint_variable(touchpoint, &channel_name(touchpoint.channel)),
    );
    variables.insert("profile".into(), profile);
    variables
}

/// The contract's name of a channel ("CHANNEL_WEB"), as conditions see it.
pub fn channel_name(channel: i32) -> String {
    cairn_contract::common::v1::Channel::try_from(channel)
        .map(|known| known.as_str_name().to_string())
        .unwrap_or_else(|_| format!("CHANNEL_{channel}"))
}

/// A string property's value, or empty.
fn text_property(properties: &Properties, name: &str) -> String {
    match properties.get(name) {
        Some(cairn_runtime::common::TypedValue::String(text)) => text.clone(),
        _ => String::new(),
    }
}

fn to_domain(row: touchpoint::Model) -> Result<Touchpoint> {
    let properties: Properties = serde_json::from_value(row.properties).map_err(Error::internal)?;
    Ok(Touchpoint {
        profile_id: Uuid::parse_str(&row.profile_id).map_err(Error::internal)?,
        id: row.id,
        channel: row.channel,
        kind: TouchpointKind::new(row.kind),
        occurred_at: row.occurred_at,
        received_at: row.received_at,
        properties,
    })
}

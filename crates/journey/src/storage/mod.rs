//! The journey service's storage: touchpoints, durable before a call returns.

pub mod migration;

use cairn_contract::events::v1::TouchpointRecorded;
use cairn_contract::events::v1::change_event::Payload;
use cairn_runtime::common::timestamp_to_proto;
use cairn_runtime::inbox::Inbox;
use cairn_runtime::outbox::{self, Outbox};
use cairn_runtime::{Error, Result};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{DatabaseConnection, QueryOrder, QuerySelect, Set, TransactionTrait};

use crate::domain::{Properties, Touchpoint, TouchpointKind};

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
        /// The resolved profile.
        pub profile_id: String,
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

/// Touchpoints in the database.
#[derive(Clone)]
pub struct TouchpointStore {
    db: DatabaseConnection,
    outbox: Outbox,
    inbox: Inbox,
}

impl TouchpointStore {
    /// A store on `db`.
    pub fn new(db: DatabaseConnection, outbox: Outbox, inbox: Inbox) -> Self {
        Self { db, outbox, inbox }
    }

    /// The stored touchpoint `id`, if any.
    pub async fn find(&self, id: &str) -> Result<Option<Touchpoint>> {
        touchpoint::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
            .map(to_domain)
            .transpose()
    }

    /// Stores `touchpoint` with its `journey.touchpoint_recorded` event.
    /// Returns the stored touchpoint and whether it was already there (then
    /// nothing changed and no event is published).
    pub async fn record(&self, touchpoint: Touchpoint) -> Result<(Touchpoint, bool)> {
        let transaction = self.db.begin().await?;
        let insert = touchpoint::Entity::insert(touchpoint::ActiveModel {
            id: Set(touchpoint.id.clone()),
            profile_id: Set(touchpoint.profile_id.to_string()),
            channel: Set(touchpoint.channel),
            kind: Set(touchpoint.kind.as_str().to_string()),
            occurred_at: Set(touchpoint.occurred_at),
            received_at: Set(touchpoint.received_at),
            properties: Set(serde_json::to_value(&touchpoint.properties).map_err(Error::internal)?),
        })
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
        let event = outbox::event(
            SOURCE,
            "journey.touchpoint_recorded",
            &touchpoint.profile_id.to_string(),
            Payload::TouchpointRecorded(TouchpointRecorded {
                touchpoint_id: touchpoint.id.clone(),
                channel: touchpoint.channel,
                r#type: touchpoint.kind.as_str().to_string(),
                occurred_at: Some(timestamp_to_proto(touchpoint.occurred_at)),
            }),
        );
        self.outbox.enqueue(&transaction, &event).await?;
        transaction.commit().await?;
        self.outbox.committed();
        Ok((touchpoint, false))
    }

    /// A profile's touchpoints, newest first.
    pub async fn timeline(&self, profile_ids: &[String], limit: u64) -> Result<Vec<Touchpoint>> {
        touchpoint::Entity::find()
            .filter(touchpoint::Column::ProfileId.is_in(profile_ids.to_vec()))
            .order_by_desc(touchpoint::Column::OccurredAt)
            .order_by_desc(touchpoint::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(to_domain)
            .collect()
    }

    /// Deletes everything held about `profile_ids`, once per erasure event.
    pub async fn erase(&self, event_id: &str, profile_ids: &[String]) -> Result<u64> {
        let transaction = self.db.begin().await?;
        if !self.inbox.first_delivery(&transaction, event_id).await? {
            return Ok(0);
        }
        let deleted = touchpoint::Entity::delete_many()
            .filter(touchpoint::Column::ProfileId.is_in(profile_ids.to_vec()))
            .exec(&transaction)
            .await?
            .rows_affected;
        transaction.commit().await?;
        Ok(deleted)
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

//! Segments: static ones with explicit members, and dynamic ones whose CEL
//! rule is evaluated over a profile's attributes, consents and reported
//! facts whenever one of them changes, publishing `profile.segment_entered`
//! and `profile.segment_left`.

use cairn_runtime::storage::BeginWrite;
use std::collections::BTreeMap;

use cairn_contract::events::v1::SegmentMembershipChanged;
use cairn_contract::events::v1::change_event::Payload;
use cairn_runtime::rules::Rule;
use cairn_runtime::{Error, Result, outbox};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::entity::{fact, profile, segment, segment_member};
use super::{ProfileStore, SOURCE, live_row, parse_id};
use crate::domain::Attributes;

/// The variables a segment rule may name.
pub const SEGMENT_VARIABLES: &[&str] = &["attributes", "consents", "facts", "groups"];

/// A segment as stored.
#[derive(Debug, Clone)]
pub struct SegmentRecord {
    /// Its id.
    pub id: String,
    /// A name for people.
    pub display_name: String,
    /// What it is for.
    pub description: String,
    /// The rule of a dynamic segment.
    pub rule: Option<Rule>,
    /// Members now.
    pub member_count: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl ProfileStore {
    /// Creates a segment and, for a dynamic one, computes its members.
    pub async fn create_segment(
        &self,
        id: &str,
        display_name: &str,
        description: &str,
        rule: Option<Rule>,
    ) -> Result<SegmentRecord> {
        let inserted = segment::ActiveModel {
            id: Set(id.to_string()),
            display_name: Set(display_name.to_string()),
            description: Set(description.to_string()),
            rule: Set(rule.as_ref().map(|r| r.source().to_string())),
            created_at: Set(Utc::now()),
        }
        .insert(&self.db)
        .await;
        if let Err(error) = inserted {
            return Err(if super::unique_violation(&error) {
                Error::AlreadyExists(format!("segment {id} exists already"))
            } else {
                error.into()
            });
        }
        if rule.is_some() {
            self.recompute_segment(id).await?;
        }
        self.segment(id).await
    }

    /// The segment `id`.
    pub async fn segment(&self, id: &str) -> Result<SegmentRecord> {
        let row = segment::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("segment", id))?;
        self.to_record(row).await
    }

    /// Segments in id order after `after`.
    pub async fn segments(
        &self,
        limit: u64,
        after: Option<String>,
    ) -> Result<(Vec<SegmentRecord>, Option<String>)> {
        let mut query = segment::Entity::find()
            .order_by_asc(segment::Column::Id)
            .limit(limit + 1);
        if let Some(after) = after {
            query = query.filter(segment::Column::Id.gt(after));
        }
        let mut rows = query.all(&self.db).await?;
        let next = (rows.len() as u64 > limit).then(|| {
            rows.truncate(limit as usize);
            rows.last().map(|row| row.id.clone())
        });
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            records.push(self.to_record(row).await?);
        }
        Ok((records, next.flatten()))
    }

    /// Changes a segment's name, description or rule, and recomputes a
    /// dynamic segment's members.
    pub async fn update_segment(
        &self,
        id: &str,
        display_name: Option<&str>,
        description: Option<&str>,
        rule: Option<Option<Rule>>,
    ) -> Result<SegmentRecord> {
        let existing = self.segment(id).await?;
        let becomes_dynamic = match &rule {
            Some(new) => new.is_some(),
            None => existing.rule.is_some(),
        };
        segment::ActiveModel {
            id: Set(id.to_string()),
            display_name: Set(display_name.unwrap_or(&existing.display_name).to_string()),
            description: Set(description.unwrap_or(&existing.description).to_string()),
            rule: Set(match rule {
                Some(new) => new.map(|r| r.source().to_string()),
                None => existing.rule.as_ref().map(|r| r.source().to_string()),
            }),
            created_at: Set(existing.created_at),
        }
        .update(&self.db)
        .await?;
        if becomes_dynamic {
            self.recompute_segment(id).await?;
        }
        self.segment(id).await
    }

    /// Deletes segment `id` and its memberships.
    pub async fn delete_segment(&self, id: &str) -> Result<()> {
        let transaction = self.db.begin_write().await?;
        let deleted = segment::Entity::delete_by_id(id.to_string())
            .exec(&transaction)
            .await?;
        if deleted.rows_affected == 0 {
            return Err(Error::not_found("segment", id));
        }
        segment_member::Entity::delete_many()
            .filter(segment_member::Column::SegmentId.eq(id))
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Adds and removes members of static segment `id`.
    pub async fn update_static_members(
        &self,
        id: &str,
        add: &[Uuid],
        remove: &[Uuid],
    ) -> Result<SegmentRecord> {
        let record = self.segment(id).await?;
        if record.rule.is_some() {
            return Err(Error::FailedPrecondition(format!(
                "segment {id} is dynamic: its rule decides its members"
            )));
        }
        let transaction = self.db.begin_write().await?;
        for profile in add {
            let live = live_row(&transaction, *profile).await?;
            set_membership(&transaction, &self.outbox, id, &live.id, true).await?;
        }
        for profile in remove {
            set_membership(&transaction, &self.outbox, id, &profile.to_string(), false).await?;
        }
        transaction.commit().await?;
        self.outbox.committed();
        self.segment(id).await
    }

    /// Members of segment `id` in profile id order after `after`.
    pub async fn segment_members(
        &self,
        id: &str,
        limit: u64,
        after: Option<String>,
    ) -> Result<(Vec<String>, Option<String>)> {
        self.segment(id).await?;
        let mut query = segment_member::Entity::find()
            .filter(segment_member::Column::SegmentId.eq(id))
            .order_by_asc(segment_member::Column::ProfileId)
            .limit(limit + 1);
        if let Some(after) = after {
            query = query.filter(segment_member::Column::ProfileId.gt(after));
        }
        let mut members: Vec<String> = query
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| row.profile_id)
            .collect();
        let next = (members.len() as u64 > limit).then(|| {
            members.truncate(limit as usize);
            members.last().cloned()
        });
        Ok((members, next.flatten()))
    }

    /// The segments profile `id` is in.
    pub async fn profile_segments(&self, id: Uuid) -> Result<Vec<String>> {
        let live = live_row(&self.db, id).await?;
        Ok(segment_member::Entity::find()
            .filter(segment_member::Column::ProfileId.eq(live.id))
            .order_by_asc(segment_member::Column::SegmentId)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| row.segment_id)
            .collect())
    }

    /// Merges `facts` into profile `id`'s reported facts and re-evaluates
    /// its dynamic segments; returns its segments.
    pub async fn report_facts(&self, id: Uuid, facts: &Attributes) -> Result<Vec<String>> {
        let live = live_row(&self.db, id).await?;
        let mut current: Attributes = match fact::Entity::find_by_id(live.id.clone())
            .one(&self.db)
            .await?
        {
            Some(row) => serde_json::from_value(row.facts).map_err(Error::internal)?,
            None => Attributes::new(),
        };
        current.extend(facts.clone());
        fact::Entity::insert(fact::ActiveModel {
            profile_id: Set(live.id.clone()),
            facts: Set(serde_json::to_value(&current).map_err(Error::internal)?),
            updated_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::column(fact::Column::ProfileId)
                .update_columns([fact::Column::Facts, fact::Column::UpdatedAt])
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        let profile = parse_id(&live.id)?;
        self.refresh_segments(profile).await?;
        self.profile_segments(profile).await
    }

    /// Re-evaluates every dynamic segment for profile `id`, after a change
    /// of its attributes, consents or facts.
    pub async fn refresh_segments(&self, id: Uuid) -> Result<()> {
        let dynamic = dynamic_segments(&self.db).await?;
        if dynamic.is_empty() {
            return Ok(());
        }
        let live = live_row(&self.db, id).await?;
        let variables = self.variables_of(&live).await?;
        let transaction = self.db.begin_write().await?;
        for (segment_id, rule) in &dynamic {
            let member = rule.evaluate(&variables).unwrap_or(false);
            set_membership(&transaction, &self.outbox, segment_id, &live.id, member).await?;
        }
        transaction.commit().await?;
        self.outbox.committed();
        Ok(())
    }

    /// [`Self::refresh_segments`] after a committed change: a failure is
    /// logged, not returned, since the change itself stands (the next change
    /// or a segment update evaluates the profile again).
    pub(crate) async fn refresh_after_change(&self, id: Uuid) {
        if let Err(error) = self.refresh_segments(id).await {
            tracing::warn!(profile_id = %id, %error, "re-evaluating dynamic segments failed");
        }
    }

    /// [`Self::refresh_after_change`] for profiles just created together
    /// (a batch resolve): nothing to do, in one query, when no dynamic
    /// segment exists.
    pub(crate) async fn refresh_after_creation(&self, ids: &[Uuid]) {
        if ids.is_empty() {
            return;
        }
        match dynamic_segments(&self.db).await {
            Ok(dynamic) if dynamic.is_empty() => {}
            Ok(_) => {
                for id in ids {
                    self.refresh_after_change(*id).await;
                }
            }
            Err(error) => {
                tracing::warn!(profiles = ids.len(), %error, "re-evaluating dynamic segments failed");
            }
        }
    }

    /// Evaluates dynamic segment `id` over every live profile.
    async fn recompute_segment(&self, id: &str) -> Result<()> {
        let Some((_, rule)) = dynamic_segments(&self.db)
            .await?
            .into_iter()
            .find(|(segment, _)| segment == id)
        else {
            return Ok(());
        };
        let mut pages = profile::Entity::find()
            .filter(profile::Column::MergedInto.is_null())
            .order_by_asc(profile::Column::Id)
            .paginate(&self.db, 500);
        while let Some(rows) = pages.fetch_and_next().await? {
            let transaction = self.db.begin_write().await?;
            for row in rows {
                let variables = self.variables_of(&row).await?;
                let member = rule.evaluate(&variables).unwrap_or(false);
                set_membership(&transaction, &self.outbox, id, &row.id, member).await?;
            }
            transaction.commit().await?;
        }
        self.outbox.committed();
        Ok(())
    }

    async fn variables_of(
        &self,
        row: &profile::Model,
    ) -> Result<serde_json::Map<String, serde_json::Value>> {
        let attributes: Attributes =
            serde_json::from_value(row.attributes.clone()).map_err(Error::internal)?;
        let facts: Attributes = match fact::Entity::find_by_id(row.id.clone())
            .one(&self.db)
            .await?
        {
            Some(found) => serde_json::from_value(found.facts).map_err(Error::internal)?,
            None => Attributes::new(),
        };
        let (current, _) = self.consents(parse_id(&row.id)?).await?;
        let now = Utc::now();
        let consents: serde_json::Map<String, serde_json::Value> = current
            .iter()
            .map(|answer| {
                let channel = cairn_contract::common::v1::Channel::try_from(answer.channel)
                    .map(|c| c.as_str_name().to_string())
                    .unwrap_or_default();
                let in_force =
                    answer.granted && answer.expires_at.is_none_or(|expiry| expiry > now);
                (
                    format!("{}:{channel}", answer.purpose.as_str()),
                    serde_json::Value::Bool(in_force),
                )
            })
            .collect();
        let groups: Vec<serde_json::Value> = super::groups::memberships_of(&self.db, &row.id)
            .await?
            .into_iter()
            .map(|(group_id, group_type, role)| serde_json::json!({"id": group_id, "type": group_type, "role": role}))
            .collect();
        let mut variables = serde_json::Map::new();
        variables.insert("groups".into(), serde_json::Value::Array(groups));
        variables.insert("attributes".into(), plain(&attributes));
        variables.insert("facts".into(), plain(&facts));
        variables.insert("consents".into(), serde_json::Value::Object(consents));
        Ok(variables)
    }

    async fn to_record(&self, row: segment::Model) -> Result<SegmentRecord> {
        let member_count = segment_member::Entity::find()
            .filter(segment_member::Column::SegmentId.eq(row.id.clone()))
            .count(&self.db)
            .await?;
        let rule = match &row.rule {
            Some(source) => Some(Rule::compile("rule", source, SEGMENT_VARIABLES)?),
            None => None,
        };
        Ok(SegmentRecord {
            id: row.id,
            display_name: row.display_name,
            description: row.description,
            rule,
            member_count,
            created_at: row.created_at,
        })
    }
}

/// Attribute maps as plain JSON values, the way rules see them.
fn plain(attributes: &Attributes) -> serde_json::Value {
    serde_json::Value::Object(
        attributes
            .iter()
            .map(|(name, value)| (name.clone(), value.to_rule_value()))
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect(),
    )
}

async fn dynamic_segments(db: &impl ConnectionTrait) -> Result<Vec<(String, Rule)>> {
    let rows = segment::Entity::find()
        .filter(segment::Column::Rule.is_not_null())
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let rule = Rule::compile("rule", row.rule.as_deref()?, SEGMENT_VARIABLES).ok()?;
            Some((row.id, rule))
        })
        .collect())
}

/// Puts `profile` in or out of `segment`, publishing the change when there is one.
async fn set_membership(
    db: &impl ConnectionTrait,
    outbox: &cairn_runtime::outbox::Outbox,
    segment_id: &str,
    profile_id: &str,
    member: bool,
) -> Result<()> {
    let changed = if member {
        segment_member::Entity::insert(segment_member::ActiveModel {
            segment_id: Set(segment_id.to_string()),
            profile_id: Set(profile_id.to_string()),
            joined_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::columns([
                segment_member::Column::SegmentId,
                segment_member::Column::ProfileId,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?
            > 0
    } else {
        segment_member::Entity::delete_many()
            .filter(segment_member::Column::SegmentId.eq(segment_id))
            .filter(segment_member::Column::ProfileId.eq(profile_id))
            .exec(db)
            .await?
            .rows_affected
            > 0
    };
    if changed {
        let change = SegmentMembershipChanged {
            segment_id: segment_id.to_string(),
        };
        let (topic, payload) = if member {
            ("profile.segment_entered", Payload::SegmentEntered(change))
        } else {
            ("profile.segment_left", Payload::SegmentLeft(change))
        };
        outbox
            .enqueue(db, &outbox::event(SOURCE, topic, profile_id, payload))
            .await?;
    }
    Ok(())
}

/// Deletes the memberships and facts of `profiles` (erasure).
pub(crate) async fn erase_segments(db: &impl ConnectionTrait, profiles: &[String]) -> Result<()> {
    segment_member::Entity::delete_many()
        .filter(segment_member::Column::ProfileId.is_in(profiles.to_vec()))
        .exec(db)
        .await?;
    fact::Entity::delete_many()
        .filter(fact::Column::ProfileId.is_in(profiles.to_vec()))
        .exec(db)
        .await?;
    Ok(())
}

/// Gives `survivor` every segment membership of `merged` (a merge).
pub(crate) async fn carry_memberships(
    db: &impl ConnectionTrait,
    outbox: &cairn_runtime::outbox::Outbox,
    survivor: &str,
    merged: &str,
) -> Result<()> {
    let memberships = segment_member::Entity::find()
        .filter(segment_member::Column::ProfileId.eq(merged))
        .all(db)
        .await?;
    for membership in memberships {
        set_membership(db, outbox, &membership.segment_id, survivor, true).await?;
        set_membership(db, outbox, &membership.segment_id, merged, false).await?;
    }
    Ok(())
}

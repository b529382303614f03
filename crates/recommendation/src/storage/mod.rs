//! The recommendation service's storage in its database: the catalogue,
//! the contact policy, policies, the decision log with outcomes, what
//! events told the service, idempotency keys, and the model's statistics
//! (see [`model`]).

mod entity;
pub mod migration;
pub mod model;

use cairn_runtime::storage::BeginWrite;
use std::collections::{BTreeMap, HashMap};

use cairn_contract::events::v1::DecisionOutcome;
use cairn_contract::events::v1::change_event::Payload;
use cairn_contract::recommendation::v1 as pb;
use cairn_runtime::inbox::Inbox;
use cairn_runtime::outbox::{self, Outbox};
use cairn_runtime::{Error, Result};
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait, LockType, OnConflict};
use sea_orm::{Condition, DatabaseConnection, DatabaseTransaction, QueryOrder, QuerySelect, Set};
use uuid::Uuid;

use self::entity::*;
use crate::domain::action::{Action, ActionState};
use crate::domain::bandit::Scorer;
use crate::domain::contact::ContactPolicy;
use crate::domain::decision::{
    ChosenAction, DEFAULT_POLICY, Decision, LoggedCandidate, Outcome, Policy, PolicyState,
    ShadowChoice,
};
use crate::domain::features::{DecisionContext, Features};

const SOURCE: &str = "recommendation";

/// What replicas cache, by the name of its version counter.
pub const CATALOGUE: &str = "catalogue";
/// The contact policy's version counter.
pub const CONTACT_POLICY: &str = "contact_policy";
/// The policies' version counter.
pub const POLICIES: &str = "policies";

/// An idempotency key of a request: its scope and id, a fingerprint of the
/// request's content, and the profile it concerns (for erasure).
#[derive(Debug, Clone)]
pub struct RequestKey {
    /// "<method>:<request id>".
    pub key: String,
    /// Hash of the request's content.
    pub fingerprint: String,
    /// The profile it concerns, or empty.
    pub profile_id: String,
}

/// The result of an idempotent write: done now, or the first answer again.
pub enum Idempotent<T> {
    /// Carried out by this call.
    Fresh(T),
    /// Carried out before; the encoded first answer.
    Replay(Vec<u8>),
}

/// Filters of ListDecisions.
#[derive(Debug, Clone, Default)]
pub struct DecisionFilter {
    /// Only these customers (a profile and those merged into it).
    pub customer_id: Option<Uuid>,
    /// Only this channel.
    pub channel: Option<i32>,
    /// Only decisions that chose this action.
    pub action_id: Option<String>,
    /// Only this live policy.
    pub policy_id: Option<String>,
    /// Only decisions with a chosen action whose latest outcome is this.
    pub outcome: Option<i32>,
    /// From.
    pub start: Option<DateTime<Utc>>,
    /// Before.
    pub end: Option<DateTime<Utc>>,
}

/// The state of one chosen action of a decision, for RecordOutcome.
#[derive(Debug, Clone)]
pub struct ChosenState {
    /// The decision's channel.
    pub channel: i32,
    /// When the decision was made.
    pub decide_time: DateTime<Utc>,
    /// Until when outcomes are accepted.
    pub expire_time: DateTime<Utc>,
    /// The decision's profile, if known.
    pub profile_id: Option<Uuid>,
    /// The chosen action as it was.
    pub chosen: ChosenAction,
}

/// Counts of one action's decisions and outcomes in the log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActionCounts {
    /// Live decisions that chose it.
    pub chosen: i64,
    /// Outcomes by `OutcomeType` number.
    pub outcomes: BTreeMap<i32, i64>,
    /// Mean logged propensity.
    pub mean_propensity: f64,
}

/// The service's tables.
#[derive(Clone)]
pub struct RecommendationStore {
    db: DatabaseConnection,
    outbox: Outbox,
    inbox: Inbox,
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(Error::internal)
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value).map_err(Error::internal)
}

fn action_from_row(row: action::Model) -> Result<Action> {
    from_json(row.body)
}

fn policy_from_row(row: policy::Model) -> Result<Policy> {
    Ok(Policy {
        id: row.policy_id,
        display_name: row.display_name,
        description: row.description,
        scorer: from_json::<Scorer>(row.scorer)?,
        state: PolicyState::parse(&row.state)
            .ok_or_else(|| Error::internal(format!("unknown policy state {}", row.state)))?,
        create_time: row.create_time,
        promote_time: row.promote_time,
        retire_time: row.retire_time,
    })
}

fn outcome_from_row(row: outcome::Model) -> Result<Outcome> {
    Ok(Outcome {
        decision_id: Uuid::parse_str(&row.decision_id).map_err(Error::internal)?,
        action_id: row.action_id,
        kind: row.outcome,
        channel: row.channel,
        occur_time: row.occur_time,
        record_time: row.record_time,
        source: row.source,
    })
}

fn optional_uuid(text: &str) -> Option<Uuid> {
    Uuid::parse_str(text).ok()
}

/// True for final outcome types (accepted, declined, ignored).
pub fn is_final(outcome: i32) -> bool {
    outcome == pb::OutcomeType::Accepted as i32
        || outcome == pb::OutcomeType::Declined as i32
        || outcome == pb::OutcomeType::Ignored as i32
}

/// The name an outcome type has on the bus.
fn outcome_name(outcome: i32) -> &'static str {
    match pb::OutcomeType::try_from(outcome) {
        Ok(pb::OutcomeType::Shown) => "shown",
        Ok(pb::OutcomeType::Accepted) => "accepted",
        Ok(pb::OutcomeType::Declined) => "declined",
        Ok(pb::OutcomeType::Ignored) => "ignored",
        _ => "unknown",
    }
}

impl RecommendationStore {
    /// A store on `db`.
    pub fn new(db: DatabaseConnection, outbox: Outbox, inbox: Inbox) -> Self {
        Self { db, outbox, inbox }
    }

    /// The database.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Creates what the service needs on first start: the initial contact
    /// policy, the default live policy, the model row and version counters.
    pub async fn ensure_defaults(&self) -> Result<()> {
        let now = Utc::now();
        let policy = ContactPolicy::initial(now);
        contact_policy::Entity::insert(contact_policy::ActiveModel {
            id: Set(1),
            body: Set(to_json(&policy)?),
            version: Set(policy.version),
        })
        .on_conflict(
            OnConflict::column(contact_policy::Column::Id)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        policy::Entity::insert(policy::ActiveModel {
            policy_id: Set(DEFAULT_POLICY.into()),
            display_name: Set("Default: linear Thompson sampling".into()),
            description: Set(
                "The policy the server starts with: linear Thompson sampling with exploration 1."
                    .into(),
            ),
            scorer: Set(to_json(&Scorer::default_live())?),
            state: Set(PolicyState::Live.as_str().into()),
            create_time: Set(now),
            promote_time: Set(Some(now)),
            retire_time: Set(None),
        })
        .on_conflict(
            OnConflict::column(policy::Column::PolicyId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        entity::model::Entity::insert(entity::model::ActiveModel {
            id: Set(1),
            version: Set(0),
            features: Set(serde_json::json!([])),
            outcomes_learned: Set(0),
            update_time: Set(None),
        })
        .on_conflict(
            OnConflict::column(entity::model::Column::Id)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        for name in [CATALOGUE, CONTACT_POLICY, POLICIES] {
            version::Entity::insert(version::ActiveModel {
                name: Set(name.into()),
                version: Set(1),
            })
            .on_conflict(
                OnConflict::column(version::Column::Name)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        }
        Ok(())
    }

    /// The version of each cached thing, by name.
    pub async fn versions(&self) -> Result<HashMap<String, i64>> {
        Ok(version::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| (row.name, row.version))
            .collect())
    }

    async fn bump(&self, transaction: &DatabaseTransaction, name: &str) -> Result<()> {
        version::Entity::update_many()
            .col_expr(
                version::Column::Version,
                Expr::col(version::Column::Version).add(1),
            )
            .filter(version::Column::Name.eq(name))
            .exec(transaction)
            .await?;
        Ok(())
    }

    // ----- idempotency ---------------------------------------------------

    /// Claims `key` inside `transaction`: true when this call is the first
    /// (go ahead), false when another call holds or held it.
    async fn claim(&self, transaction: &DatabaseTransaction, key: &RequestKey) -> Result<bool> {
        let inserted = idempotency::Entity::insert(idempotency::ActiveModel {
            request_key: Set(key.key.clone()),
            fingerprint: Set(key.fingerprint.clone()),
            response: Set(Vec::new()),
            profile_id: Set(key.profile_id.clone()),
            create_time: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::column(idempotency::Column::RequestKey)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(transaction)
        .await?;
        Ok(inserted == 1)
    }

    async fn answer(
        &self,
        transaction: &DatabaseTransaction,
        key: &RequestKey,
        response: Vec<u8>,
    ) -> Result<()> {
        idempotency::Entity::update_many()
            .col_expr(idempotency::Column::Response, Expr::value(response))
            .filter(idempotency::Column::RequestKey.eq(key.key.clone()))
            .exec(transaction)
            .await?;
        Ok(())
    }

    /// The first answer to `key`, if the request was seen: ALREADY_EXISTS
    /// when it was seen with different content.
    pub async fn replay(&self, key: &RequestKey) -> Result<Option<Vec<u8>>> {
        let Some(row) = idempotency::Entity::find_by_id(key.key.clone())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        if row.fingerprint != key.fingerprint {
            return Err(Error::AlreadyExists(
                "request_id was used before with a different request".into(),
            ));
        }
        if row.response.is_empty() {
            return Err(Error::Aborted(
                "a call with this request_id is still in progress; retry".into(),
            ));
        }
        Ok(Some(row.response))
    }

    /// Stores a standalone answer under `key` (ReserveContact): false when
    /// another call stored one first.
    pub async fn remember(&self, key: &RequestKey, response: Vec<u8>) -> Result<bool> {
        let inserted = idempotency::Entity::insert(idempotency::ActiveModel {
            request_key: Set(key.key.clone()),
            fingerprint: Set(key.fingerprint.clone()),
            response: Set(response),
            profile_id: Set(key.profile_id.clone()),
            create_time: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::column(idempotency::Column::RequestKey)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        Ok(inserted == 1)
    }

    // ----- catalogue -----------------------------------------------------

    /// Stores a new action; ALREADY_EXISTS when its id is taken.
    pub async fn create_action(
        &self,
        action: Action,
        key: Option<&RequestKey>,
        encode: impl FnOnce(&Action) -> Vec<u8>,
    ) -> Result<Idempotent<Action>> {
        let transaction = self.db.begin_write().await?;
        if let Some(key) = key
            && !self.claim(&transaction, key).await?
        {
            drop(transaction);
            return self
                .replay(key)
                .await?
                .map(Idempotent::Replay)
                .ok_or_else(|| Error::Aborted("retry".into()));
        }
        let inserted = action::Entity::insert(action::ActiveModel {
            action_id: Set(action.id.clone()),
            kind: Set(action.kind.as_str().into()),
            state: Set("active".into()),
            channels: Set(to_json(&action.channels)?),
            body: Set(to_json(&action)?),
            create_time: Set(action.create_time),
            version: Set(action.version),
        })
        .on_conflict(
            OnConflict::column(action::Column::ActionId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&transaction)
        .await?;
        if inserted == 0 {
            return Err(Error::AlreadyExists(format!(
                "action {} exists (retired actions keep their ids)",
                action.id
            )));
        }
        if let Some(key) = key {
            self.answer(&transaction, key, encode(&action)).await?;
        }
        self.bump(&transaction, CATALOGUE).await?;
        transaction.commit().await?;
        Ok(Idempotent::Fresh(action))
    }

    /// The action `id`, if any.
    pub async fn action(&self, id: &str) -> Result<Option<Action>> {
        action::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
            .map(action_from_row)
            .transpose()
    }

    /// Every action, in catalogue order (oldest first).
    pub async fn all_actions(&self) -> Result<Vec<Action>> {
        action::Entity::find()
            .order_by_asc(action::Column::CreateTime)
            .order_by_asc(action::Column::ActionId)
            .all(&self.db)
            .await?
            .into_iter()
            .map(action_from_row)
            .collect()
    }

    /// A page of actions, oldest first, after `after` ("<rfc3339>|<id>").
    pub async fn list_actions(
        &self,
        kind: Option<&str>,
        state: Option<&str>,
        channel: Option<i32>,
        after: Option<String>,
        limit: u64,
    ) -> Result<(Vec<Action>, Option<String>)> {
        let mut query = action::Entity::find()
            .order_by_asc(action::Column::CreateTime)
            .order_by_asc(action::Column::ActionId);
        if let Some(kind) = kind {
            query = query.filter(action::Column::Kind.eq(kind));
        }
        if let Some(state) = state {
            query = query.filter(action::Column::State.eq(state));
        }
        if let Some(after) = after {
            let invalid = || Error::invalid("page_token", "not a token of this listing");
            let (time, id) = after.split_once('|').ok_or_else(invalid)?;
            let time = DateTime::parse_from_rfc3339(time)
                .map_err(|_| invalid())?
                .with_timezone(&Utc);
            query = query.filter(
                Condition::any()
                    .add(action::Column::CreateTime.gt(time))
                    .add(
                        Condition::all()
                            .add(action::Column::CreateTime.eq(time))
                            .add(action::Column::ActionId.gt(id.to_string())),
                    ),
            );
        }
        let mut actions = Vec::new();
        for row in query.all(&self.db).await? {
            let action = action_from_row(row)?;
            if channel.is_none_or(|channel| action.channels.contains(&channel)) {
                actions.push(action);
                if actions.len() as u64 > limit {
                    break;
                }
            }
        }
        let next = if actions.len() as u64 > limit {
            actions.truncate(limit as usize);
            actions
                .last()
                .map(|action| format!("{}|{}", action.create_time.to_rfc3339(), action.id))
        } else {
            None
        };
        Ok((actions, next))
    }

    /// Applies `change` to the stored action `id` under a row lock:
    /// NOT_FOUND, FAILED_PRECONDITION when retired (unless `allow_retired`),
    /// ABORTED when `expected_version` no longer matches.
    pub async fn change_action(
        &self,
        id: &str,
        expected_version: Option<i64>,
        allow_retired: bool,
        change: impl FnOnce(&mut Action) -> Result<bool>,
    ) -> Result<Action> {
        let transaction = self.db.begin_write().await?;
        // Concurrent changes of one action take turns on its row lock.
        let row = action::Entity::find_by_id(id.to_string())
            .lock(LockType::Update)
            .one(&transaction)
            .await?;
        let Some(row) = row else {
            transaction.rollback().await?;
            return Err(Error::not_found("action", id));
        };
        let mut action = action_from_row(row)?;
        // Every early return releases the row lock at once (a dropped
        // transaction would hold it until its rollback runs).
        if action.state == ActionState::Retired && !allow_retired {
            transaction.rollback().await?;
            return Err(Error::FailedPrecondition(format!(
                "action {id} is retired and cannot change"
            )));
        }
        if let Some(expected) = expected_version
            && expected != action.version
        {
            transaction.rollback().await?;
            return Err(Error::Aborted(format!(
                "action {id} changed since its etag was read; read it again"
            )));
        }
        let changed = match change(&mut action) {
            Ok(changed) => changed,
            Err(error) => {
                transaction.rollback().await?;
                return Err(error);
            }
        };
        if !changed {
            transaction.rollback().await?;
            return Ok(action);
        }
        action.version += 1;
        action.update_time = Utc::now();
        action::Entity::update(action::ActiveModel {
            action_id: Set(action.id.clone()),
            kind: Set(action.kind.as_str().into()),
            state: Set(match action.state {
                ActionState::Active => "active".into(),
                ActionState::Retired => "retired".into(),
            }),
            channels: Set(to_json(&action.channels)?),
            body: Set(to_json(&action)?),
            create_time: Set(action.create_time),
            version: Set(action.version),
        })
        .exec(&transaction)
        .await?;
        self.bump(&transaction, CATALOGUE).await?;
        transaction.commit().await?;
        Ok(action)
    }

    // ----- contact policy ------------------------------------------------

    /// The contact policy.
    pub async fn contact_policy(&self) -> Result<ContactPolicy> {
        let row = contact_policy::Entity::find_by_id(1)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::internal("the contact policy row is missing"))?;
        from_json(row.body)
    }

    /// Replaces the contact policy: ABORTED when `expected_version` no
    /// longer matches.
    pub async fn update_contact_policy(
        &self,
        expected_version: Option<i64>,
        change: impl FnOnce(&mut ContactPolicy),
    ) -> Result<ContactPolicy> {
        let transaction = self.db.begin_write().await?;
        let row = contact_policy::Entity::find_by_id(1)
            .lock(LockType::Update)
            .one(&transaction)
            .await?
            .ok_or_else(|| Error::internal("the contact policy row is missing"))?;
        let mut policy: ContactPolicy = from_json(row.body)?;
        if let Some(expected) = expected_version
            && expected != policy.version
        {
            transaction.rollback().await?;
            return Err(Error::Aborted(
                "the contact policy changed since its etag was read; read it again".into(),
            ));
        }
        change(&mut policy);
        policy.version += 1;
        policy.update_time = Utc::now();
        contact_policy::Entity::update(contact_policy::ActiveModel {
            id: Set(1),
            body: Set(to_json(&policy)?),
            version: Set(policy.version),
        })
        .exec(&transaction)
        .await?;
        self.bump(&transaction, CONTACT_POLICY).await?;
        transaction.commit().await?;
        Ok(policy)
    }

    // ----- policies ------------------------------------------------------

    /// Every policy, newest first.
    pub async fn policies(&self) -> Result<Vec<Policy>> {
        policy::Entity::find()
            .order_by_desc(policy::Column::CreateTime)
            .order_by_desc(policy::Column::PolicyId)
            .all(&self.db)
            .await?
            .into_iter()
            .map(policy_from_row)
            .collect()
    }

    /// The policy `id`, if any.
    pub async fn policy(&self, id: &str) -> Result<Option<Policy>> {
        policy::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
            .map(policy_from_row)
            .transpose()
    }

    /// Stores a new shadow policy: ALREADY_EXISTS when the id is taken,
    /// FAILED_PRECONDITION when `max_shadows` already run.
    pub async fn create_policy(
        &self,
        policy: Policy,
        max_shadows: usize,
        key: Option<&RequestKey>,
        encode: impl FnOnce(&Policy) -> Vec<u8>,
    ) -> Result<Idempotent<Policy>> {
        let transaction = self.db.begin_write().await?;
        if let Some(key) = key
            && !self.claim(&transaction, key).await?
        {
            drop(transaction);
            return self
                .replay(key)
                .await?
                .map(Idempotent::Replay)
                .ok_or_else(|| Error::Aborted("retry".into()));
        }
        // Serialise policy changes on the policies' version row.
        version::Entity::find_by_id(POLICIES.to_string())
            .lock(LockType::Update)
            .one(&transaction)
            .await?;
        let shadows = policy::Entity::find()
            .filter(policy::Column::State.eq(PolicyState::Shadow.as_str()))
            .count(&transaction)
            .await?;
        if shadows as usize >= max_shadows {
            transaction.rollback().await?;
            return Err(Error::FailedPrecondition(format!(
                "{max_shadows} shadow policies already run; retire one first"
            )));
        }
        let inserted = policy::Entity::insert(policy::ActiveModel {
            policy_id: Set(policy.id.clone()),
            display_name: Set(policy.display_name.clone()),
            description: Set(policy.description.clone()),
            scorer: Set(to_json(&policy.scorer)?),
            state: Set(policy.state.as_str().into()),
            create_time: Set(policy.create_time),
            promote_time: Set(None),
            retire_time: Set(None),
        })
        .on_conflict(
            OnConflict::column(policy::Column::PolicyId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&transaction)
        .await?;
        if inserted == 0 {
            return Err(Error::AlreadyExists(format!("policy {} exists", policy.id)));
        }
        if let Some(key) = key {
            self.answer(&transaction, key, encode(&policy)).await?;
        }
        self.bump(&transaction, POLICIES).await?;
        transaction.commit().await?;
        Ok(Idempotent::Fresh(policy))
    }

    /// Makes `id` live and retires the live one; returns (new live,
    /// previous live when it changed).
    pub async fn promote_policy(
        &self,
        id: &str,
        expected_live: Option<&str>,
    ) -> Result<(Policy, Option<Policy>)> {
        let transaction = self.db.begin_write().await?;
        version::Entity::find_by_id(POLICIES.to_string())
            .lock(LockType::Update)
            .one(&transaction)
            .await?;
        let target = policy::Entity::find_by_id(id.to_string())
            .one(&transaction)
            .await?
            .map(policy_from_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("policy", id))?;
        let live = policy::Entity::find()
            .filter(policy::Column::State.eq(PolicyState::Live.as_str()))
            .one(&transaction)
            .await?
            .map(policy_from_row)
            .transpose()?;
        if let (Some(expected), Some(live)) = (expected_live, &live)
            && expected != live.id
        {
            transaction.rollback().await?;
            return Err(Error::Aborted(format!(
                "policy {} is live, not {expected}",
                live.id
            )));
        }
        match target.state {
            PolicyState::Live => {
                transaction.rollback().await?;
                return Ok((target, None));
            }
            PolicyState::Retired => {
                transaction.rollback().await?;
                return Err(Error::FailedPrecondition(format!(
                    "policy {id} is retired and cannot become live"
                )));
            }
            PolicyState::Shadow => {}
        }
        let now = Utc::now();
        let mut previous = None;
        if let Some(mut live) = live {
            policy::Entity::update_many()
                .col_expr(
                    policy::Column::State,
                    Expr::value(PolicyState::Retired.as_str()),
                )
                .col_expr(policy::Column::RetireTime, Expr::value(now))
                .filter(policy::Column::PolicyId.eq(live.id.clone()))
                .exec(&transaction)
                .await?;
            live.state = PolicyState::Retired;
            live.retire_time = Some(now);
            previous = Some(live);
        }
        policy::Entity::update_many()
            .col_expr(
                policy::Column::State,
                Expr::value(PolicyState::Live.as_str()),
            )
            .col_expr(policy::Column::PromoteTime, Expr::value(now))
            .filter(policy::Column::PolicyId.eq(id))
            .exec(&transaction)
            .await?;
        self.bump(&transaction, POLICIES).await?;
        transaction.commit().await?;
        let mut target = target;
        target.state = PolicyState::Live;
        target.promote_time = Some(now);
        Ok((target, previous))
    }

    /// Retires a shadow policy; FAILED_PRECONDITION for the live one.
    pub async fn retire_policy(&self, id: &str) -> Result<Policy> {
        let transaction = self.db.begin_write().await?;
        version::Entity::find_by_id(POLICIES.to_string())
            .lock(LockType::Update)
            .one(&transaction)
            .await?;
        let mut target = policy::Entity::find_by_id(id.to_string())
            .one(&transaction)
            .await?
            .map(policy_from_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("policy", id))?;
        match target.state {
            PolicyState::Retired => {
                transaction.rollback().await?;
                return Ok(target);
            }
            PolicyState::Live => {
                transaction.rollback().await?;
                return Err(Error::FailedPrecondition(format!(
                    "policy {id} is live; promote another policy instead"
                )));
            }
            PolicyState::Shadow => {}
        }
        let now = Utc::now();
        policy::Entity::update_many()
            .col_expr(
                policy::Column::State,
                Expr::value(PolicyState::Retired.as_str()),
            )
            .col_expr(policy::Column::RetireTime, Expr::value(now))
            .filter(policy::Column::PolicyId.eq(id))
            .exec(&transaction)
            .await?;
        self.bump(&transaction, POLICIES).await?;
        transaction.commit().await?;
        target.state = PolicyState::Retired;
        target.retire_time = Some(now);
        Ok(target)
    }

    // ----- decisions -----------------------------------------------------

    /// Logs `decision`, with the answer under `key` when given; a Replay
    /// when another call with the key logged first.
    pub async fn log_decision(
        &self,
        decision: &Decision,
        key: Option<&RequestKey>,
        response: Vec<u8>,
    ) -> Result<Idempotent<()>> {
        let transaction = self.db.begin_write().await?;
        if let Some(key) = key
            && !self.claim(&transaction, key).await?
        {
            drop(transaction);
            return self
                .replay(key)
                .await?
                .map(Idempotent::Replay)
                .ok_or_else(|| Error::Aborted("retry".into()));
        }
        let profile = decision
            .profile_id
            .map(|id| id.to_string())
            .unwrap_or_default();
        decision::Entity::insert(decision::ActiveModel {
            decision_id: Set(decision.id.to_string()),
            request_id: Set(decision.request_id.clone()),
            profile_id: Set(profile.clone()),
            customer_id: Set(profile.clone()),
            channel: Set(decision.channel),
            policy_id: Set(decision.policy_id.clone()),
            no_action_reason: Set(decision.no_action_reason),
            context: Set(to_json(&decision.context)?),
            features: Set(to_json(&decision.features)?),
            candidates: Set(to_json(&decision.candidates)?),
            shadow_choices: Set(to_json(&decision.shadow_choices)?),
            decide_time: Set(decision.decide_time),
            expire_time: Set(decision.expire_time),
        })
        .exec_without_returning(&transaction)
        .await?;
        if !decision.chosen.is_empty() {
            let rows = decision
                .chosen
                .iter()
                .map(|chosen| {
                    Ok(decision_action::ActiveModel {
                        decision_id: Set(decision.id.to_string()),
                        action_id: Set(chosen.action.id.clone()),
                        rank: Set(chosen.rank as i32),
                        customer_id: Set(profile.clone()),
                        policy_id: Set(decision.policy_id.clone()),
                        latest_outcome: Set(0),
                        is_final: Set(false),
                        propensity: Set(chosen.propensity),
                        chosen: Set(to_json(chosen)?),
                        decide_time: Set(decision.decide_time),
                        expire_time: Set(decision.expire_time),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            decision_action::Entity::insert_many(rows)
                .exec_without_returning(&transaction)
                .await?;
        }
        if let Some(key) = key {
            self.answer(&transaction, key, response).await?;
        }
        transaction.commit().await?;
        Ok(Idempotent::Fresh(()))
    }

    fn decision_from_rows(
        row: decision::Model,
        chosen: Vec<decision_action::Model>,
        outcomes: Vec<outcome::Model>,
    ) -> Result<Decision> {
        let mut chosen = chosen
            .into_iter()
            .map(|row| from_json::<ChosenAction>(row.chosen))
            .collect::<Result<Vec<_>>>()?;
        chosen.sort_by_key(|chosen| chosen.rank);
        Ok(Decision {
            id: Uuid::parse_str(&row.decision_id).map_err(Error::internal)?,
            request_id: row.request_id,
            profile_id: optional_uuid(&row.profile_id),
            channel: row.channel,
            context: from_json::<DecisionContext>(row.context)?,
            features: from_json::<Features>(row.features)?,
            policy_id: row.policy_id,
            candidates: from_json::<Vec<LoggedCandidate>>(row.candidates)?,
            chosen,
            no_action_reason: row.no_action_reason,
            shadow_choices: from_json::<Vec<ShadowChoice>>(row.shadow_choices)?,
            decide_time: row.decide_time,
            expire_time: row.expire_time,
            outcomes: outcomes
                .into_iter()
                .map(outcome_from_row)
                .collect::<Result<Vec<_>>>()?,
        })
    }

    async fn decisions_with_details(&self, rows: Vec<decision::Model>) -> Result<Vec<Decision>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = rows.iter().map(|row| row.decision_id.clone()).collect();
        let mut chosen: HashMap<String, Vec<decision_action::Model>> = HashMap::new();
        for row in decision_action::Entity::find()
            .filter(decision_action::Column::DecisionId.is_in(ids.clone()))
            .all(&self.db)
            .await?
        {
            chosen.entry(row.decision_id.clone()).or_default().push(row);
        }
        let mut outcomes: HashMap<String, Vec<outcome::Model>> = HashMap::new();
        for row in outcome::Entity::find()
            .filter(outcome::Column::DecisionId.is_in(ids))
            .order_by_asc(outcome::Column::Id)
            .all(&self.db)
            .await?
        {
            outcomes
                .entry(row.decision_id.clone())
                .or_default()
                .push(row);
        }
        rows.into_iter()
            .map(|row| {
                let id = row.decision_id.clone();
                Self::decision_from_rows(
                    row,
                    chosen.remove(&id).unwrap_or_default(),
                    outcomes.remove(&id).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The logged decision `id`, with its outcomes.
    pub async fn decision(&self, id: Uuid) -> Result<Option<Decision>> {
        let Some(row) = decision::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        Ok(self.decisions_with_details(vec![row]).await?.pop())
    }

    /// The customer decision `id` now belongs to (its profile, following
    /// merges as this service has consumed them); `None` for an unknown
    /// decision, an empty string for one of an anonymous customer.
    pub async fn decision_customer(&self, id: Uuid) -> Result<Option<String>> {
        Ok(decision::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
            .map(|row| row.customer_id))
    }

    /// A page of decisions, newest first, after `after` ("<rfc3339>|<id>").
    pub async fn list_decisions(
        &self,
        filter: &DecisionFilter,
        after: Option<String>,
        limit: u64,
    ) -> Result<(Vec<Decision>, Option<String>)> {
        let mut query = decision::Entity::find()
            .order_by_desc(decision::Column::DecideTime)
            .order_by_desc(decision::Column::DecisionId)
            .limit(limit + 1);
        if let Some(customer) = filter.customer_id {
            query = query.filter(decision::Column::CustomerId.eq(customer.to_string()));
        }
        if let Some(channel) = filter.channel {
            query = query.filter(decision::Column::Channel.eq(channel));
        }
        if let Some(policy) = &filter.policy_id {
            query = query.filter(decision::Column::PolicyId.eq(policy.clone()));
        }
        if let Some(start) = filter.start {
            query = query.filter(decision::Column::DecideTime.gte(start));
        }
        if let Some(end) = filter.end {
            query = query.filter(decision::Column::DecideTime.lt(end));
        }
        if filter.action_id.is_some() || filter.outcome.is_some() {
            let mut chosen = sea_orm::sea_query::Query::select()
                .column(decision_action::Column::DecisionId)
                .from(decision_action::Entity)
                .to_owned();
            if let Some(action) = &filter.action_id {
                chosen.and_where(decision_action::Column::ActionId.eq(action.clone()));
            }
            if let Some(outcome) = filter.outcome {
                chosen.and_where(decision_action::Column::LatestOutcome.eq(outcome));
            }
            query = query.filter(decision::Column::DecisionId.in_subquery(chosen));
        }
        if let Some(after) = after {
            let invalid = || Error::invalid("page_token", "not a token of this listing");
            let (time, id) = after.split_once('|').ok_or_else(invalid)?;
            let time = DateTime::parse_from_rfc3339(time)
                .map_err(|_| invalid())?
                .with_timezone(&Utc);
            query = query.filter(
                Condition::any()
                    .add(decision::Column::DecideTime.lt(time))
                    .add(
                        Condition::all()
                            .add(decision::Column::DecideTime.eq(time))
                            .add(decision::Column::DecisionId.lt(id.to_string())),
                    ),
            );
        }
        let mut rows = query.all(&self.db).await?;
        let next = if rows.len() as u64 > limit {
            rows.truncate(limit as usize);
            rows.last()
                .map(|row| format!("{}|{}", row.decide_time.to_rfc3339(), row.decision_id))
        } else {
            None
        };
        Ok((self.decisions_with_details(rows).await?, next))
    }

    /// Decisions in a time range for offline evaluation, newest first, at
    /// most `limit`, optionally only on `channels`.
    pub async fn decisions_for_evaluation(
        &self,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        channels: &[i32],
        limit: u64,
    ) -> Result<Vec<Decision>> {
        let mut query = decision::Entity::find()
            .filter(decision::Column::NoActionReason.eq(0))
            .order_by_desc(decision::Column::DecideTime)
            .limit(limit);
        if let Some(start) = start {
            query = query.filter(decision::Column::DecideTime.gte(start));
        }
        if let Some(end) = end {
            query = query.filter(decision::Column::DecideTime.lt(end));
        }
        if !channels.is_empty() {
            query = query.filter(decision::Column::Channel.is_in(channels.to_vec()));
        }
        let mut decisions = Vec::new();
        // Read in slices so an evaluation over many decisions keeps memory flat.
        let rows = query.all(&self.db).await?;
        for chunk in rows.chunks(1000) {
            decisions.extend(self.decisions_with_details(chunk.to_vec()).await?);
        }
        Ok(decisions)
    }

    /// Records an outcome: the outcome row, the chosen action's latest
    /// outcome, a learning event for a final outcome and the
    /// `recommendation.decision_outcome` event, in one transaction, after
    /// `check` accepted it against the decision (expiry, times). A channel
    /// of 0 means the decision's. Returns the stored outcome, whether it was
    /// a duplicate, and the chosen action's state.
    pub async fn record_outcome(
        &self,
        mut outcome: Outcome,
        check: impl FnOnce(&ChosenState) -> Result<()>,
    ) -> Result<(Outcome, bool, ChosenState)> {
        let transaction = self.db.begin_write().await?;
        let decision = decision::Entity::find_by_id(outcome.decision_id.to_string())
            .one(&transaction)
            .await?
            .ok_or_else(|| Error::not_found("decision", outcome.decision_id.to_string()))?;
        let chosen = decision_action::Entity::find_by_id((
            outcome.decision_id.to_string(),
            outcome.action_id.clone(),
        ))
        .lock(LockType::Update)
        .one(&transaction)
        .await?
        .ok_or_else(|| {
            Error::invalid(
                "action_id",
                format!("the decision did not return {}", outcome.action_id),
            )
        })?;
        let state = ChosenState {
            channel: decision.channel,
            decide_time: decision.decide_time,
            expire_time: decision.expire_time,
            profile_id: optional_uuid(&decision.profile_id),
            chosen: from_json(chosen.chosen.clone())?,
        };
        if outcome.channel == 0 {
            outcome.channel = decision.channel;
        }
        let existing = outcome::Entity::find()
            .filter(outcome::Column::DecisionId.eq(outcome.decision_id.to_string()))
            .filter(outcome::Column::ActionId.eq(outcome.action_id.clone()))
            .filter(outcome::Column::Outcome.eq(outcome.kind))
            .one(&transaction)
            .await?;
        if let Some(existing) = existing {
            transaction.rollback().await?;
            return Ok((outcome_from_row(existing)?, true, state));
        }
        if let Err(error) = check(&state) {
            transaction.rollback().await?;
            return Err(error);
        }
        let final_now = is_final(outcome.kind);
        if final_now && chosen.is_final {
            transaction.rollback().await?;
            return Err(Error::FailedPrecondition(format!(
                "the action already has the final outcome {}",
                outcome_name(chosen.latest_outcome)
            )));
        }
        outcome::Entity::insert(outcome::ActiveModel {
            id: sea_orm::NotSet,
            decision_id: Set(outcome.decision_id.to_string()),
            action_id: Set(outcome.action_id.clone()),
            outcome: Set(outcome.kind),
            channel: Set(outcome.channel),
            source: Set(outcome.source),
            occur_time: Set(outcome.occur_time),
            record_time: Set(outcome.record_time),
        })
        .exec_without_returning(&transaction)
        .await?;
        if !chosen.is_final {
            decision_action::Entity::update_many()
                .col_expr(
                    decision_action::Column::LatestOutcome,
                    Expr::value(outcome.kind),
                )
                .col_expr(decision_action::Column::IsFinal, Expr::value(final_now))
                .filter(decision_action::Column::DecisionId.eq(outcome.decision_id.to_string()))
                .filter(decision_action::Column::ActionId.eq(outcome.action_id.clone()))
                .exec(&transaction)
                .await?;
            if final_now {
                learning_event::Entity::insert(learning_event::ActiveModel {
                    id: sea_orm::NotSet,
                    action_id: Set(outcome.action_id.clone()),
                    group_key: Set(state.chosen.action.group_key()),
                    features: Set(decision.features.clone()),
                    reward: Set(if outcome.kind == pb::OutcomeType::Accepted as i32 {
                        1.0
                    } else {
                        0.0
                    }),
                })
                .exec_without_returning(&transaction)
                .await?;
            }
        }
        let event = outbox::event(
            SOURCE,
            "recommendation.decision_outcome",
            &decision.customer_id,
            Payload::DecisionOutcome(DecisionOutcome {
                decision_id: outcome.decision_id.to_string(),
                action_id: outcome.action_id.clone(),
                outcome: outcome_name(outcome.kind).into(),
                channel: decision.channel,
            }),
        );
        self.outbox.enqueue(&transaction, &event).await?;
        transaction.commit().await?;
        self.outbox.committed();
        Ok((outcome, false, state))
    }

    /// Chosen actions of expired decisions without a final outcome, at most
    /// `limit`: (decision id, action id, channel).
    pub async fn expired_without_outcome(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<(Uuid, String, i32)>> {
        let rows = decision_action::Entity::find()
            .filter(decision_action::Column::IsFinal.eq(false))
            .filter(decision_action::Column::ExpireTime.lt(now))
            .order_by_asc(decision_action::Column::ExpireTime)
            .limit(limit)
            .all(&self.db)
            .await?;
        let mut expired = Vec::new();
        for row in rows {
            let channel = decision::Entity::find_by_id(row.decision_id.clone())
                .one(&self.db)
                .await?
                .map_or(0, |decision| decision.channel);
            if let Ok(id) = Uuid::parse_str(&row.decision_id) {
                expired.push((id, row.action_id, channel));
            }
        }
        Ok(expired)
    }

    /// Counts of the log for `action_ids`.
    pub async fn action_counts(
        &self,
        action_ids: &[String],
    ) -> Result<HashMap<String, ActionCounts>> {
        let mut counts: HashMap<String, ActionCounts> = HashMap::new();
        #[derive(Debug, sea_orm::FromQueryResult)]
        struct Chosen {
            action_id: String,
            chosen: i64,
            propensity: Option<f64>,
        }
        let rows = decision_action::Entity::find()
            .select_only()
            .column(decision_action::Column::ActionId)
            .column_as(
                Expr::col(decision_action::Column::ActionId).count(),
                "chosen",
            )
            .column_as(
                Expr::col(decision_action::Column::Propensity).avg(),
                "propensity",
            )
            .filter(decision_action::Column::ActionId.is_in(action_ids.to_vec()))
            .group_by(decision_action::Column::ActionId)
            .into_model::<Chosen>()
            .all(&self.db)
            .await?;
        for row in rows {
            let entry = counts.entry(row.action_id).or_default();
            entry.chosen = row.chosen;
            entry.mean_propensity = row.propensity.unwrap_or(0.0);
        }
        #[derive(Debug, sea_orm::FromQueryResult)]
        struct Counted {
            action_id: String,
            outcome: i32,
            count: i64,
        }
        let rows = outcome::Entity::find()
            .select_only()
            .column(outcome::Column::ActionId)
            .column(outcome::Column::Outcome)
            .column_as(Expr::col(outcome::Column::Id).count(), "count")
            .filter(outcome::Column::ActionId.is_in(action_ids.to_vec()))
            .group_by(outcome::Column::ActionId)
            .group_by(outcome::Column::Outcome)
            .into_model::<Counted>()
            .all(&self.db)
            .await?;
        for row in rows {
            counts
                .entry(row.action_id)
                .or_default()
                .outcomes
                .insert(row.outcome, row.count);
        }
        Ok(counts)
    }

    // ----- what events tell ----------------------------------------------

    /// Records a ticket's complaint state, once per event.
    pub async fn set_complaint(
        &self,
        event_id: &str,
        profile_id: &str,
        ticket_id: &str,
        open: bool,
    ) -> Result<()> {
        let transaction = self.db.begin_write().await?;
        if !self.inbox.first_delivery(&transaction, event_id).await? {
            return Ok(());
        }
        let existing =
            complaint::Entity::find_by_id((profile_id.to_string(), ticket_id.to_string()))
                .one(&transaction)
                .await?;
        match (existing, open) {
            (None, false) => {}
            (None, true) => {
                complaint::Entity::insert(complaint::ActiveModel {
                    profile_id: Set(profile_id.into()),
                    ticket_id: Set(ticket_id.into()),
                    open: Set(true),
                    close_time: Set(None),
                })
                .exec_without_returning(&transaction)
                .await?;
            }
            (Some(row), open) => {
                if row.open != open {
                    complaint::Entity::update(complaint::ActiveModel {
                        profile_id: Set(row.profile_id),
                        ticket_id: Set(row.ticket_id),
                        open: Set(open),
                        close_time: Set((!open).then(Utc::now)),
                    })
                    .exec(&transaction)
                    .await?;
                }
            }
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Why the customer is under complaint suppression now, if they are:
    /// an open complaint, or one closed less than `after_close` ago.
    pub async fn complaint_suppression(
        &self,
        profile_id: Uuid,
        after_close_seconds: i64,
    ) -> Result<Option<String>> {
        let since = Utc::now() - chrono::Duration::seconds(after_close_seconds);
        let row = complaint::Entity::find()
            .filter(complaint::Column::ProfileId.eq(profile_id.to_string()))
            .filter(
                Condition::any()
                    .add(complaint::Column::Open.eq(true))
                    .add(complaint::Column::CloseTime.gt(since)),
            )
            .one(&self.db)
            .await?;
        Ok(row.map(|row| {
            if row.open {
                format!("complaint {} is open", row.ticket_id)
            } else {
                format!("complaint {} closed recently", row.ticket_id)
            }
        }))
    }

    /// Records a customer's stage in a journey (empty: they left it), once per event.
    pub async fn set_stage(
        &self,
        event_id: &str,
        profile_id: &str,
        journey_id: &str,
        stage: &str,
    ) -> Result<()> {
        let transaction = self.db.begin_write().await?;
        if !self.inbox.first_delivery(&transaction, event_id).await? {
            return Ok(());
        }
        delete_stage(&transaction, profile_id, journey_id).await?;
        if !stage.is_empty() {
            journey_stage::Entity::insert(journey_stage::ActiveModel {
                profile_id: Set(profile_id.into()),
                journey_id: Set(journey_id.into()),
                stage: Set(stage.chars().take(64).collect()),
                update_time: Set(Utc::now()),
            })
            .exec_without_returning(&transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// The customer's current stage in each journey.
    pub async fn stages(&self, profile_id: Uuid) -> Result<BTreeMap<String, String>> {
        Ok(journey_stage::Entity::find()
            .filter(journey_stage::Column::ProfileId.eq(profile_id.to_string()))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| (row.journey_id, row.stage))
            .collect())
    }

    /// Claims `event_id` for a handler that acts elsewhere (outcomes from
    /// events): true on its first delivery.
    pub async fn first_delivery(&self, event_id: &str) -> Result<bool> {
        let transaction = self.db.begin_write().await?;
        let first = self.inbox.first_delivery(&transaction, event_id).await?;
        transaction.commit().await?;
        Ok(first)
    }

    /// Moves what is held about `merged` to `survivor` (decisions'
    /// customer, complaints, stages), once per event.
    pub async fn follow_merge(&self, event_id: &str, survivor: &str, merged: &str) -> Result<()> {
        let transaction = self.db.begin_write().await?;
        if !self.inbox.first_delivery(&transaction, event_id).await? {
            return Ok(());
        }
        decision::Entity::update_many()
            .col_expr(decision::Column::CustomerId, Expr::value(survivor))
            .filter(decision::Column::CustomerId.eq(merged))
            .exec(&transaction)
            .await?;
        decision_action::Entity::update_many()
            .col_expr(decision_action::Column::CustomerId, Expr::value(survivor))
            .filter(decision_action::Column::CustomerId.eq(merged))
            .exec(&transaction)
            .await?;
        // Complaints and stages: the survivor inherits open complaints;
        // where both have a stage in one journey, the survivor's stays.
        let complaints = complaint::Entity::find()
            .filter(complaint::Column::ProfileId.eq(merged))
            .all(&transaction)
            .await?;
        for row in complaints {
            complaint::Entity::insert(complaint::ActiveModel {
                profile_id: Set(survivor.into()),
                ..row.clone().into()
            })
            .on_conflict(
                OnConflict::columns([complaint::Column::ProfileId, complaint::Column::TicketId])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&transaction)
            .await?;
        }
        complaint::Entity::delete_many()
            .filter(complaint::Column::ProfileId.eq(merged))
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Gives `restored` back its decisions, once per event.
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
        decision::Entity::update_many()
            .col_expr(decision::Column::CustomerId, Expr::value(restored))
            .filter(decision::Column::ProfileId.eq(restored))
            .filter(decision::Column::CustomerId.eq(survivor))
            .exec(&transaction)
            .await?;
        decision_action::Entity::update_many()
            .col_expr(decision_action::Column::CustomerId, Expr::value(restored))
            .filter(decision_action::Column::CustomerId.eq(survivor))
            .filter(
                decision_action::Column::DecisionId.in_subquery(
                    sea_orm::sea_query::Query::select()
                        .column(decision::Column::DecisionId)
                        .from(decision::Entity)
                        .and_where(decision::Column::ProfileId.eq(restored))
                        .to_owned(),
                ),
            )
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Deletes everything held about `profile_ids`: decisions with their
    /// chosen actions and outcomes, complaints, stages and idempotency
    /// records, once per erasure event. Returns the decisions deleted.
    pub async fn erase(&self, event_id: &str, profile_ids: &[String]) -> Result<u64> {
        let transaction = self.db.begin_write().await?;
        if !self.inbox.first_delivery(&transaction, event_id).await? {
            return Ok(0);
        }
        let ids = profile_ids.to_vec();
        let decisions = sea_orm::sea_query::Query::select()
            .column(decision::Column::DecisionId)
            .from(decision::Entity)
            .cond_where(
                Condition::any()
                    .add(decision::Column::ProfileId.is_in(ids.clone()))
                    .add(decision::Column::CustomerId.is_in(ids.clone())),
            )
            .to_owned();
        outcome::Entity::delete_many()
            .filter(outcome::Column::DecisionId.in_subquery(decisions.clone()))
            .exec(&transaction)
            .await?;
        decision_action::Entity::delete_many()
            .filter(decision_action::Column::DecisionId.in_subquery(decisions))
            .exec(&transaction)
            .await?;
        let deleted = decision::Entity::delete_many()
            .filter(
                Condition::any()
                    .add(decision::Column::ProfileId.is_in(ids.clone()))
                    .add(decision::Column::CustomerId.is_in(ids.clone())),
            )
            .exec(&transaction)
            .await?
            .rows_affected;
        complaint::Entity::delete_many()
            .filter(complaint::Column::ProfileId.is_in(ids.clone()))
            .exec(&transaction)
            .await?;
        journey_stage::Entity::delete_many()
            .filter(journey_stage::Column::ProfileId.is_in(ids.clone()))
            .exec(&transaction)
            .await?;
        idempotency::Entity::delete_many()
            .filter(idempotency::Column::ProfileId.is_in(ids))
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(deleted)
    }

    /// Deletes decisions decided before `before` and idempotency records
    /// created before `keys_before` (retention).
    pub async fn sweep(&self, before: DateTime<Utc>, keys_before: DateTime<Utc>) -> Result<u64> {
        let transaction = self.db.begin_write().await?;
        let old = sea_orm::sea_query::Query::select()
            .column(decision::Column::DecisionId)
            .from(decision::Entity)
            .and_where(decision::Column::DecideTime.lt(before))
            .to_owned();
        outcome::Entity::delete_many()
            .filter(outcome::Column::DecisionId.in_subquery(old.clone()))
            .exec(&transaction)
            .await?;
        decision_action::Entity::delete_many()
            .filter(decision_action::Column::DecisionId.in_subquery(old))
            .exec(&transaction)
            .await?;
        let deleted = decision::Entity::delete_many()
            .filter(decision::Column::DecideTime.lt(before))
            .exec(&transaction)
            .await?
            .rows_affected;
        idempotency::Entity::delete_many()
            .filter(idempotency::Column::CreateTime.lt(keys_before))
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(deleted)
    }
}

async fn delete_stage(
    transaction: &DatabaseTransaction,
    profile_id: &str,
    journey_id: &str,
) -> Result<()> {
    journey_stage::Entity::delete_many()
        .filter(journey_stage::Column::ProfileId.eq(profile_id))
        .filter(journey_stage::Column::JourneyId.eq(journey_id))
        .exec(transaction)
        .await?;
    Ok(())
}

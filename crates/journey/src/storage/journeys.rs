//! Journey definitions and customers' positions in the database.
//!
//! Positions move inside the transaction that stores the touchpoint that
//! moves them, so a touchpoint is never stored without its effect, nor the
//! effect without the touchpoint. Concurrent touchpoints of one customer are
//! serialised by a transaction-scoped advisory lock on PostgreSQL (SQLite has
//! one writer anyway).

use cairn_runtime::storage::BeginWrite;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use cairn_contract::events::v1::StageChanged;
use cairn_contract::events::v1::change_event::Payload;
use cairn_runtime::common::timestamp_to_proto;
use cairn_runtime::outbox::{self, Outbox};
use cairn_runtime::{Error, Result};
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{ExprTrait, OnConflict};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, QueryOrder,
    QuerySelect, Set, Statement,
};

use crate::domain::Touchpoint;
use crate::domain::definition::{DefinitionDocument, JourneyDefinition};
use crate::domain::progress::{self, JourneyStatus, Move, Position, RuleVariables, Transition};

const SOURCE: &str = "journey";

/// `journey_definitions` rows: every version of every journey.
pub mod definition {
    use sea_orm::entity::prelude::*;

    /// One version of a journey definition.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "journey_definitions")]
    pub struct Model {
        /// The journey.
        #[sea_orm(primary_key, auto_increment = false)]
        pub journey_id: String,
        /// The version, from 1.
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i32,
        /// The definition as written.
        pub document: Json,
        /// Set on the latest version when the journey is archived.
        pub archived: bool,
        /// When this version was written.
        pub updated_at: DateTimeUtc,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `journey_states` rows: one per customer and journey.
pub mod state {
    use sea_orm::entity::prelude::*;

    /// A customer's position in one journey.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "journey_states")]
    pub struct Model {
        /// The customer (the profile, or its merge survivor).
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: String,
        /// The journey.
        #[sea_orm(primary_key, auto_increment = false)]
        pub journey_id: String,
        /// The profile that entered.
        pub profile_id: String,
        /// The version they are on.
        pub version: i32,
        /// The current stage; empty once they finished.
        pub stage: String,
        /// When they entered it.
        pub stage_entered_at: DateTimeUtc,
        /// The status's stored name.
        pub status: String,
        /// The current stage's key (cart, order), if any.
        pub stage_key: Option<String>,
        /// When they last moved.
        pub last_transition_at: DateTimeUtc,
        /// When something happens by itself; claimed by one replica.
        pub due_at: Option<DateTimeUtc>,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `journey_transitions` rows: the history of moves.
pub mod transition {
    use sea_orm::entity::prelude::*;

    /// One move.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "journey_transitions")]
    pub struct Model {
        /// A time-ordered id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The customer it belongs to now.
        pub customer_id: String,
        /// The profile that moved.
        pub profile_id: String,
        /// The journey.
        pub journey_id: String,
        /// The version.
        pub version: i32,
        /// The stage left; empty on entering.
        pub from_stage: String,
        /// The stage entered; empty on leaving.
        pub to_stage: String,
        /// The touchpoint that caused it.
        pub touchpoint_id: Option<String>,
        /// When.
        pub transition_at: DateTimeUtc,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A customer's position with its history, as reads return it.
#[derive(Debug, Clone)]
pub struct JourneyState {
    /// The profile the position belongs to.
    pub profile_id: String,
    /// The position.
    pub position: Position,
    /// Every transition, oldest first.
    pub transitions: Vec<Transition>,
}

/// Compiled definitions by journey id and version.
type CompiledVersions = HashMap<(String, i32), Arc<JourneyDefinition>>;

/// Definitions in the database, with the compiled form of each version kept
/// in memory: a version never changes once written, so the cache is always
/// right, and every replica reads which version is latest from the database.
#[derive(Clone)]
pub struct JourneyStore {
    db: DatabaseConnection,
    outbox: Outbox,
    compiled: Arc<RwLock<CompiledVersions>>,
}

impl JourneyStore {
    /// A store on `db`, publishing transitions through `outbox`.
    pub fn new(db: DatabaseConnection, outbox: Outbox) -> Self {
        Self {
            db,
            outbox,
            compiled: Arc::default(),
        }
    }

    /// The database, for the deadline worker.
    pub fn database(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Writes the built-in definitions as version 1 where they do not exist
    /// (every replica may do it at once; the first wins).
    pub async fn seed(&self, documents: &[DefinitionDocument]) -> Result<()> {
        for document in documents {
            document.compile(1, false, Utc::now())?;
            definition::Entity::insert(row(document, 1, false)?)
                .on_conflict(
                    OnConflict::columns([
                        definition::Column::JourneyId,
                        definition::Column::Version,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(&self.db)
                .await?;
        }
        Ok(())
    }

    /// Writes `document` as `version` unless that version exists; true when written.
    async fn insert_version(
        &self,
        document: &DefinitionDocument,
        version: i32,
        archived: bool,
    ) -> Result<bool> {
        let inserted = definition::Entity::insert(row(document, version, archived)?)
            .on_conflict(
                OnConflict::columns([definition::Column::JourneyId, definition::Column::Version])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        Ok(inserted == 1)
    }

    /// Stores version 1 of a new journey. ALREADY_EXISTS when the id is taken.
    pub async fn create(&self, document: &DefinitionDocument) -> Result<Arc<JourneyDefinition>> {
        let compiled = document.compile(1, false, Utc::now())?;
        if !self.insert_version(document, 1, false).await? {
            return Err(Error::AlreadyExists(format!(
                "journey \"{}\" exists; change it with UpdateJourneyDefinition",
                document.journey_id
            )));
        }
        Ok(Arc::new(compiled))
    }

    /// Writes `document` as the next version of its journey, when `etag`
    /// names the latest version (ABORTED otherwise).
    pub async fn update(
        &self,
        document: &DefinitionDocument,
        etag: &str,
    ) -> Result<Arc<JourneyDefinition>> {
        let latest = self.latest(&document.journey_id).await?;
        if etag != etag_of(&latest) {
            return Err(Error::Aborted(format!(
                "journey \"{}\" changed since it was read (now version {}); read it again and reapply",
                latest.id, latest.version
            )));
        }
        let version = latest.version + 1;
        let compiled = document.compile(version, latest.archived, Utc::now())?;
        if !self
            .insert_version(document, version, latest.archived)
            .await?
        {
            return Err(Error::Aborted(format!(
                "journey \"{}\" was changed by another call at the same time; read it again",
                latest.id
            )));
        }
        Ok(Arc::new(compiled))
    }

    /// Archives a journey: nobody enters it any more.
    pub async fn archive(&self, journey_id: &str) -> Result<Arc<JourneyDefinition>> {
        let latest = self.latest(journey_id).await?;
        definition::Entity::update_many()
            .col_expr(definition::Column::Archived, Expr::value(true))
            .filter(definition::Column::JourneyId.eq(journey_id))
            .filter(definition::Column::Version.eq(latest.version))
            .exec(&self.db)
            .await?;
        self.version(&self.db, journey_id, latest.version).await
    }

    /// The latest version of a journey. NOT_FOUND when there is none.
    pub async fn latest(&self, journey_id: &str) -> Result<Arc<JourneyDefinition>> {
        let row = definition::Entity::find()
            .filter(definition::Column::JourneyId.eq(journey_id))
            .order_by_desc(definition::Column::Version)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("journey", journey_id))?;
        self.compiled_row(row)
    }

    /// One version of a journey. NOT_FOUND when it does not exist.
    pub async fn version(
        &self,
        connection: &impl ConnectionTrait,
        journey_id: &str,
        version: i32,
    ) -> Result<Arc<JourneyDefinition>> {
        let row = definition::Entity::find_by_id((journey_id.to_string(), version))
            .one(connection)
            .await?
            .ok_or_else(|| {
                Error::not_found("journey", format!("{journey_id} version {version}"))
            })?;
        self.compiled_row(row)
    }

    /// The latest version of every journey, by id, including archived ones
    /// when asked.
    pub async fn heads(
        &self,
        connection: &impl ConnectionTrait,
        include_archived: bool,
    ) -> Result<Vec<Arc<JourneyDefinition>>> {
        let versions: Vec<(String, i32, bool)> = definition::Entity::find()
            .select_only()
            .column(definition::Column::JourneyId)
            .column(definition::Column::Version)
            .column(definition::Column::Archived)
            .order_by_asc(definition::Column::JourneyId)
            .order_by_desc(definition::Column::Version)
            .into_tuple()
            .all(connection)
            .await?;
        let mut heads = Vec::new();
        let mut previous: Option<String> = None;
        for (journey_id, version, archived) in versions {
            if previous.as_deref() == Some(journey_id.as_str()) {
                continue;
            }
            previous = Some(journey_id.clone());
            if archived && !include_archived {
                continue;
            }
            heads.push(
                self.cached_version(connection, &journey_id, version, archived)
                    .await?,
            );
        }
        Ok(heads)
    }

    async fn cached_version(
        &self,
        connection: &impl ConnectionTrait,
        journey_id: &str,
        version: i32,
        archived: bool,
    ) -> Result<Arc<JourneyDefinition>> {
        let cached = self
            .compiled
            .read()
            .map_err(|_| Error::internal("definition cache poisoned"))?
            .get(&(journey_id.to_string(), version))
            .cloned();
        match cached {
            Some(definition) if definition.archived == archived => Ok(definition),
            _ => self.version(connection, journey_id, version).await,
        }
    }

    fn compiled_row(&self, row: definition::Model) -> Result<Arc<JourneyDefinition>> {
        let document: DefinitionDocument =
            serde_json::from_value(row.document).map_err(Error::internal)?;
        let compiled = Arc::new(document.compile(row.version, row.archived, row.updated_at)?);
        self.compiled
            .write()
            .map_err(|_| Error::internal("definition cache poisoned"))?
            .insert((row.journey_id, row.version), compiled.clone());
        Ok(compiled)
    }

    /// Moves `customer` through every journey `touchpoint` concerns, within
    /// the caller's transaction; returns the transitions made.
    /// `heads` are the journeys' latest versions, archived ones included
    /// (their customers finish on their version).
    pub async fn progress(
        &self,
        transaction: &DatabaseTransaction,
        heads: &[Arc<JourneyDefinition>],
        customer: &str,
        touchpoint: &Touchpoint,
        variables: &RuleVariables,
    ) -> Result<Vec<Transition>> {
        if heads.is_empty() {
            return Ok(Vec::new());
        }
        lock_customer(transaction, customer).await?;
        let states: HashMap<String, state::Model> = state::Entity::find()
            .filter(state::Column::CustomerId.eq(customer))
            .all(transaction)
            .await?
            .into_iter()
            .map(|row| (row.journey_id.clone(), row))
            .collect();
        let mut transitions = Vec::new();
        for latest in heads.iter().cloned() {
            let existing = states.get(&latest.id);
            let position = existing.map(position_of).transpose()?;
            let own = match &position {
                Some(position) if position.version != latest.version => {
                    self.cached_version(transaction, &latest.id, position.version, false)
                        .await?
                }
                _ => latest.clone(),
            };
            let Some(change) =
                progress::on_touchpoint(&latest, &own, position.as_ref(), touchpoint, variables)
            else {
                continue;
            };
            let definition = if change.position.version == latest.version {
                &latest
            } else {
                &own
            };
            let profile_id = touchpoint.profile_id.to_string();
            self.apply(transaction, customer, &profile_id, definition, &change)
                .await?;
            if let Some(transition) = change.transition {
                transitions.push(transition);
            }
        }
        Ok(transitions)
    }

    /// Moves customers through every journey the touchpoints of `steps`
    /// concern, one touchpoint after the other in their order, within the
    /// caller's transaction; returns the transitions made. The batched form
    /// of [`JourneyStore::progress`]: every customer of the batch is locked
    /// at once (in one global order, so concurrent batches cannot deadlock),
    /// their positions are read in one query and moved in memory, and the
    /// final positions, the transitions and their events are written with
    /// one multi-row statement each.
    pub async fn progress_batch(
        &self,
        transaction: &DatabaseTransaction,
        heads: &[Arc<JourneyDefinition>],
        steps: &[Step<'_>],
    ) -> Result<Vec<Transition>> {
        if heads.is_empty() || steps.is_empty() {
            return Ok(Vec::new());
        }
        let customers: Vec<String> = steps
            .iter()
            .map(|step| step.customer.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        lock_customers(transaction, &customers).await?;
        let mut positions = HashMap::new();
        for chunk in customers.chunks(ROWS_PER_STATEMENT) {
            for row in state::Entity::find()
                .filter(state::Column::CustomerId.is_in(chunk.to_vec()))
                .all(transaction)
                .await?
            {
                positions.insert(
                    (row.customer_id.clone(), row.journey_id.clone()),
                    position_of(&row)?,
                );
            }
        }
        let mut moves = Vec::new();
        for step in steps {
            for latest in heads {
                let key = (step.customer.to_string(), latest.id.clone());
                let position = positions.get(&key);
                let own = match position {
                    Some(position) if position.version != latest.version => {
                        self.cached_version(transaction, &latest.id, position.version, false)
                            .await?
                    }
                    _ => latest.clone(),
                };
                let Some(change) = progress::on_touchpoint(
                    latest,
                    &own,
                    position,
                    step.touchpoint,
                    step.variables,
                ) else {
                    continue;
                };
                let definition = if change.position.version == latest.version {
                    latest.clone()
                } else {
                    own
                };
                positions.insert(key, change.position.clone());
                moves.push(BatchMove {
                    customer: step.customer,
                    profile_id: step.touchpoint.profile_id.to_string(),
                    definition,
                    change,
                });
            }
        }
        self.apply_batch(transaction, &moves).await?;
        Ok(moves
            .into_iter()
            .filter_map(|written| written.change.transition)
            .collect())
    }

    /// Writes the moves of a batch: each customer's last position per
    /// journey, every transition and its event.
    async fn apply_batch(
        &self,
        transaction: &DatabaseTransaction,
        moves: &[BatchMove<'_>],
    ) -> Result<()> {
        // The last move of each (customer, journey) holds its final position.
        let mut last = HashMap::new();
        for (index, written) in moves.iter().enumerate() {
            last.insert(
                (written.customer, &written.change.position.journey_id),
                index,
            );
        }
        let mut finals: Vec<usize> = last.into_values().collect();
        finals.sort_unstable();
        let states: Vec<state::ActiveModel> = finals
            .iter()
            .map(|&index| {
                let written = &moves[index];
                state_row(
                    written.customer,
                    &written.profile_id,
                    &written.definition,
                    &written.change.position,
                )
            })
            .collect();
        for chunk in states.chunks(ROWS_PER_STATEMENT) {
            state::Entity::insert_many(chunk.to_vec())
                .on_conflict(state_upsert())
                .exec_without_returning(transaction)
                .await?;
        }
        let mut transitions = Vec::new();
        let mut events = Vec::new();
        for written in moves {
            if let Some(transition) = &written.change.transition {
                transitions.push(transition_row(
                    written.customer,
                    &written.profile_id,
                    transition,
                ));
                events.push(stage_changed(
                    written.customer,
                    transition,
                    &written.change.position,
                ));
            }
        }
        for chunk in transitions.chunks(ROWS_PER_STATEMENT) {
            transition::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(transaction)
                .await?;
        }
        self.outbox.enqueue_all(transaction, &events).await?;
        Ok(())
    }

    /// Writes a move: the position, its due time, the transition and its event.
    pub async fn apply(
        &self,
        connection: &impl ConnectionTrait,
        customer: &str,
        profile_id: &str,
        definition: &JourneyDefinition,
        change: &Move,
    ) -> Result<()> {
        state::Entity::insert(state_row(
            customer,
            profile_id,
            definition,
            &change.position,
        ))
        .on_conflict(state_upsert())
        .exec_without_returning(connection)
        .await?;
        if let Some(transition) = &change.transition {
            transition::Entity::insert(transition_row(customer, profile_id, transition))
                .exec_without_returning(connection)
                .await?;
            self.outbox
                .enqueue(
                    connection,
                    &stage_changed(customer, transition, &change.position),
                )
                .await?;
        }
        Ok(())
    }

    /// Tells the relay that transitions were committed.
    pub fn committed(&self) {
        self.outbox.committed();
    }

    /// A customer's position in one journey with its history, if they ever entered.
    pub async fn state(&self, customer: &str, journey_id: &str) -> Result<Option<JourneyState>> {
        let Some(row) = state::Entity::find_by_id((customer.to_string(), journey_id.to_string()))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(self.with_history(row).await?))
    }

    /// A customer's positions in every journey they are or were in.
    pub async fn states(&self, customer: &str) -> Result<Vec<JourneyState>> {
        let rows = state::Entity::find()
            .filter(state::Column::CustomerId.eq(customer))
            .order_by_asc(state::Column::JourneyId)
            .all(&self.db)
            .await?;
        let mut states = Vec::with_capacity(rows.len());
        for row in rows {
            states.push(self.with_history(row).await?);
        }
        Ok(states)
    }

    async fn with_history(&self, row: state::Model) -> Result<JourneyState> {
        let transitions = transition::Entity::find()
            .filter(transition::Column::CustomerId.eq(row.customer_id.clone()))
            .filter(transition::Column::JourneyId.eq(row.journey_id.clone()))
            .order_by_asc(transition::Column::TransitionAt)
            .order_by_asc(transition::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(transition_of)
            .collect();
        Ok(JourneyState {
            profile_id: row.profile_id.clone(),
            position: position_of(&row)?,
            transitions,
        })
    }

    /// Claims up to `limit` positions whose due time has passed, locking
    /// them for the caller's transaction; other replicas skip locked rows.
    pub async fn claim_due(
        &self,
        transaction: &DatabaseTransaction,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<state::Model>> {
        let mut query = state::Entity::find()
            .filter(state::Column::DueAt.lte(now))
            .order_by_asc(state::Column::DueAt)
            .limit(limit);
        if transaction.get_database_backend() == DatabaseBackend::Postgres {
            query = query.lock_with_behavior(
                sea_orm::sea_query::LockType::Update,
                sea_orm::sea_query::LockBehavior::SkipLocked,
            );
        }
        Ok(query.all(transaction).await?)
    }

    /// Moves the positions of `merged` to `survivor` where the survivor has
    /// none in that journey (the survivor's own position wins), and the
    /// history with them.
    pub async fn follow_merge(
        &self,
        transaction: &DatabaseTransaction,
        survivor: &str,
        merged: &str,
    ) -> Result<()> {
        let taken: Vec<String> = state::Entity::find()
            .select_only()
            .column(state::Column::JourneyId)
            .filter(state::Column::CustomerId.eq(survivor))
            .into_tuple()
            .all(transaction)
            .await?;
        state::Entity::delete_many()
            .filter(state::Column::CustomerId.eq(merged))
            .filter(state::Column::JourneyId.is_in(taken))
            .exec(transaction)
            .await?;
        state::Entity::update_many()
            .col_expr(state::Column::CustomerId, Expr::value(survivor.to_string()))
            .filter(state::Column::CustomerId.eq(merged))
            .exec(transaction)
            .await?;
        transition::Entity::update_many()
            .col_expr(
                transition::Column::CustomerId,
                Expr::value(survivor.to_string()),
            )
            .filter(transition::Column::CustomerId.eq(merged))
            .exec(transaction)
            .await?;
        Ok(())
    }

    /// Deletes every position and transition of `profile_ids`.
    pub async fn erase(
        &self,
        transaction: &DatabaseTransaction,
        profile_ids: &[String],
    ) -> Result<u64> {
        let states = state::Entity::delete_many()
            .filter(
                state::Column::CustomerId
                    .is_in(profile_ids.to_vec())
                    .or(state::Column::ProfileId.is_in(profile_ids.to_vec())),
            )
            .exec(transaction)
            .await?
            .rows_affected;
        let transitions = transition::Entity::delete_many()
            .filter(
                transition::Column::CustomerId
                    .is_in(profile_ids.to_vec())
                    .or(transition::Column::ProfileId.is_in(profile_ids.to_vec())),
            )
            .exec(transaction)
            .await?
            .rows_affected;
        let abandonments = super::abandonments::erase(transaction, profile_ids).await?;
        Ok(states + transitions + abandonments)
    }

    /// Entries into stages of `journey_ids` in `[start, end)`:
    /// (customer, journey, stage, when), by customer and time.
    pub async fn entries_between(
        &self,
        journey_ids: &[String],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<(String, String, String, DateTime<Utc>)>> {
        if journey_ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(transition::Entity::find()
            .select_only()
            .column(transition::Column::CustomerId)
            .column(transition::Column::JourneyId)
            .column(transition::Column::ToStage)
            .column(transition::Column::TransitionAt)
            .filter(transition::Column::JourneyId.is_in(journey_ids.to_vec()))
            .filter(transition::Column::ToStage.ne(""))
            .filter(transition::Column::TransitionAt.gte(start))
            .filter(transition::Column::TransitionAt.lt(end))
            .order_by_asc(transition::Column::CustomerId)
            .order_by_asc(transition::Column::TransitionAt)
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// The channel of the customer's latest touchpoint, if any.
    pub async fn last_channel(&self, customer: &str) -> Result<Option<i32>> {
        Ok(super::touchpoint::Entity::find()
            .select_only()
            .column(super::touchpoint::Column::Channel)
            .filter(super::touchpoint::Column::CustomerId.eq(customer))
            .order_by_desc(super::touchpoint::Column::OccurredAt)
            .into_tuple()
            .one(&self.db)
            .await?)
    }

    /// Starts a transaction on the store's database.
    pub async fn begin(&self) -> Result<DatabaseTransaction> {
        Ok(self.db.begin_write().await?)
    }
}

/// Serialises work on one customer's positions across replicas.
async fn lock_customer(transaction: &DatabaseTransaction, customer: &str) -> Result<()> {
    if transaction.get_database_backend() == DatabaseBackend::Postgres {
        transaction
            .execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
                [customer.into()],
            ))
            .await?;
    }
    Ok(())
}

/// Serialises work on many customers' positions across replicas: the
/// same locks as [`lock_customer`], taken in the order of their keys so that
/// two batches sharing customers wait for each other instead of deadlocking.
async fn lock_customers(transaction: &DatabaseTransaction, customers: &[String]) -> Result<()> {
    if transaction.get_database_backend() == DatabaseBackend::Postgres && !customers.is_empty() {
        transaction
            .execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock(key) FROM \
                 (SELECT DISTINCT hashtextextended(customer, 7) AS key \
                  FROM unnest($1::text[]) AS customer ORDER BY key) AS keys \
                 ORDER BY key",
                [customers.to_vec().into()],
            ))
            .await?;
    }
    Ok(())
}

/// Rows written by one multi-row statement: well under PostgreSQL's 65,535
/// parameters for the widest of these tables.
const ROWS_PER_STATEMENT: usize = 1000;

/// One touchpoint's part in a batch: whose positions it moves, and the
/// variables of the journeys' conditions.
pub struct Step<'a> {
    /// The customer (the profile, or its merge survivor).
    pub customer: &'a str,
    /// The touchpoint.
    pub touchpoint: &'a Touchpoint,
    /// `touchpoint` and `profile`.
    pub variables: &'a RuleVariables,
}

/// A move made in a batch, waiting to be written.
struct BatchMove<'a> {
    customer: &'a str,
    profile_id: String,
    definition: Arc<JourneyDefinition>,
    change: Move,
}

/// The `journey_states` row of a position.
fn state_row(
    customer: &str,
    profile_id: &str,
    definition: &JourneyDefinition,
    position: &Position,
) -> state::ActiveModel {
    state::ActiveModel {
        customer_id: Set(customer.to_string()),
        journey_id: Set(position.journey_id.clone()),
        profile_id: Set(profile_id.to_string()),
        version: Set(position.version),
        stage: Set(position.stage.clone().unwrap_or_default()),
        stage_entered_at: Set(position.stage_entered_at),
        status: Set(position.status.as_str().to_string()),
        stage_key: Set(position.key.clone()),
        last_transition_at: Set(position.last_transition_at),
        due_at: Set(progress::due_at(definition, position)),
    }
}

/// A position replaces the customer's previous one in that journey.
fn state_upsert() -> OnConflict {
    OnConflict::columns([state::Column::CustomerId, state::Column::JourneyId])
        .update_columns([
            state::Column::ProfileId,
            state::Column::Version,
            state::Column::Stage,
            state::Column::StageEnteredAt,
            state::Column::Status,
            state::Column::StageKey,
            state::Column::LastTransitionAt,
            state::Column::DueAt,
        ])
        .to_owned()
}

/// The `journey_transitions` row of a transition.
fn transition_row(
    customer: &str,
    profile_id: &str,
    transition: &Transition,
) -> transition::ActiveModel {
    transition::ActiveModel {
        id: Set(Uuid::now_v7().to_string()),
        customer_id: Set(customer.to_string()),
        profile_id: Set(profile_id.to_string()),
        journey_id: Set(transition.journey_id.clone()),
        version: Set(transition.version),
        from_stage: Set(transition.from.clone().unwrap_or_default()),
        to_stage: Set(transition.to.clone().unwrap_or_default()),
        touchpoint_id: Set(transition.touchpoint_id.clone()),
        transition_at: Set(transition.at),
    }
}

/// The `journey.stage_changed` event of a transition.
fn stage_changed(
    customer: &str,
    transition: &Transition,
    position: &Position,
) -> cairn_contract::events::v1::ChangeEvent {
    let mut event = outbox::event(
        SOURCE,
        "journey.stage_changed",
        customer,
        Payload::StageChanged(StageChanged {
            journey_id: transition.journey_id.clone(),
            from_stage: transition.from.clone().unwrap_or_default(),
            to_stage: transition.to.clone().unwrap_or_default(),
            touchpoint_id: transition.touchpoint_id.clone().unwrap_or_default(),
            version: transition.version,
            status: position.status.as_str().to_string(),
        }),
    );
    event.occurred_at = Some(timestamp_to_proto(transition.at));
    event
}

/// The opaque version tag of a definition.
pub fn etag_of(definition: &JourneyDefinition) -> String {
    format!("v{}", definition.version)
}

fn row(
    document: &DefinitionDocument,
    version: i32,
    archived: bool,
) -> Result<definition::ActiveModel> {
    Ok(definition::ActiveModel {
        journey_id: Set(document.journey_id.clone()),
        version: Set(version),
        document: Set(serde_json::to_value(document).map_err(Error::internal)?),
        archived: Set(archived),
        updated_at: Set(Utc::now()),
    })
}

/// The domain position of a stored row.
pub fn position_of(row: &state::Model) -> Result<Position> {
    Ok(Position {
        journey_id: row.journey_id.clone(),
        version: row.version,
        stage: (!row.stage.is_empty()).then(|| row.stage.clone()),
        stage_entered_at: row.stage_entered_at,
        status: JourneyStatus::parse(&row.status)
            .ok_or_else(|| Error::internal(format!("unknown journey status {}", row.status)))?,
        key: row.stage_key.clone(),
        last_transition_at: row.last_transition_at,
    })
}

fn transition_of(row: transition::Model) -> Transition {
    Transition {
        journey_id: row.journey_id,
        version: row.version,
        from: (!row.from_stage.is_empty()).then_some(row.from_stage),
        to: (!row.to_stage.is_empty()).then_some(row.to_stage),
        touchpoint_id: row.touchpoint_id,
        at: row.transition_at,
    }
}

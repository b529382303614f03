//! The gRPC face of the recommendation service: each handler converts the
//! request, calls the engine or the store, and converts the answer back.

pub mod convert;

use std::sync::Arc;

use cairn_contract::recommendation::v1 as pb;
use cairn_contract::recommendation::v1::recommendation_service_server::RecommendationService;
use cairn_runtime::auth::{Principal, ScopeTable};
use cairn_runtime::common::{CustomerReference, timestamp_from_proto};
use cairn_runtime::pagination::{PageTokens, listing, page_size};
use cairn_runtime::{Error, Result, Violations};
use chrono::Utc;
use prost::Message;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::action::{ActionKind, ActionState, check_id};
use crate::domain::decision::{Decision, MAX_SHADOW_POLICIES, Policy, PolicyState};
use crate::engine::{BudgetRequest, DecideRequest, Engine};
use crate::evaluation;
use crate::storage::{DecisionFilter, Idempotent, RequestKey};

/// The protobuf name of the service.
pub const SERVICE_NAME: &str = "cairn.recommendation.v1.RecommendationService";

/// The scope each method needs, as the contract documents it.
pub fn scopes() -> ScopeTable {
    ScopeTable::from_contract(SERVICE_NAME)
}

/// The gRPC handlers.
pub struct RecommendationApi {
    engine: Arc<Engine>,
    tokens: PageTokens,
}

impl RecommendationApi {
    /// Handlers over `engine`; `tokens` sign page tokens.
    pub fn new(engine: Arc<Engine>, tokens: PageTokens) -> Self {
        Self { engine, tokens }
    }

    /// The profile id of `customer`, if `caller` may touch their data: with
    /// [`Self::admit_decision`], the one place where this service holds a
    /// customer's token to that customer ([`Principal::admit`]).
    async fn admit_customer(
        &self,
        caller: &Principal,
        customer: &CustomerReference,
    ) -> Result<uuid::Uuid> {
        let found = self.engine.resolve_customer(customer).await;
        caller.admit(found, |profile_id| *profile_id)
    }

    /// The decision `id`, if `caller` may see it (a decision of an
    /// anonymous customer is no customer's own).
    async fn admit_decision(&self, caller: &Principal, id: uuid::Uuid) -> Result<Decision> {
        let found = self.engine.store().decision(id).await.and_then(|decision| {
            decision.ok_or_else(|| Error::not_found("decision", id.to_string()))
        });
        caller.admit(found, |decision| decision.profile_id.unwrap_or_default())
    }

    async fn scorer_status(&self, action_ids: &[String]) -> Result<pb::GetScorerStatusResponse> {
        let store = self.engine.store();
        let policies = store.policies().await?;
        let actions = if action_ids.is_empty() {
            store
                .all_actions()
                .await?
                .into_iter()
                .filter(|action| action.state == ActionState::Active)
                .collect::<Vec<_>>()
        } else {
            let mut found = Vec::new();
            for id in action_ids {
                found.push(
                    store
                        .action(id)
                        .await?
                        .ok_or_else(|| Error::not_found("action", id.clone()))?,
                );
            }
            found
        };
        let ids: Vec<String> = actions.iter().map(|action| action.id.clone()).collect();
        let counts = store.action_counts(&ids).await?;
        // Fresh from the database, so every replica reports the same.
        let header = crate::storage::model::ModelStore::new(store.db().clone())
            .header()
            .await?;
        let model = self.engine.learner().model();
        let outcome = |counts: &crate::storage::ActionCounts, kind: pb::OutcomeType| {
            counts.outcomes.get(&(kind as i32)).copied().unwrap_or(0)
        };
        let statuses = actions
            .iter()
            .map(|action| {
                let counts = counts.get(&action.id).cloned().unwrap_or_default();
                let accepted = outcome(&counts, pb::OutcomeType::Accepted);
                let declined = outcome(&counts, pb::OutcomeType::Declined);
                let ignored = outcome(&counts, pb::OutcomeType::Ignored);
                let finals = accepted + declined + ignored;
                pb::ActionModelStatus {
                    action_id: action.id.clone(),
                    chosen_count: counts.chosen,
                    shown_count: outcome(&counts, pb::OutcomeType::Shown),
                    accepted_count: accepted,
                    declined_count: declined,
                    ignored_count: ignored,
                    observed_acceptance_rate: if finals > 0 {
                        accepted as f64 / finals as f64
                    } else {
                        0.0
                    },
                    mean_propensity: counts.mean_propensity,
                    cold_start: model.action_outcomes(&action.id)
                        < crate::domain::bandit::COLD_START_OUTCOMES,
                }
            })
            .collect();
        Ok(pb::GetScorerStatusResponse {
            live_policy: policies
                .iter()
                .find(|policy| policy.state == PolicyState::Live)
                .map(convert::policy_to_proto),
            shadow_policies: policies
                .iter()
                .filter(|policy| policy.state == PolicyState::Shadow)
                .map(convert::policy_to_proto)
                .collect(),
            model: Some(pb::ModelStatus {
                model_version: header.version,
                update_time: header
                    .update_time
                    .map(cairn_runtime::common::timestamp_to_proto),
                outcomes_learned: header.outcomes_learned,
                feature_names: header.features,
                outcome_window: Some(prost_types::Duration {
                    seconds: self.engine.settings().outcome_window.num_seconds(),
                    nanos: 0,
                }),
                actions: statuses,
            }),
        })
    }

    async fn shadow_report(
        &self,
        policy_id: &str,
        start: Option<chrono::DateTime<Utc>>,
        end: Option<chrono::DateTime<Utc>>,
        confidence: f64,
    ) -> Result<pb::ShadowReport> {
        let store = self.engine.store();
        let policy = store
            .policy(policy_id)
            .await?
            .ok_or_else(|| Error::not_found("policy", policy_id))?;
        let decisions: Vec<_> = store
            .decisions_for_evaluation(start, end, &[], 1_000_000)
            .await?
            .into_iter()
            .filter(|decision| {
                decision
                    .shadow_choices
                    .iter()
                    .any(|choice| choice.policy_id == policy_id)
            })
            .collect();
        if decisions.is_empty()
            && policy.state == PolicyState::Live
            && policy.promote_time.is_some_and(|t| t <= policy.create_time)
        {
            return Err(Error::FailedPrecondition(format!(
                "policy {policy_id} never ran in shadow"
            )));
        }
        let mut live_ids: Vec<String> = Vec::new();
        let mut agree = 0usize;
        let mut live_first: std::collections::BTreeMap<String, usize> = Default::default();
        let mut shadow_first: std::collections::BTreeMap<String, usize> = Default::default();
        for decision in &decisions {
            if !live_ids.contains(&decision.policy_id) {
                live_ids.push(decision.policy_id.clone());
            }
            let live = decision
                .candidates
                .iter()
                .find(|candidate| candidate.rank == 1)
                .map(|candidate| candidate.action_id.clone());
            let shadow = decision
                .shadow_choices
                .iter()
                .find(|choice| choice.policy_id == policy_id)
                .and_then(|choice| choice.actions.first())
                .map(|candidate| candidate.action_id.clone());
            if live == shadow {
                agree += 1;
            }
            if let Some(live) = live {
                *live_first.entry(live).or_default() += 1;
            }
            if let Some(shadow) = shadow {
                *shadow_first.entry(shadow).or_default() += 1;
            }
        }
        let total = decisions.len().max(1) as f64;
        let mut action_ids: Vec<String> = live_first
            .keys()
            .chain(shadow_first.keys())
            .cloned()
            .collect();
        action_ids.sort();
        action_ids.dedup();
        let mut shares: Vec<pb::ActionShare> = action_ids
            .into_iter()
            .map(|id| pb::ActionShare {
                live_share: live_first.get(&id).copied().unwrap_or(0) as f64 / total,
                shadow_share: shadow_first.get(&id).copied().unwrap_or(0) as f64 / total,
                action_id: id,
            })
            .collect();
        shares.sort_by(|a, b| b.shadow_share.total_cmp(&a.shadow_share));
        shares.truncate(100);
        let compared = decisions.len() as i64;
        let model = self.engine.learner().model();
        let scorer = policy.scorer;
        let evaluation = tokio::task::spawn_blocking(move || {
            evaluation::evaluate(&model, &scorer, &decisions, confidence)
        })
        .await
        .map_err(Error::internal)?;
        let currency = self.engine.currency().await?;
        Ok(pb::ShadowReport {
            policy_id: policy_id.to_string(),
            live_policy_ids: live_ids,
            decisions_compared: compared,
            agreement_rate: if compared > 0 {
                agree as f64 / total
            } else {
                0.0
            },
            evaluation: Some(convert::evaluation_to_proto(&evaluation, currency)),
            action_shares: shares,
        })
    }
}

fn decode<T: Message + Default>(bytes: &[u8]) -> Result<T> {
    T::decode(bytes).map_err(Error::internal)
}

fn required_uuid(field: &str, text: &str) -> Result<Uuid> {
    if text.is_empty() {
        return Err(Error::invalid(field, "required"));
    }
    Uuid::parse_str(text).map_err(|_| Error::invalid(field, "must be a UUID"))
}

fn budget_request(
    customer: Option<cairn_contract::common::v1::CustomerRef>,
    channel: i32,
    purpose: &str,
    kind: i32,
    transactional: bool,
    violations: &mut Violations,
) -> Option<BudgetRequest> {
    let customer = violations.check(CustomerReference::from_proto("customer", customer));
    let channel = violations.check(cairn_runtime::common::channel("channel", channel));
    violations.check(crate::domain::action::check_word("purpose", purpose));
    let kind = if kind == 0 {
        Some(ActionKind::Information)
    } else {
        violations.check(convert::kind("kind", kind))
    };
    Some(BudgetRequest {
        customer: customer?,
        channel: channel? as i32,
        purpose: if purpose.is_empty() {
            "service".into()
        } else {
            purpose.to_string()
        },
        kind: kind?,
        transactional,
    })
}

fn action_filter_kind(raw: i32) -> Result<Option<&'static str>> {
    if raw == 0 {
        return Ok(None);
    }
    convert::kind("kind", raw).map(|kind| Some(kind.as_str()))
}

#[tonic::async_trait]
impl RecommendationService for RecommendationApi {
    async fn create_action(
        &self,
        request: Request<pb::CreateActionRequest>,
    ) -> Result<Response<pb::CreateActionResponse>, Status> {
        let request = request.into_inner();
        let request_id = convert::request_id("request_id", &request.request_id)?;
        let fingerprint = convert::fingerprint(&request.encode_to_vec());
        let action = convert::new_action(request.action, Utc::now())?;
        let key = request_id.map(|id| RequestKey {
            key: format!("create_action:{id}"),
            fingerprint,
            profile_id: String::new(),
        });
        let encode = |action: &crate::domain::action::Action| {
            pb::CreateActionResponse {
                action: Some(convert::action_to_proto(action)),
            }
            .encode_to_vec()
        };
        match self
            .engine
            .store()
            .create_action(action, key.as_ref(), encode)
            .await?
        {
            Idempotent::Fresh(action) => Ok(Response::new(pb::CreateActionResponse {
                action: Some(convert::action_to_proto(&action)),
            })),
            Idempotent::Replay(first) => Ok(Response::new(decode(&first)?)),
        }
    }

    async fn get_action(
        &self,
        request: Request<pb::GetActionRequest>,
    ) -> Result<Response<pb::GetActionResponse>, Status> {
        let id = request.into_inner().action_id;
        check_id("action_id", &id)?;
        let action = self
            .engine
            .store()
            .action(&id)
            .await?
            .ok_or_else(|| Error::not_found("action", id))?;
        Ok(Response::new(pb::GetActionResponse {
            action: Some(convert::action_to_proto(&action)),
        }))
    }

    async fn list_actions(
        &self,
        request: Request<pb::ListActionsRequest>,
    ) -> Result<Response<pb::ListActionsResponse>, Status> {
        let request = request.into_inner();
        let page_listing = listing("recommendation.list_actions", &request);
        let mut violations = Violations::new();
        let limit = violations.check(page_size(request.page_size));
        let after = violations.check(self.tokens.decode(&page_listing, &request.page_token));
        let kind = violations.check(action_filter_kind(request.kind));
        let channel = if request.channel == 0 {
            Some(None)
        } else {
            violations
                .check(cairn_runtime::common::channel("channel", request.channel))
                .map(|channel| Some(channel as i32))
        };
        let state = match pb::ActionState::try_from(request.state) {
            Ok(pb::ActionState::Unspecified) => Some(None),
            Ok(pb::ActionState::Active) => Some(Some("active")),
            Ok(pb::ActionState::Retired) => Some(Some("retired")),
            Err(_) => {
                violations.add("state", "not a known ActionState value");
                None
            }
        };
        violations.finish()?;
        let (Some(limit), Some(after), Some(kind), Some(channel), Some(state)) =
            (limit, after, kind, channel, state)
        else {
            return Err(Error::internal("checked fields missing").into());
        };
        let (actions, next) = self
            .engine
            .store()
            .list_actions(kind, state, channel, after, limit)
            .await?;
        Ok(Response::new(pb::ListActionsResponse {
            actions: actions.iter().map(convert::action_to_proto).collect(),
            next_page_token: next
                .map(|n| self.tokens.encode(&page_listing, &n))
                .unwrap_or_default(),
        }))
    }

    async fn update_action(
        &self,
        request: Request<pb::UpdateActionRequest>,
    ) -> Result<Response<pb::UpdateActionResponse>, Status> {
        let request = request.into_inner();
        let Some(wire) = request.action else {
            return Err(Error::invalid("action", "required").into());
        };
        check_id("action.action_id", &wire.action_id)?;
        let paths = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid("update_mask", "required: the fields to change").into());
        }
        const UPDATABLE: &[&str] = &[
            "name",
            "description",
            "category",
            "product_offering_id",
            "channels",
            "valid_for",
            "value",
            "business_priority",
            "eligibility_rule",
            "purpose",
            "transactional",
            "caps",
            "volume_limit",
            "decline_cooldown",
            "properties",
        ];
        let mut violations = Violations::new();
        for path in &paths {
            if !UPDATABLE.contains(&path.as_str()) {
                violations.add(
                    "update_mask",
                    format!("{path} is not an updatable path of an action"),
                );
            }
        }
        let expected = violations.check(convert::etag("action.etag", &wire.etag));
        violations.finish()?;
        let id = wire.action_id.clone();
        let action = self
            .engine
            .store()
            .change_action(&id, expected.flatten(), false, |action| {
                let mut violations = Violations::new();
                convert::apply_action("action", wire, Some(&paths), action, &mut violations);
                violations.check(action.check("action"));
                violations.finish()?;
                Ok(true)
            })
            .await?;
        Ok(Response::new(pb::UpdateActionResponse {
            action: Some(convert::action_to_proto(&action)),
        }))
    }

    async fn retire_action(
        &self,
        request: Request<pb::RetireActionRequest>,
    ) -> Result<Response<pb::RetireActionResponse>, Status> {
        let id = request.into_inner().action_id;
        check_id("action_id", &id)?;
        let action = self
            .engine
            .store()
            .change_action(&id, None, true, |action| {
                if action.state == ActionState::Retired {
                    return Ok(false);
                }
                action.state = ActionState::Retired;
                action.retire_time = Some(Utc::now());
                Ok(true)
            })
            .await?;
        Ok(Response::new(pb::RetireActionResponse {
            action: Some(convert::action_to_proto(&action)),
        }))
    }

    async fn decide(
        &self,
        request: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::DecideResponse>, Status> {
        let caller = Principal::of(&request)?;
        let request = request.into_inner();
        if request.explain {
            // The left-out candidates show the operator's whole catalogue,
            // with internal names and targeting rules: for agents' screens.
            caller.require_not_customer(
                "explain (the left-out candidates, with the operator's rules)",
            )?;
        }
        let fingerprint = convert::fingerprint(&request.encode_to_vec());
        let mut violations = Violations::new();
        let customer =
            violations.check(CustomerReference::from_proto("customer", request.customer));
        let channel = violations.check(cairn_runtime::common::channel("channel", request.channel));
        let context = convert::context(request.context, &mut violations);
        let max_actions = match request.max_actions {
            0 => Some(1),
            1..=10 => Some(request.max_actions as usize),
            other => {
                violations.add("max_actions", format!("1 to 10, or 0 for 1; got {other}"));
                None
            }
        };
        let request_id = violations.check(convert::request_id("request_id", &request.request_id));
        violations.finish()?;
        let (Some(customer), Some(channel), Some(max_actions), Some(request_id)) =
            (customer, channel, max_actions, request_id)
        else {
            return Err(Error::internal("checked fields missing").into());
        };
        // Before the idempotency replay, so that a customer's token never
        // replays another customer's decision.
        if caller.is_customer() {
            self.admit_customer(&caller, &customer).await?;
        }
        let explain = request.explain;
        let decided = self
            .engine
            .decide(
                DecideRequest {
                    customer,
                    channel: channel as i32,
                    context,
                    max_actions,
                    request_id,
                    fingerprint,
                    key_owner: caller.customer(),
                },
                |decision| convert::decide_response(decision, explain).encode_to_vec(),
            )
            .await?;
        match decided {
            Idempotent::Fresh(decision) => {
                Ok(Response::new(convert::decide_response(&decision, explain)))
            }
            Idempotent::Replay(first) => Ok(Response::new(decode(&first)?)),
        }
    }

    async fn record_outcome(
        &self,
        request: Request<pb::RecordOutcomeRequest>,
    ) -> Result<Response<pb::RecordOutcomeResponse>, Status> {
        let caller = Principal::of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let decision_id = violations.check(required_uuid("decision_id", &request.decision_id));
        if request.action_id.is_empty() {
            violations.add("action_id", "required");
        }
        let kind = match pb::OutcomeType::try_from(request.outcome) {
            Ok(pb::OutcomeType::Unspecified) => {
                violations.add("outcome", "required: one of the OutcomeType values");
                None
            }
            Ok(kind) => Some(kind as i32),
            Err(_) => {
                violations.add("outcome", "not a known OutcomeType value");
                None
            }
        };
        let channel = if request.channel == 0 {
            Some(None)
        } else {
            violations
                .check(cairn_runtime::common::channel("channel", request.channel))
                .map(|channel| Some(channel as i32))
        };
        let occur_time = match request.occur_time {
            None => Some(None),
            Some(time) => violations
                .check(timestamp_from_proto("occur_time", &time))
                .map(Some),
        };
        violations.finish()?;
        let (Some(decision_id), Some(kind), Some(channel), Some(occur_time)) =
            (decision_id, kind, channel, occur_time)
        else {
            return Err(Error::internal("checked fields missing").into());
        };
        if caller.is_customer() {
            self.admit_decision(&caller, decision_id).await?;
        }
        let (outcome, duplicate) = self
            .engine
            .record_outcome(
                decision_id,
                &request.action_id,
                kind,
                channel,
                occur_time,
                pb::OutcomeSource::Caller,
            )
            .await?;
        Ok(Response::new(pb::RecordOutcomeResponse {
            outcome: Some(convert::outcome_to_proto(&outcome)),
            duplicate,
        }))
    }

    async fn get_decision(
        &self,
        request: Request<pb::GetDecisionRequest>,
    ) -> Result<Response<pb::GetDecisionResponse>, Status> {
        let caller = Principal::of(&request)?;
        let request = request.into_inner();
        let id = required_uuid("decision_id", &request.decision_id)?;
        let full = request.view == pb::DecisionView::Full as i32;
        if full {
            // Features, every candidate's score and the shadow choices are
            // the operator's model, not the customer's data.
            caller.require_not_customer("view DECISION_VIEW_FULL")?;
        }
        let decision = self.admit_decision(&caller, id).await?;
        Ok(Response::new(pb::GetDecisionResponse {
            decision: Some(convert::decision_to_proto(&decision, full)),
        }))
    }

    async fn list_decisions(
        &self,
        request: Request<pb::ListDecisionsRequest>,
    ) -> Result<Response<pb::ListDecisionsResponse>, Status> {
        let caller = Principal::of(&request)?;
        let request = request.into_inner();
        let page_listing = listing("recommendation.list_decisions", &request);
        if request.view == pb::DecisionView::Full as i32 {
            caller.require_not_customer("view DECISION_VIEW_FULL")?;
        }
        let mut violations = Violations::new();
        let limit = violations.check(page_size(request.page_size));
        let after = violations.check(self.tokens.decode(&page_listing, &request.page_token));
        let range = violations.check(convert::time_range("decide_time", request.decide_time));
        let channel = if request.channel == 0 {
            Some(None)
        } else {
            violations
                .check(cairn_runtime::common::channel("channel", request.channel))
                .map(|channel| Some(channel as i32))
        };
        let customer = match request.customer {
            None => Some(None),
            Some(customer) => violations
                .check(CustomerReference::from_proto("customer", Some(customer)))
                .map(Some),
        };
        let outcome = match pb::OutcomeType::try_from(request.outcome) {
            Ok(pb::OutcomeType::Unspecified) => Some(None),
            Ok(kind) => Some(Some(kind as i32)),
            Err(_) => {
                violations.add("outcome", "not a known OutcomeType value");
                None
            }
        };
        violations.finish()?;
        let (
            Some(limit),
            Some(after),
            Some((start, end)),
            Some(channel),
            Some(customer),
            Some(outcome),
        ) = (limit, after, range, channel, customer, outcome)
        else {
            return Err(Error::internal("checked fields missing").into());
        };
        let customer_id = match customer {
            None => {
                caller.require_not_customer("listing decisions without a customer")?;
                None
            }
            Some(reference) if caller.is_customer() => {
                Some(self.admit_customer(&caller, &reference).await?)
            }
            Some(CustomerReference::ProfileId(id)) => Some(id),
            Some(reference) => Some(self.engine.resolve_customer(&reference).await?),
        };
        let filter = DecisionFilter {
            customer_id,
            channel,
            action_id: (!request.action_id.is_empty()).then_some(request.action_id),
            policy_id: (!request.policy_id.is_empty()).then_some(request.policy_id),
            outcome,
            start,
            end,
        };
        let (decisions, next) = self
            .engine
            .store()
            .list_decisions(&filter, after, limit)
            .await?;
        let full = request.view == pb::DecisionView::Full as i32;
        Ok(Response::new(pb::ListDecisionsResponse {
            decisions: decisions
                .iter()
                .map(|decision| convert::decision_to_proto(decision, full))
                .collect(),
            next_page_token: next
                .map(|n| self.tokens.encode(&page_listing, &n))
                .unwrap_or_default(),
        }))
    }

    async fn get_contact_policy(
        &self,
        _request: Request<pb::GetContactPolicyRequest>,
    ) -> Result<Response<pb::GetContactPolicyResponse>, Status> {
        let policy = self.engine.store().contact_policy().await?;
        Ok(Response::new(pb::GetContactPolicyResponse {
            contact_policy: Some(convert::contact_policy_to_proto(&policy)),
        }))
    }

    async fn update_contact_policy(
        &self,
        request: Request<pb::UpdateContactPolicyRequest>,
    ) -> Result<Response<pb::UpdateContactPolicyResponse>, Status> {
        let request = request.into_inner();
        let wire = request.contact_policy.unwrap_or_default();
        let paths = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid("update_mask", "required: the fields to change").into());
        }
        let expected = convert::etag("contact_policy.etag", &wire.etag)?;
        // Check the new values before taking the row lock.
        let mut probe = self.engine.store().contact_policy().await?;
        convert::apply_contact_policy(wire.clone(), &paths, &mut probe)?;
        let policy = self
            .engine
            .store()
            .update_contact_policy(expected, |policy| {
                // Checked above: the same values apply without violations.
                let _ = convert::apply_contact_policy(wire, &paths, policy);
            })
            .await?;
        Ok(Response::new(pb::UpdateContactPolicyResponse {
            contact_policy: Some(convert::contact_policy_to_proto(&policy)),
        }))
    }

    async fn check_contact_budget(
        &self,
        request: Request<pb::CheckContactBudgetRequest>,
    ) -> Result<Response<pb::CheckContactBudgetResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let budget_request = budget_request(
            request.customer,
            request.channel,
            &request.purpose,
            request.kind,
            request.transactional,
            &mut violations,
        );
        violations.finish()?;
        let Some(budget_request) = budget_request else {
            return Err(Error::internal("checked fields missing").into());
        };
        let (_, budget, _) = self.engine.budget(&budget_request).await?;
        Ok(Response::new(pb::CheckContactBudgetResponse {
            budget: Some(convert::budget_to_proto(&budget)),
        }))
    }

    async fn reserve_contact(
        &self,
        request: Request<pb::ReserveContactRequest>,
    ) -> Result<Response<pb::ReserveContactResponse>, Status> {
        let request = request.into_inner();
        let fingerprint = convert::fingerprint(&request.encode_to_vec());
        let mut violations = Violations::new();
        let budget_request = budget_request(
            request.customer,
            request.channel,
            &request.purpose,
            request.kind,
            request.transactional,
            &mut violations,
        );
        if request.reference.len() > 256 {
            violations.add("reference", "at most 256 bytes");
        }
        let request_id =
            match violations.check(convert::request_id("request_id", &request.request_id)) {
                Some(Some(id)) => Some(id),
                Some(None) => {
                    violations.add("request_id", "required: an idempotency key");
                    None
                }
                None => None,
            };
        violations.finish()?;
        let (Some(budget_request), Some(request_id)) = (budget_request, request_id) else {
            return Err(Error::internal("checked fields missing").into());
        };
        let mut key = RequestKey {
            key: format!("reserve_contact:{request_id}"),
            fingerprint,
            profile_id: String::new(),
        };
        let store = self.engine.store();
        if let Some(first) = store.replay(&key).await? {
            let mut first: pb::ReserveContactResponse = decode(&first)?;
            first.duplicate = true;
            return Ok(Response::new(first));
        }
        let (profile, granted, budget, reservation) = self.engine.reserve(&budget_request).await?;
        key.profile_id = profile.to_string();
        let response = pb::ReserveContactResponse {
            granted,
            budget: Some(convert::budget_to_proto(&budget)),
            reservation_id: if granted {
                Uuid::now_v7().to_string()
            } else {
                String::new()
            },
            duplicate: false,
        };
        match store.remember(&key, response.encode_to_vec()).await {
            Ok(true) => Ok(Response::new(response)),
            outcome => {
                if let Some(reservation) = reservation {
                    self.engine.counters().release(reservation).await;
                }
                outcome?;
                // Another call with this key answered first: its answer stands.
                let first = store
                    .replay(&key)
                    .await?
                    .ok_or_else(|| Error::Aborted("retry".into()))?;
                let mut first: pb::ReserveContactResponse = decode(&first)?;
                first.duplicate = true;
                Ok(Response::new(first))
            }
        }
    }

    async fn get_scorer_status(
        &self,
        request: Request<pb::GetScorerStatusRequest>,
    ) -> Result<Response<pb::GetScorerStatusResponse>, Status> {
        let request = request.into_inner();
        if request.action_ids.len() > 1000 {
            return Err(Error::invalid("action_ids", "at most 1000").into());
        }
        let status = self.scorer_status(&request.action_ids).await?;
        Ok(Response::new(status))
    }

    async fn evaluate_policy(
        &self,
        request: Request<pb::EvaluatePolicyRequest>,
    ) -> Result<Response<pb::EvaluatePolicyResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let range = violations.check(convert::time_range("decide_time", request.decide_time));
        let confidence = violations.check(convert::confidence(
            "confidence_level",
            request.confidence_level,
        ));
        let max = match request.max_decisions {
            0 => Some(100_000),
            1..=1_000_000 => Some(request.max_decisions as u64),
            _ => {
                violations.add("max_decisions", "1 to 1,000,000, or 0 for 100,000");
                None
            }
        };
        let mut channels = Vec::new();
        for (i, raw) in request.channels.iter().enumerate() {
            if let Some(channel) = violations.check(cairn_runtime::common::channel(
                &format!("channels[{i}]"),
                *raw,
            )) {
                channels.push(channel as i32);
            }
        }
        let scorer = match request.candidate {
            None => {
                violations.add("candidate", "required: a policy_id or a scorer");
                None
            }
            Some(pb::evaluate_policy_request::Candidate::Scorer(scorer)) => {
                violations.check(convert::scorer("scorer", Some(scorer)))
            }
            Some(pb::evaluate_policy_request::Candidate::PolicyId(id)) => {
                match self.engine.store().policy(&id).await? {
                    Some(policy) => Some(policy.scorer),
                    None => return Err(Error::not_found("policy", id).into()),
                }
            }
        };
        violations.finish()?;
        let (Some((start, end)), Some(confidence), Some(max), Some(scorer)) =
            (range, confidence, max, scorer)
        else {
            return Err(Error::internal("checked fields missing").into());
        };
        let start = start.or_else(|| Some(Utc::now() - chrono::Duration::days(30)));
        let decisions = self
            .engine
            .store()
            .decisions_for_evaluation(start, end, &channels, max)
            .await?;
        let model = self.engine.learner().model();
        let evaluation = tokio::task::spawn_blocking(move || {
            evaluation::evaluate(&model, &scorer, &decisions, confidence)
        })
        .await
        .map_err(Error::internal)?;
        if evaluation.decisions_evaluated == 0 {
            return Err(Error::FailedPrecondition(
                "no logged decision in the range has a final outcome to evaluate against".into(),
            )
            .into());
        }
        let currency = self.engine.currency().await?;
        Ok(Response::new(pb::EvaluatePolicyResponse {
            evaluation: Some(convert::evaluation_to_proto(&evaluation, currency)),
        }))
    }

    async fn create_policy(
        &self,
        request: Request<pb::CreatePolicyRequest>,
    ) -> Result<Response<pb::CreatePolicyResponse>, Status> {
        let request = request.into_inner();
        let fingerprint = convert::fingerprint(&request.encode_to_vec());
        let mut violations = Violations::new();
        let request_id = violations.check(convert::request_id("request_id", &request.request_id));
        let Some(wire) = request.policy else {
            return Err(Error::invalid("policy", "required").into());
        };
        let id = if wire.policy_id.is_empty() {
            Uuid::now_v7().to_string()
        } else {
            violations.check(check_id("policy.policy_id", &wire.policy_id));
            wire.policy_id.clone()
        };
        if wire.display_name.trim().is_empty() || wire.display_name.len() > 200 {
            violations.add("policy.display_name", "required, 1 to 200 bytes");
        }
        if wire.description.len() > 2000 {
            violations.add("policy.description", "at most 2000 bytes");
        }
        let scorer = violations.check(convert::scorer("policy.scorer", wire.scorer));
        violations.finish()?;
        let (Some(request_id), Some(scorer)) = (request_id, scorer) else {
            return Err(Error::internal("checked fields missing").into());
        };
        let policy = Policy {
            id,
            display_name: wire.display_name,
            description: wire.description,
            scorer,
            state: PolicyState::Shadow,
            create_time: Utc::now(),
            promote_time: None,
            retire_time: None,
        };
        let key = request_id.map(|id| RequestKey {
            key: format!("create_policy:{id}"),
            fingerprint,
            profile_id: String::new(),
        });
        let encode = |policy: &Policy| {
            pb::CreatePolicyResponse {
                policy: Some(convert::policy_to_proto(policy)),
            }
            .encode_to_vec()
        };
        match self
            .engine
            .store()
            .create_policy(policy, MAX_SHADOW_POLICIES, key.as_ref(), encode)
            .await?
        {
            Idempotent::Fresh(policy) => Ok(Response::new(pb::CreatePolicyResponse {
                policy: Some(convert::policy_to_proto(&policy)),
            })),
            Idempotent::Replay(first) => Ok(Response::new(decode(&first)?)),
        }
    }

    async fn get_policy(
        &self,
        request: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::GetPolicyResponse>, Status> {
        let id = request.into_inner().policy_id;
        check_id("policy_id", &id)?;
        let policy = self
            .engine
            .store()
            .policy(&id)
            .await?
            .ok_or_else(|| Error::not_found("policy", id))?;
        Ok(Response::new(pb::GetPolicyResponse {
            policy: Some(convert::policy_to_proto(&policy)),
        }))
    }

    async fn list_policies(
        &self,
        request: Request<pb::ListPoliciesRequest>,
    ) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        let request = request.into_inner();
        let page_listing = listing("recommendation.list_policies", &request);
        let mut violations = Violations::new();
        let limit = violations.check(page_size(request.page_size));
        let after = violations.check(self.tokens.decode(&page_listing, &request.page_token));
        let state = match pb::PolicyState::try_from(request.state) {
            Ok(pb::PolicyState::Unspecified) => Some(None),
            Ok(pb::PolicyState::Live) => Some(Some(PolicyState::Live)),
            Ok(pb::PolicyState::Shadow) => Some(Some(PolicyState::Shadow)),
            Ok(pb::PolicyState::Retired) => Some(Some(PolicyState::Retired)),
            Err(_) => {
                violations.add("state", "not a known PolicyState value");
                None
            }
        };
        violations.finish()?;
        let (Some(limit), Some(after), Some(state)) = (limit, after, state) else {
            return Err(Error::internal("checked fields missing").into());
        };
        let policies: Vec<Policy> = self
            .engine
            .store()
            .policies()
            .await?
            .into_iter()
            .filter(|policy| state.is_none_or(|state| policy.state == state))
            .collect();
        let start = match &after {
            Some(id) => policies
                .iter()
                .position(|policy| &policy.id == id)
                .map(|i| i + 1)
                .ok_or_else(|| Error::invalid("page_token", "not a token of this listing"))?,
            None => 0,
        };
        let page: Vec<&Policy> = policies.iter().skip(start).take(limit as usize).collect();
        let next = (start + page.len() < policies.len())
            .then(|| {
                page.last()
                    .map(|policy| self.tokens.encode(&page_listing, &policy.id))
            })
            .flatten()
            .unwrap_or_default();
        Ok(Response::new(pb::ListPoliciesResponse {
            policies: page.into_iter().map(convert::policy_to_proto).collect(),
            next_page_token: next,
        }))
    }

    async fn get_shadow_report(
        &self,
        request: Request<pb::GetShadowReportRequest>,
    ) -> Result<Response<pb::GetShadowReportResponse>, Status> {
        let request = request.into_inner();
        check_id("policy_id", &request.policy_id)?;
        let (start, end) = convert::time_range("decide_time", request.decide_time)?;
        let confidence = convert::confidence("confidence_level", request.confidence_level)?;
        let report = self
            .shadow_report(&request.policy_id, start, end, confidence)
            .await?;
        Ok(Response::new(pb::GetShadowReportResponse {
            report: Some(report),
        }))
    }

    async fn promote_policy(
        &self,
        request: Request<pb::PromotePolicyRequest>,
    ) -> Result<Response<pb::PromotePolicyResponse>, Status> {
        let request = request.into_inner();
        check_id("policy_id", &request.policy_id)?;
        let expected = (!request.expected_live_policy_id.is_empty())
            .then_some(request.expected_live_policy_id.as_str());
        let (policy, previous) = self
            .engine
            .store()
            .promote_policy(&request.policy_id, expected)
            .await?;
        Ok(Response::new(pb::PromotePolicyResponse {
            policy: Some(convert::policy_to_proto(&policy)),
            previous_policy: previous.as_ref().map(convert::policy_to_proto),
        }))
    }

    async fn retire_policy(
        &self,
        request: Request<pb::RetirePolicyRequest>,
    ) -> Result<Response<pb::RetirePolicyResponse>, Status> {
        let id = request.into_inner().policy_id;
        check_id("policy_id", &id)?;
        let policy = self.engine.store().retire_policy(&id).await?;
        Ok(Response::new(pb::RetirePolicyResponse {
            policy: Some(convert::policy_to_proto(&policy)),
        }))
    }

    async fn export_customer_decisions(
        &self,
        request: Request<pb::ExportCustomerDecisionsRequest>,
    ) -> Result<Response<pb::ExportCustomerDecisionsResponse>, Status> {
        let customer = CustomerReference::from_proto("customer", request.into_inner().customer)?;
        let customer_id = self.engine.resolve_customer(&customer).await?;
        let filter = DecisionFilter {
            customer_id: Some(customer_id),
            channel: None,
            action_id: None,
            policy_id: None,
            outcome: None,
            start: None,
            end: None,
        };
        let mut decisions = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = self
                .engine
                .store()
                .list_decisions(&filter, after, 500)
                .await?;
            decisions.extend(
                page.iter()
                    .map(|decision| convert::decision_to_proto(decision, true)),
            );
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(Response::new(pb::ExportCustomerDecisionsResponse {
            decisions,
        }))
    }
}

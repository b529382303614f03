//! The decision engine: Decide, the contact budget shared with the feedback
//! service, and outcomes. It joins the catalogue and the policies (cached
//! per replica and reloaded when their version changes), the profile
//! service (who the customer is, consent, their quiet hours), the contact
//! counters in the shared state store and the learned model.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use cairn_contract::common::v1::Channel;
use cairn_contract::profile::v1::ContactVerdict;
use cairn_contract::recommendation::v1::{
    ExclusionReason, NoActionReason, OutcomeSource, OutcomeType,
};
use cairn_runtime::common::{CustomerReference, TypedValue};
use cairn_runtime::rules::Rule;
use cairn_runtime::{Error, Result};
use chrono::{DateTime, Duration, SubsecRound, Utc};
use chrono_tz::Tz;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde_json::json;
use tokio::sync::RwLock;
use uuid::Uuid;

use crate::counters::{Counter, Counters, Limit, Reservation};
use crate::domain::action::Action;
use crate::domain::bandit::{self, Scored, Scorer};
use crate::domain::contact::{ChannelPolicy, ContactPolicy, Periods};
use crate::domain::decision::{
    ChosenAction, Decision, Driver, Explanation, LoggedCandidate, Outcome, Policy, PolicyState,
    ShadowChoice,
};
use crate::domain::features::{self, CustomerView, DecisionContext};
use crate::learning::Learner;
use crate::profiles::{ContactAnswer, ProfileDirectory};
use crate::storage::{self, Idempotent, RecommendationStore, RequestKey};

/// What the engine is configured with.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Refuse unknown customers with NOT_FOUND instead of deciding for
    /// them as anonymous.
    pub refuse_unknown_customers: bool,
    /// How long after a decision outcomes are accepted.
    pub outcome_window: Duration,
    /// String attributes that become categorical features.
    pub categorical_attributes: Vec<String>,
}

/// The lower-case name of a channel without its prefix ("sms", "mobile_app").
pub fn channel_name(channel: i32) -> String {
    Channel::try_from(channel)
        .map(|channel| {
            channel
                .as_str_name()
                .trim_start_matches("CHANNEL_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| channel.to_string())
}

/// A Decide request, checked.
#[derive(Debug, Clone)]
pub struct DecideRequest {
    /// Who.
    pub customer: CustomerReference,
    /// The channel's enum number.
    pub channel: i32,
    /// Where.
    pub context: DecisionContext,
    /// 1 to 10.
    pub max_actions: usize,
    /// The caller's idempotency key.
    pub request_id: Option<String>,
    /// Hash of the request's content, for the key.
    pub fingerprint: String,
    /// The customer whose own token made the call, when one did: their
    /// idempotency keys live in a namespace of their own, so that one
    /// customer's key never meets another's (nor a system's), and a key
    /// another customer used answers like any new key.
    pub key_owner: Option<Uuid>,
}

/// A contact-budget question, checked.
#[derive(Debug, Clone)]
pub struct BudgetRequest {
    /// Who.
    pub customer: CustomerReference,
    /// The channel's enum number.
    pub channel: i32,
    /// The consent purpose.
    pub purpose: String,
    /// The kind, for complaint suppression.
    pub kind: crate::domain::action::ActionKind,
    /// Transactional contacts are not capped or suppressed.
    pub transactional: bool,
}

/// A customer's budget on a channel.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Budget {
    /// Allowed now.
    pub allowed: bool,
    /// `ExclusionReason` number when not.
    pub reason: i32,
    /// Why, in words.
    pub detail: String,
    /// Contacts on the channel today.
    pub used_today: i64,
    /// The channel's daily cap.
    pub max_per_day: u32,
    /// Contacts on the channel this week.
    pub used_this_week: i64,
    /// The channel's weekly cap.
    pub max_per_week: u32,
    /// When a contact would next be allowed, when known.
    pub next_allowed_time: Option<DateTime<Utc>>,
}

struct CachedAction {
    action: Action,
    rule: Option<Rule>,
}

#[derive(Default)]
struct Caches {
    versions: HashMap<String, i64>,
    catalogue: Arc<Vec<CachedAction>>,
    contact_policy: Option<Arc<ContactPolicy>>,
    policies: Arc<Vec<Policy>>,
}

/// A snapshot of what a call works with.
struct View {
    catalogue: Arc<Vec<CachedAction>>,
    contact_policy: Arc<ContactPolicy>,
    policies: Arc<Vec<Policy>>,
}

/// The engine of one replica.
pub struct Engine {
    store: RecommendationStore,
    profiles: ProfileDirectory,
    counters: Counters,
    learner: Arc<Learner>,
    settings: EngineSettings,
    caches: RwLock<Caches>,
}

/// A candidate while Decide works on it.
struct Working<'a> {
    cached: &'a CachedAction,
    reason: i32,
    detail: String,
    score: f64,
    propensity: f64,
    estimate: Option<bandit::Estimate>,
}

fn left_out(working: &mut Working<'_>, reason: ExclusionReason, detail: impl Into<String>) {
    working.reason = reason as i32;
    working.detail = detail.into();
}

fn counts_text(label: &str, used: i64, max: u32, period: &str) -> String {
    format!("{label}: {used} of {max} {period}")
}

fn json_value(value: &TypedValue) -> serde_json::Value {
    match value {
        TypedValue::String(text) => json!(text),
        TypedValue::Number(number) => json!(number),
        TypedValue::Bool(flag) => json!(flag),
        TypedValue::Timestamp(time) => json!(time.to_rfc3339()),
        TypedValue::List(values) => json!(values),
    }
}

fn key_value_json(map: &BTreeMap<String, TypedValue>) -> serde_json::Value {
    serde_json::Value::Object(
        map.iter()
            .map(|(name, value)| (name.clone(), json_value(value)))
            .collect(),
    )
}

impl Engine {
    /// An engine over its stores and peers.
    pub fn new(
        store: RecommendationStore,
        profiles: ProfileDirectory,
        counters: Counters,
        learner: Arc<Learner>,
        settings: EngineSettings,
    ) -> Self {
        Self {
            store,
            profiles,
            counters,
            learner,
            settings,
            caches: RwLock::new(Caches::default()),
        }
    }

    /// The store.
    pub fn store(&self) -> &RecommendationStore {
        &self.store
    }

    /// The learner.
    pub fn learner(&self) -> &Arc<Learner> {
        &self.learner
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The settings.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// The catalogue, contact policy and policies as of now: one query for
    /// their versions, and a reload of what changed, so a change applies to
    /// every call that starts after it returned, on every replica.
    async fn view(&self) -> Result<View> {
        let versions = self.store.versions().await?;
        {
            let caches = self.caches.read().await;
            if caches.versions == versions
                && let Some(contact_policy) = &caches.contact_policy
            {
                return Ok(View {
                    catalogue: caches.catalogue.clone(),
                    contact_policy: contact_policy.clone(),
                    policies: caches.policies.clone(),
                });
            }
        }
        let mut caches = self.caches.write().await;
        let changed = |caches: &Caches, name: &str| caches.versions.get(name) != versions.get(name);
        let first = caches.contact_policy.is_none();
        let (catalogue_changed, contact_changed, policies_changed) = (
            changed(&caches, storage::CATALOGUE) || first,
            changed(&caches, storage::CONTACT_POLICY) || first,
            changed(&caches, storage::POLICIES) || first,
        );
        if catalogue_changed {
            let actions = self.store.all_actions().await?;
            let catalogue = actions
                .into_iter()
                .map(|action| {
                    let rule = action.compile_rule("eligibility_rule").unwrap_or_else(|error| {
                        tracing::warn!(action = %action.id, %error, "a stored eligibility rule no longer compiles; the action is left out");
                        Rule::compile("eligibility_rule", "false", &[]).ok()
                    });
                    CachedAction { action, rule }
                })
                .collect();
            caches.catalogue = Arc::new(catalogue);
        }
        if contact_changed {
            caches.contact_policy = Some(Arc::new(self.store.contact_policy().await?));
        }
        if policies_changed {
            caches.policies = Arc::new(self.store.policies().await?);
        }
        caches.versions = versions;
        Ok(View {
            catalogue: caches.catalogue.clone(),
            contact_policy: caches
                .contact_policy
                .clone()
                .ok_or_else(|| Error::internal("contact policy not loaded"))?,
            policies: caches.policies.clone(),
        })
    }

    /// The profile id of an existing customer: NOT_FOUND when no profile
    /// holds the reference.
    pub async fn resolve_customer(&self, customer: &CustomerReference) -> Result<Uuid> {
        self.profiles
            .find("customer", customer)
            .await?
            .map(|customer| customer.profile_id)
            .ok_or_else(|| Error::not_found("customer", "named in customer"))
    }

    /// True when decision `decision_id` is the customer `profile_id`'s: what
    /// an event (a complaint ticket, an offer touchpoint) must show before
    /// it may record an outcome on the decision, so that one customer's
    /// event never changes another's decision, cool-down or learning data.
    /// The decision's customer follows merges as this service consumes
    /// them; when the two ids differ (an event published before or after a
    /// merge this service has not caught up with), both are resolved
    /// through the profile service, which knows every merge, and their
    /// surviving profiles compared. An unknown decision, one of an
    /// anonymous customer, or a profile the profile service does not know
    /// (erased) is no one's.
    pub async fn decision_is_of(&self, decision_id: Uuid, profile_id: &str) -> Result<bool> {
        let Ok(profile) = Uuid::parse_str(profile_id) else {
            return Ok(false);
        };
        let Some(owner) = self.store.decision_customer(decision_id).await? else {
            return Ok(false);
        };
        let Ok(owner) = Uuid::parse_str(&owner) else {
            return Ok(false);
        };
        if owner == profile {
            return Ok(true);
        }
        let survivor = |id: Uuid| async move {
            match self
                .resolve_customer(&CustomerReference::ProfileId(id))
                .await
            {
                Ok(survivor) => Ok(Some(survivor)),
                Err(Error::NotFound { .. }) => Ok(None),
                Err(error) => Err(error),
            }
        };
        let (Some(owner), Some(profile)) = (survivor(owner).await?, survivor(profile).await?)
        else {
            return Ok(false);
        };
        Ok(owner == profile)
    }

    /// The catalogue currency: the currency of the first action with a value.
    pub async fn currency(&self) -> Result<String> {
        Ok(self
            .view()
            .await?
            .catalogue
            .iter()
            .find_map(|cached| {
                cached
                    .action
                    .value
                    .as_ref()
                    .map(|money| money.currency_code.clone())
            })
            .unwrap_or_default())
    }

    /// Chooses up to `max_actions` actions for the customer and logs the decision.
    pub async fn decide(
        &self,
        request: DecideRequest,
        encode: impl FnOnce(&Decision) -> Vec<u8>,
    ) -> Result<Idempotent<Decision>> {
        let key = request.request_id.as_ref().map(|id| RequestKey {
            key: match request.key_owner {
                Some(owner) => format!("decide:customer:{owner}:{id}"),
                None => format!("decide:{id}"),
            },
            fingerprint: request.fingerprint.clone(),
            profile_id: String::new(),
        });
        if let Some(key) = &key
            && let Some(first) = self.store.replay(key).await?
        {
            return Ok(Idempotent::Replay(first));
        }
        // Microseconds: what the database keeps, so a read-back equals the answer.
        let now = Utc::now().trunc_subsecs(6);
        let view = self.view().await?;
        let live = view
            .policies
            .iter()
            .find(|policy| policy.state == PolicyState::Live)
            .cloned()
            .ok_or_else(|| Error::internal("no live policy"))?;
        let channel = request.channel;
        let channel_label = channel_name(channel);
        // One call to the profile service: the customer, their segments and
        // groups, and consent for every purpose the channel's actions serve.
        let purposes: Vec<String> = view
            .catalogue
            .iter()
            .filter(|cached| cached.action.channels.contains(&channel))
            .map(|cached| cached.action.purpose.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let found = self
            .profiles
            .decision_context("customer", &request.customer, channel, &purposes)
            .await?;
        if found.is_none() && self.settings.refuse_unknown_customers {
            return Err(Error::not_found("customer", "named in customer"));
        }
        let profile_id = found.as_ref().map(|found| found.customer.profile_id);

        // Who the customer is: attributes, segments, groups and journey stages.
        let mut view_of_customer = CustomerView::default();
        let mut contacts = HashMap::new();
        if let Some(found) = found {
            let stages = self.store.stages(found.customer.profile_id).await?;
            view_of_customer = CustomerView {
                attributes: found.customer.attributes,
                segments: found.segments,
                groups: found.groups,
                stages,
            };
            contacts = found.contacts;
        }
        let mut context = request.context.clone();
        if !context.journey_id.is_empty()
            && context.stage.is_empty()
            && let Some(stage) = view_of_customer.stages.get(&context.journey_id)
        {
            context.stage = stage.clone();
        }
        let features = features::extract(
            &view_of_customer,
            &context,
            &channel_label,
            &self.settings.categorical_attributes,
        );

        let mut working: Vec<Working<'_>> = view
            .catalogue
            .iter()
            .filter(|cached| cached.action.channels.contains(&channel))
            .map(|cached| Working {
                cached,
                reason: 0,
                detail: String::new(),
                score: 0.0,
                propensity: 0.0,
                estimate: None,
            })
            .collect();
        let had_candidates = !working.is_empty();

        // 1. Availability, 2. eligibility.
        let variables = self.rule_variables(&view_of_customer, &context, &channel_label, now);
        for candidate in &mut working {
            let action = &candidate.cached.action;
            if !action.available(now) {
                let detail = match (action.valid_from, action.valid_until) {
                    _ if action.state == crate::domain::action::ActionState::Retired => {
                        "retired".to_string()
                    }
                    (Some(from), _) if now < from => format!("valid from {}", from.to_rfc3339()),
                    (_, Some(until)) => format!("ended {}", until.to_rfc3339()),
                    _ => "not available".to_string(),
                };
                left_out(candidate, ExclusionReason::Unavailable, detail);
                continue;
            }
            if let Some(rule) = &candidate.cached.rule {
                match rule.evaluate(&variables) {
                    Ok(true) => {}
                    Ok(false) => left_out(
                        candidate,
                        ExclusionReason::NotEligible,
                        format!("rule is false: {}", rule.source()),
                    ),
                    Err(error) => {
                        tracing::debug!(action = %action.id, %error, "an eligibility rule failed for a customer");
                        left_out(
                            candidate,
                            ExclusionReason::NotEligible,
                            format!("rule failed: {error}"),
                        );
                    }
                }
            }
        }

        // 3. Consent, per purpose, from the profile service.
        let purposes: HashSet<String> = working
            .iter()
            .filter(|candidate| candidate.reason == 0)
            .map(|candidate| candidate.cached.action.purpose.clone())
            .collect();
        let answers = contact_answers(&contacts, purposes);
        for candidate in working.iter_mut().filter(|c| c.reason == 0) {
            let purpose = &candidate.cached.action.purpose;
            if let Some(answer) = answers.get(purpose)
                && !answer.consented()
            {
                left_out(
                    candidate,
                    ExclusionReason::NoConsent,
                    format!("purpose {purpose} not granted on {channel_label}"),
                );
            }
        }

        // 4. Contact policy.
        let policy = &view.contact_policy;
        let channel_policy = policy.channel(channel);
        let zone = answers
            .values()
            .find_map(|answer| answer.time_zone)
            .unwrap_or_else(|| policy.zone());
        let periods = Periods::at(zone, now);
        let volume_periods = Periods::at(policy.zone(), now);
        let contact = match profile_id {
            Some(profile) => Some(self.contact_use(profile, channel, &periods).await?),
            None => None,
        };
        let complaint = match profile_id {
            Some(profile)
                if working.iter().any(|c| {
                    c.reason == 0
                        && policy.suppresses(c.cached.action.kind, c.cached.action.transactional)
                }) =>
            {
                self.store
                    .complaint_suppression(
                        profile,
                        policy.complaint_suppression.after_close_seconds,
                    )
                    .await?
            }
            _ => None,
        };
        let quiet = answers
            .values()
            .find_map(|answer| self.quiet_until(answer, policy, zone, now));
        // The per-customer counters and cool-downs of every remaining
        // candidate, read at once (one pipelined round of Redis reads).
        let mut action_use: HashMap<String, Vec<i64>> = HashMap::new();
        let mut cooldowns: HashMap<String, DateTime<Utc>> = HashMap::new();
        if let Some(profile) = profile_id {
            let remaining: Vec<&Action> = working
                .iter()
                .filter(|c| c.reason == 0)
                .map(|c| &c.cached.action)
                .collect();
            let capped: Vec<&Action> = remaining
                .iter()
                .copied()
                .filter(|action| action.caps.any())
                .collect();
            let keys: Vec<String> = capped
                .iter()
                .flat_map(|action| Counters::action_keys(profile, &action.id, &periods))
                .collect();
            let (used, until) = tokio::try_join!(
                self.counters.read_all(&keys),
                futures::future::try_join_all(
                    remaining
                        .iter()
                        .map(|action| self.counters.cooldown(profile, &action.id))
                ),
            )?;
            for (action, used) in capped.iter().zip(used.chunks(3)) {
                action_use.insert(action.id.clone(), used.to_vec());
            }
            for (action, until) in remaining.iter().zip(until) {
                if let Some(until) = until {
                    cooldowns.insert(action.id.clone(), until);
                }
            }
        }
        for candidate in working.iter_mut().filter(|c| c.reason == 0) {
            let action = &candidate.cached.action;
            if !action.transactional
                && let Some(contact) = &contact
                && let Some(detail) = contact.full(&channel_policy, policy, &channel_label)
            {
                left_out(candidate, ExclusionReason::Capped, detail);
                continue;
            }
            if let Some(used) = action_use.get(&action.id) {
                let used = used.clone();
                let caps = [
                    (action.caps.per_day, "today"),
                    (action.caps.per_week, "this week"),
                    (action.caps.lifetime, "ever"),
                ];
                if let Some((cap, period, count)) = caps
                    .iter()
                    .zip(used)
                    .find(|((cap, _), used)| *cap > 0 && *used >= i64::from(*cap))
                    .map(|((cap, period), used)| (*cap, *period, used))
                {
                    left_out(
                        candidate,
                        ExclusionReason::Capped,
                        counts_text(&format!("action {}", action.id), count, cap, period),
                    );
                    continue;
                }
            }
            if channel_policy.quiet_hours_apply
                && let Some(until) = quiet
            {
                left_out(
                    candidate,
                    ExclusionReason::QuietHours,
                    format!("quiet hours until {}", until.to_rfc3339()),
                );
                continue;
            }
            if let Some(until) = cooldowns.get(&action.id).copied() {
                left_out(
                    candidate,
                    ExclusionReason::CoolingDown,
                    format!("cool-down until {}", until.to_rfc3339()),
                );
                continue;
            }
            if let Some(detail) = &complaint
                && policy.suppresses(action.kind, action.transactional)
            {
                left_out(candidate, ExclusionReason::OpenComplaint, detail.clone());
            }
        }

        // 5. Scoring and arbitration, 6. volume limits.
        let model = self.learner.model();
        let x = model.vector(&features);
        let mut scored = Vec::new();
        let mut scored_index = Vec::new();
        for (i, candidate) in working.iter_mut().enumerate() {
            if candidate.reason != 0 {
                continue;
            }
            let action = &candidate.cached.action;
            let estimate = model.estimate(&action.id, &action.group_key(), &x);
            candidate.propensity = estimate.mean;
            scored.push(Scored {
                mean: estimate.mean,
                spread: estimate.spread,
                factor: action.value_factor() * action.priority_factor(),
            });
            candidate.estimate = Some(estimate);
            scored_index.push(i);
        }
        let (ranking, shadow_rankings) = {
            let mut rng = SmallRng::from_rng(&mut rand::rng());
            let ranking = bandit::rank(&live.scorer, &scored, request.max_actions, &mut rng);
            let shadows: Vec<(String, Scorer, Vec<bandit::Ranked>)> = view
                .policies
                .iter()
                .filter(|policy| policy.state == PolicyState::Shadow)
                .map(|policy| {
                    (
                        policy.id.clone(),
                        policy.scorer,
                        bandit::rank(&policy.scorer, &scored, request.max_actions, &mut rng),
                    )
                })
                .collect();
            (ranking, shadows)
        };
        let mut chosen: Vec<(usize, bandit::Ranked)> = Vec::new();
        let mut reservations: Vec<Reservation> = Vec::new();
        let mut contact_counted = false;
        for ranked in &ranking {
            let i = scored_index[ranked.index];
            let candidate = &mut working[i];
            candidate.score = ranked.score;
            if ranked.score < live.scorer.minimum_score {
                left_out(
                    candidate,
                    ExclusionReason::BelowMinimumScore,
                    format!(
                        "score {:.4} below the minimum {}",
                        ranked.score, live.scorer.minimum_score
                    ),
                );
                continue;
            }
            if chosen.len() >= request.max_actions {
                left_out(
                    candidate,
                    ExclusionReason::Outscored,
                    "others ranked higher",
                );
                continue;
            }
            let action = &candidate.cached.action;
            let counts_contact = !action.transactional && !contact_counted && profile_id.is_some();
            let counters = self.counters_for(
                action,
                profile_id,
                channel,
                &channel_label,
                &channel_policy,
                policy,
                &periods,
                &volume_periods,
                counts_contact,
            );
            match self.counters.reserve(&counters).await {
                Ok(Ok(reservation)) => {
                    reservations.push(reservation);
                    contact_counted |= counts_contact;
                    chosen.push((i, *ranked));
                }
                Ok(Err(Limit::Volume(detail))) => {
                    left_out(candidate, ExclusionReason::VolumeLimitReached, detail);
                }
                Ok(Err(Limit::Contact(detail) | Limit::ActionCap(detail))) => {
                    left_out(candidate, ExclusionReason::Capped, detail);
                }
                Err(error) => {
                    for reservation in reservations {
                        self.counters.release(reservation).await;
                    }
                    return Err(error);
                }
            }
        }

        // The decision as logged.
        let mut chosen_actions = Vec::new();
        let mut candidates = Vec::new();
        for (rank, (i, ranked)) in chosen.iter().enumerate() {
            let candidate = &working[*i];
            let action = &candidate.cached.action;
            let estimate = candidate
                .estimate
                .clone()
                .unwrap_or_else(|| bandit::Estimate {
                    mean: 0.0,
                    raw_mean: 0.0,
                    spread: 0.0,
                    cold_start: true,
                    contributions: Vec::new(),
                });
            let explanation = explain(action, &estimate, ranked, &features);
            chosen_actions.push(ChosenAction {
                rank: rank as u32 + 1,
                action: action.clone(),
                score: ranked.score,
                propensity: candidate.propensity,
                selection_probability: ranked.probability,
                explanation,
            });
            candidates.push(LoggedCandidate {
                action_id: action.id.clone(),
                action_name: action.name.clone(),
                rank: rank as u32 + 1,
                reason: 0,
                detail: String::new(),
                score: ranked.score,
                propensity: candidate.propensity,
                selection_probability: ranked.probability,
                group: action.group_key(),
                factor: action.value_factor() * action.priority_factor(),
                value_factor: action.value_factor(),
            });
        }
        for candidate in working.iter().filter(|c| c.reason != 0) {
            let action = &candidate.cached.action;
            candidates.push(LoggedCandidate {
                action_id: action.id.clone(),
                action_name: action.name.clone(),
                rank: 0,
                reason: candidate.reason,
                detail: candidate.detail.clone(),
                score: candidate.score,
                propensity: candidate.propensity,
                selection_probability: 0.0,
                group: action.group_key(),
                factor: action.value_factor() * action.priority_factor(),
                value_factor: action.value_factor(),
            });
        }
        let shadow_choices = shadow_rankings
            .into_iter()
            .map(|(policy_id, scorer, ranking)| ShadowChoice {
                policy_id,
                actions: ranking
                    .iter()
                    .filter(|ranked| ranked.score >= scorer.minimum_score)
                    .take(request.max_actions)
                    .enumerate()
                    .map(|(rank, ranked)| {
                        let candidate = &working[scored_index[ranked.index]];
                        let action = &candidate.cached.action;
                        LoggedCandidate {
                            action_id: action.id.clone(),
                            action_name: action.name.clone(),
                            rank: rank as u32 + 1,
                            reason: 0,
                            detail: String::new(),
                            score: ranked.score,
                            propensity: candidate.propensity,
                            selection_probability: ranked.probability,
                            group: action.group_key(),
                            factor: action.value_factor() * action.priority_factor(),
                            value_factor: action.value_factor(),
                        }
                    })
                    .collect(),
            })
            .collect();
        let no_action_reason = if !chosen_actions.is_empty() {
            NoActionReason::Unspecified
        } else if had_candidates {
            NoActionReason::AllLeftOut
        } else {
            NoActionReason::NoCandidates
        };
        let decision = Decision {
            id: Uuid::now_v7(),
            request_id: request.request_id.clone(),
            profile_id,
            channel,
            context: request.context.clone(),
            features,
            policy_id: live.id.clone(),
            candidates,
            chosen: chosen_actions,
            no_action_reason: no_action_reason as i32,
            shadow_choices,
            decide_time: now,
            expire_time: now + self.settings.outcome_window,
            outcomes: Vec::new(),
        };
        let key = key.map(|mut key| {
            key.profile_id = profile_id.map(|id| id.to_string()).unwrap_or_default();
            key
        });
        let logged = self
            .store
            .log_decision(&decision, key.as_ref(), encode(&decision))
            .await;
        match logged {
            Ok(Idempotent::Fresh(())) => {
                metrics::counter!(
                    "cairn_decisions_total",
                    "channel" => channel_label,
                    "policy" => live.id,
                    "result" => if decision.chosen.is_empty() { "nothing" } else { "action" },
                )
                .increment(1);
                Ok(Idempotent::Fresh(decision))
            }
            Ok(Idempotent::Replay(first)) => {
                for reservation in reservations {
                    self.counters.release(reservation).await;
                }
                Ok(Idempotent::Replay(first))
            }
            Err(error) => {
                for reservation in reservations {
                    self.counters.release(reservation).await;
                }
                Err(error)
            }
        }
    }

    fn rule_variables(
        &self,
        customer: &CustomerView,
        context: &DecisionContext,
        channel: &str,
        now: DateTime<Utc>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut variables = serde_json::Map::new();
        variables.insert("attributes".into(), key_value_json(&customer.attributes));
        variables.insert("segments".into(), json!(customer.segments));
        variables.insert(
            "groups".into(),
            serde_json::Value::Array(
                customer
                    .groups
                    .iter()
                    .map(|(id, kind)| json!({"id": id, "type": kind}))
                    .collect(),
            ),
        );
        variables.insert(
            "journey".into(),
            json!({"id": context.journey_id, "stage": context.stage}),
        );
        variables.insert("stages".into(), json!(customer.stages));
        variables.insert("channel".into(), json!(channel));
        variables.insert(
            "context".into(),
            json!({
                "page": context.page,
                "device": context.device,
                "properties": key_value_json(&context.properties),
            }),
        );
        variables.insert("now".into(), json!(now.to_rfc3339()));
        variables
    }

    /// When quiet hours end, if they hold now: the customer's own (as the
    /// profile service evaluated them), else the contact policy's in the
    /// customer's zone.
    fn quiet_until(
        &self,
        answer: &ContactAnswer,
        policy: &ContactPolicy,
        zone: Tz,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if answer.quiet_hours.is_some() {
            return (answer.verdict == ContactVerdict::QuietHours)
                .then_some(answer.allowed_from)
                .flatten()
                .or_else(|| answer.quiet_hours.and_then(|quiet| quiet.until(zone, now)));
        }
        policy.quiet_hours.until(zone, now)
    }

    async fn contact_use(
        &self,
        profile: Uuid,
        channel: i32,
        periods: &Periods,
    ) -> Result<ContactUse> {
        let (day, week) = Counters::contact_keys(profile, &channel_name(channel), periods);
        let (all_day, all_week) = Counters::contact_keys(profile, "all", periods);
        let used = self
            .counters
            .read_all(&[day, week, all_day, all_week])
            .await?;
        Ok(ContactUse {
            today: used[0],
            week: used[1],
            all_today: used[2],
            all_week: used[3],
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn counters_for(
        &self,
        action: &Action,
        profile_id: Option<Uuid>,
        channel: i32,
        channel_label: &str,
        channel_policy: &ChannelPolicy,
        policy: &ContactPolicy,
        periods: &Periods,
        volume_periods: &Periods,
        counts_contact: bool,
    ) -> Vec<Counter> {
        let mut counters = Vec::new();
        if let Some(profile) = profile_id {
            if counts_contact {
                counters.extend(contact_counters(
                    profile,
                    channel,
                    channel_label,
                    channel_policy,
                    policy,
                    periods,
                ));
            }
            if action.caps.any() {
                let keys = Counters::action_keys(profile, &action.id, periods);
                let ttls = [
                    Counters::day_ttl(),
                    Counters::week_ttl(),
                    Counters::lifetime_ttl(),
                ];
                let caps = [
                    (action.caps.per_day, "today"),
                    (action.caps.per_week, "this week"),
                    (action.caps.lifetime, "ever"),
                ];
                for ((key, ttl), (cap, period)) in keys.into_iter().zip(ttls).zip(caps) {
                    if cap > 0 {
                        counters.push(Counter {
                            key,
                            limit: i64::from(cap),
                            ttl,
                            what: Limit::ActionCap(counts_text(
                                &format!("action {}", action.id),
                                i64::from(cap),
                                cap,
                                period,
                            )),
                        });
                    }
                }
            }
        }
        if action.volume_limit.any() {
            let (day, week) = Counters::volume_keys(&action.id, volume_periods);
            if action.volume_limit.per_day > 0 {
                counters.push(Counter {
                    key: day,
                    limit: action.volume_limit.per_day as i64,
                    ttl: Counters::day_ttl(),
                    what: Limit::Volume(format!(
                        "volume limit of {} a day reached",
                        action.volume_limit.per_day
                    )),
                });
            }
            if action.volume_limit.per_week > 0 {
                counters.push(Counter {
                    key: week,
                    limit: action.volume_limit.per_week as i64,
                    ttl: Counters::week_ttl(),
                    what: Limit::Volume(format!(
                        "volume limit of {} a week reached",
                        action.volume_limit.per_week
                    )),
                });
            }
        }
        counters
    }

    /// The customer's contact budget on a channel, without using any of it.
    pub async fn budget(&self, request: &BudgetRequest) -> Result<(Uuid, Budget, Vec<Counter>)> {
        let now = Utc::now();
        let view = self.view().await?;
        let customer = self
            .profiles
            .find("customer", &request.customer)
            .await?
            .ok_or_else(|| Error::not_found("customer", "named in customer"))?;
        let profile = customer.profile_id;
        let policy = &view.contact_policy;
        let channel_policy = policy.channel(request.channel);
        let label = channel_name(request.channel);
        let answer = self
            .profiles
            .check_contact(profile, request.channel, &request.purpose)
            .await?;
        let zone = answer.time_zone.unwrap_or_else(|| policy.zone());
        let periods = Periods::at(zone, now);
        let contact = self.contact_use(profile, request.channel, &periods).await?;
        let mut budget = Budget {
            allowed: true,
            reason: 0,
            detail: String::new(),
            used_today: contact.today,
            max_per_day: channel_policy.caps.per_day,
            used_this_week: contact.week,
            max_per_week: channel_policy.caps.per_week,
            next_allowed_time: None,
        };
        let refuse = |budget: &mut Budget, reason: ExclusionReason, detail: String, next| {
            budget.allowed = false;
            budget.reason = reason as i32;
            budget.detail = detail;
            budget.next_allowed_time = next;
        };
        if !answer.consented() {
            refuse(
                &mut budget,
                ExclusionReason::NoConsent,
                format!("purpose {} not granted on {label}", request.purpose),
                None,
            );
        } else if !request.transactional
            && let Some(detail) = contact.full(&channel_policy, policy, &label)
        {
            let next = if detail.contains("today") {
                periods.next_day
            } else {
                periods.next_week
            };
            refuse(&mut budget, ExclusionReason::Capped, detail, Some(next));
        } else if channel_policy.quiet_hours_apply
            && let Some(until) = self.quiet_until(&answer, policy, zone, now)
        {
            refuse(
                &mut budget,
                ExclusionReason::QuietHours,
                format!("quiet hours until {}", until.to_rfc3339()),
                Some(until),
            );
        } else if policy.suppresses(request.kind, request.transactional)
            && let Some(detail) = self
                .store
                .complaint_suppression(profile, policy.complaint_suppression.after_close_seconds)
                .await?
        {
            refuse(&mut budget, ExclusionReason::OpenComplaint, detail, None);
        }
        let counters = if request.transactional {
            Vec::new()
        } else {
            contact_counters(
                profile,
                request.channel,
                &label,
                &channel_policy,
                policy,
                &periods,
            )
        };
        Ok((profile, budget, counters))
    }

    /// Checks a contact and, when allowed, counts it at once. Returns the
    /// profile, whether it was granted, the budget after it, and what to
    /// give back if the answer cannot be stored.
    pub async fn reserve(
        &self,
        request: &BudgetRequest,
    ) -> Result<(Uuid, bool, Budget, Option<Reservation>)> {
        let (profile, mut budget, counters) = self.budget(request).await?;
        if !budget.allowed {
            return Ok((profile, false, budget, None));
        }
        match self.counters.reserve(&counters).await? {
            Ok(reservation) => {
                if !counters.is_empty() {
                    budget.used_today += 1;
                    budget.used_this_week += 1;
                }
                Ok((profile, true, budget, Some(reservation)))
            }
            Err(Limit::Contact(detail) | Limit::ActionCap(detail) | Limit::Volume(detail)) => {
                budget.allowed = false;
                budget.reason = ExclusionReason::Capped as i32;
                budget.detail = detail;
                Ok((profile, false, budget, None))
            }
        }
    }

    /// Records an outcome of a decision's action; returns the stored outcome
    /// and whether it was a duplicate.
    pub async fn record_outcome(
        &self,
        decision_id: Uuid,
        action_id: &str,
        kind: i32,
        channel: Option<i32>,
        occur_time: Option<DateTime<Utc>>,
        source: OutcomeSource,
    ) -> Result<(Outcome, bool)> {
        let now = Utc::now().trunc_subsecs(6);
        let occur_time = occur_time.unwrap_or(now).trunc_subsecs(6);
        let outcome = Outcome {
            decision_id,
            action_id: action_id.to_string(),
            kind,
            channel: channel.unwrap_or(0),
            occur_time,
            record_time: now,
            source: source as i32,
        };
        let (stored, duplicate, state) = self
            .store
            .record_outcome(outcome, |state| {
                if source != OutcomeSource::Timeout && now >= state.expire_time {
                    return Err(Error::FailedPrecondition(format!(
                        "decision {decision_id} expired at {}; its open actions count as ignored",
                        state.expire_time.to_rfc3339()
                    )));
                }
                if occur_time < state.decide_time - Duration::seconds(1) {
                    return Err(Error::invalid(
                        "occur_time",
                        "must not be before the decision",
                    ));
                }
                if occur_time > now + Duration::minutes(5) {
                    return Err(Error::invalid(
                        "occur_time",
                        "must not be more than 5 minutes in the future",
                    ));
                }
                Ok(())
            })
            .await?;
        if !duplicate {
            if kind == OutcomeType::Declined as i32
                && let Some(profile) = state.profile_id
            {
                let policy = self.view().await?.contact_policy;
                let seconds = state
                    .chosen
                    .action
                    .decline_cooldown_seconds
                    .unwrap_or(policy.default_decline_cooldown_seconds);
                if seconds > 0 {
                    self.counters
                        .start_cooldown(profile, action_id, now + Duration::seconds(seconds))
                        .await?;
                }
            }
            if storage::is_final(kind) {
                self.learner.outcome_recorded();
            }
        }
        Ok((stored, duplicate))
    }

    /// Records decisions that expired without a final outcome as ignored;
    /// returns how many were closed.
    pub async fn expire_open_decisions(&self) -> Result<usize> {
        let expired = self.store.expired_without_outcome(Utc::now(), 500).await?;
        let mut closed = 0;
        for (decision_id, action_id, channel) in expired {
            match self
                .record_outcome(
                    decision_id,
                    &action_id,
                    OutcomeType::Ignored as i32,
                    Some(channel),
                    Some(Utc::now()),
                    OutcomeSource::Timeout,
                )
                .await
            {
                Ok(_) => closed += 1,
                // Another replica closed it, or a final outcome won the race.
                Err(Error::FailedPrecondition(_) | Error::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(closed)
    }
}

/// The counters a contact on a channel uses: the channel's and all
/// channels', for the day and the week.
fn contact_counters(
    profile: Uuid,
    channel: i32,
    channel_label: &str,
    channel_policy: &ChannelPolicy,
    policy: &ContactPolicy,
    periods: &Periods,
) -> Vec<Counter> {
    let (day, week) = Counters::contact_keys(profile, &channel_name(channel), periods);
    let (all_day, all_week) = Counters::contact_keys(profile, "all", periods);
    let cap = |limit: u32| i64::from(limit);
    vec![
        Counter {
            key: day,
            limit: cap(channel_policy.caps.per_day),
            ttl: Counters::day_ttl(),
            what: Limit::Contact(format!(
                "{channel_label}: {0} of {0} today",
                channel_policy.caps.per_day
            )),
        },
        Counter {
            key: week,
            limit: cap(channel_policy.caps.per_week),
            ttl: Counters::week_ttl(),
            what: Limit::Contact(format!(
                "{channel_label}: {0} of {0} this week",
                channel_policy.caps.per_week
            )),
        },
        Counter {
            key: all_day,
            limit: cap(policy.all_channels.per_day),
            ttl: Counters::day_ttl(),
            what: Limit::Contact(format!(
                "all channels: {0} of {0} today",
                policy.all_channels.per_day
            )),
        },
        Counter {
            key: all_week,
            limit: cap(policy.all_channels.per_week),
            ttl: Counters::week_ttl(),
            what: Limit::Contact(format!(
                "all channels: {0} of {0} this week",
                policy.all_channels.per_week
            )),
        },
    ]
}

/// A customer's contacts counted now.
struct ContactUse {
    today: i64,
    week: i64,
    all_today: i64,
    all_week: i64,
}

impl ContactUse {
    /// Which cap is full, in words, if one is.
    fn full(&self, channel: &ChannelPolicy, policy: &ContactPolicy, label: &str) -> Option<String> {
        let checks = [
            (self.today, channel.caps.per_day, label, "today"),
            (self.week, channel.caps.per_week, label, "this week"),
            (
                self.all_today,
                policy.all_channels.per_day,
                "all channels",
                "today",
            ),
            (
                self.all_week,
                policy.all_channels.per_week,
                "all channels",
                "this week",
            ),
        ];
        checks
            .into_iter()
            .find(|(used, cap, _, _)| *cap > 0 && *used >= i64::from(*cap))
            .map(|(used, cap, label, period)| counts_text(label, used, cap, period))
    }
}

fn explain(
    action: &Action,
    estimate: &bandit::Estimate,
    ranked: &bandit::Ranked,
    features: &features::Features,
) -> Explanation {
    let mut drivers: Vec<Driver> = estimate
        .contributions
        .iter()
        .filter(|(name, _)| name != features::BIAS)
        .map(|(name, contribution)| Driver {
            feature: name.clone(),
            value: features.get(name).copied().unwrap_or(0.0),
            contribution: contribution.clamp(-1.0, 1.0),
        })
        .collect();
    drivers.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
    drivers.truncate(5);
    let eligible = if action.eligibility_rule.is_empty() {
        "everyone".to_string()
    } else {
        action.eligibility_rule.clone()
    };
    let driven = drivers
        .iter()
        .take(3)
        .map(|driver| format!("{} {:+.3}", driver.feature, driver.contribution))
        .collect::<Vec<_>>()
        .join(", ");
    let mut summary = format!(
        "eligible: {eligible}; propensity {:.3}{} x value {} x priority {}{}",
        estimate.mean,
        if driven.is_empty() {
            String::new()
        } else {
            format!(" ({driven})")
        },
        action.value_factor(),
        action.priority_factor(),
        if ranked.explored { "; explored" } else { "" },
    );
    if summary.len() > 256 {
        let mut end = 253;
        while !summary.is_char_boundary(end) {
            end -= 1;
        }
        summary.truncate(end);
        summary.push_str("...");
    }
    Explanation {
        eligibility_rule: action.eligibility_rule.clone(),
        drivers,
        ranking_propensity: ranked.ranking_propensity,
        value_factor: action.value_factor(),
        priority_factor: action.priority_factor(),
        explored: ranked.explored,
        cold_start: estimate.cold_start,
        summary,
    }
}

/// The contact answer per purpose: the profile service's; without one (an
/// anonymous customer has none) only the service purpose, which needs no
/// opt-in, is allowed.
fn contact_answers(
    contacts: &HashMap<String, ContactAnswer>,
    purposes: HashSet<String>,
) -> HashMap<String, ContactAnswer> {
    purposes
        .into_iter()
        .map(|purpose| {
            let answer = contacts
                .get(&purpose)
                .cloned()
                .unwrap_or_else(|| ContactAnswer::anonymous(&purpose));
            (purpose, answer)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_lower_case_without_prefix() {
        assert_eq!(channel_name(Channel::MobileApp as i32), "mobile_app");
        assert_eq!(channel_name(Channel::Sms as i32), "sms");
    }
}

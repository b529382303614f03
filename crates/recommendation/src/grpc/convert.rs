//! Wire ⇄ domain conversions of the recommendation contract, validated once
//! here: every violation names the request field it concerns.

use std::collections::BTreeMap;

use cairn_contract::common::v1 as common;
use cairn_contract::recommendation::v1 as pb;
use cairn_runtime::common::{TypedValue, check_name, timestamp_from_proto, timestamp_to_proto};
use cairn_runtime::{Error, Result, Violations};
use chrono::{DateTime, NaiveTime, Utc};
use sha2::{Digest, Sha256};

use crate::domain::action::{
    Action, ActionCaps, ActionKind, ActionState, MAX_COOLDOWN_SECONDS, Money, VolumeLimit,
    check_id, check_word,
};
use crate::domain::bandit::{Method, Scorer};
use crate::domain::contact::{
    ChannelPolicy, ComplaintSuppression, ContactCaps, ContactPolicy, QuietHours,
};
use crate::domain::decision::{
    ChosenAction, Decision, LoggedCandidate, Outcome, Policy, PolicyState, ShadowChoice,
};
use crate::domain::features::DecisionContext;
use crate::engine::Budget;
use crate::evaluation::{Evaluation, Interval};

/// Longest idempotency key.
pub const MAX_REQUEST_ID_BYTES: usize = 128;
/// Most properties of an action or a context.
const MAX_PROPERTIES: usize = 32;

/// A hash of a request's canonical content, for idempotency keys.
pub fn fingerprint(parts: &impl serde::Serialize) -> String {
    let bytes = serde_json::to_vec(parts).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}

/// An optional idempotency key.
pub fn request_id(field: &str, id: &str) -> Result<Option<String>> {
    if id.is_empty() {
        Ok(None)
    } else if id.len() > MAX_REQUEST_ID_BYTES {
        Err(Error::invalid(
            field,
            format!("at most {MAX_REQUEST_ID_BYTES} bytes"),
        ))
    } else {
        Ok(Some(id.to_string()))
    }
}

/// A required action kind.
pub fn kind(field: &str, raw: i32) -> Result<ActionKind> {
    match pb::ActionKind::try_from(raw) {
        Ok(pb::ActionKind::SalesOffer) => Ok(ActionKind::SalesOffer),
        Ok(pb::ActionKind::RetentionOffer) => Ok(ActionKind::RetentionOffer),
        Ok(pb::ActionKind::Service) => Ok(ActionKind::Service),
        Ok(pb::ActionKind::Information) => Ok(ActionKind::Information),
        Ok(pb::ActionKind::Unspecified) => Err(Error::invalid(
            field,
            "required: one of the ActionKind values",
        )),
        Err(_) => Err(Error::invalid(
            field,
            format!("{raw} is not a known ActionKind value"),
        )),
    }
}

/// The wire kind.
pub fn kind_to_proto(kind: ActionKind) -> pb::ActionKind {
    match kind {
        ActionKind::SalesOffer => pb::ActionKind::SalesOffer,
        ActionKind::RetentionOffer => pb::ActionKind::RetentionOffer,
        ActionKind::Service => pb::ActionKind::Service,
        ActionKind::Information => pb::ActionKind::Information,
    }
}

fn properties(
    field: &str,
    wire: std::collections::HashMap<String, common::Value>,
    max_value_bytes: usize,
    violations: &mut Violations,
) -> BTreeMap<String, TypedValue> {
    if wire.len() > MAX_PROPERTIES {
        violations.add(field, format!("at most {MAX_PROPERTIES} entries"));
    }
    let mut out = BTreeMap::new();
    for (name, value) in wire {
        let entry = format!("{field}.{name}");
        if violations.check(check_name(&entry, &name)).is_none() {
            continue;
        }
        if let Some(value) = violations.check(TypedValue::from_proto(&entry, value)) {
            if value.size() > max_value_bytes {
                violations.add(&entry, format!("at most {max_value_bytes} bytes"));
            }
            out.insert(name, value);
        }
    }
    out
}

fn duration_seconds(field: &str, duration: &prost_types::Duration, max: i64) -> Result<i64> {
    if duration.seconds < 0 || duration.nanos < 0 {
        return Err(Error::invalid(field, "must not be negative"));
    }
    if duration.seconds > max {
        return Err(Error::invalid(field, format!("at most {max} seconds")));
    }
    Ok(duration.seconds)
}

fn duration_to_proto(seconds: i64) -> prost_types::Duration {
    prost_types::Duration { seconds, nanos: 0 }
}

fn channels(field: &str, wire: &[i32], violations: &mut Violations) -> Vec<i32> {
    let mut out = Vec::new();
    if wire.is_empty() {
        violations.add(field, "required: at least one channel");
    }
    for (i, raw) in wire.iter().enumerate() {
        let entry = format!("{field}[{i}]");
        if let Some(channel) = violations.check(cairn_runtime::common::channel(&entry, *raw)) {
            if out.contains(&(channel as i32)) {
                violations.add(entry, "each channel at most once");
            } else {
                out.push(channel as i32);
            }
        }
    }
    out
}

/// The fields of `wire` that an update may change, applied to `action`,
/// or every field of a new action (`paths` = `None`). Output-only fields
/// are ignored.
pub fn apply_action(
    prefix: &str,
    wire: pb::Action,
    paths: Option<&[String]>,
    action: &mut Action,
    violations: &mut Violations,
) {
    let wants = |path: &str| paths.is_none_or(|paths| paths.iter().any(|p| p == path));
    let field = |name: &str| format!("{prefix}.{name}");
    if wants("name") {
        if wire.name.trim().is_empty() || wire.name.len() > 200 {
            violations.add(field("name"), "required, 1 to 200 bytes");
        }
        action.name = wire.name;
    }
    if wants("description") {
        if wire.description.len() > 2000 {
            violations.add(field("description"), "at most 2000 bytes");
        }
        action.description = wire.description;
    }
    if wants("category") {
        violations.check(check_word(&field("category"), &wire.category));
        action.category = wire.category;
    }
    if wants("product_offering_id") {
        if wire.product_offering_id.len() > 128 {
            violations.add(field("product_offering_id"), "at most 128 bytes");
        }
        action.product_offering_id = wire.product_offering_id;
    }
    if wants("channels") {
        action.channels = channels(&field("channels"), &wire.channels, violations);
    }
    if wants("valid_for") {
        let range = wire.valid_for.unwrap_or_default();
        action.valid_from = range.start_time.and_then(|time| {
            violations.check(timestamp_from_proto(&field("valid_for.start_time"), &time))
        });
        action.valid_until = range.end_time.and_then(|time| {
            violations.check(timestamp_from_proto(&field("valid_for.end_time"), &time))
        });
    }
    if wants("value") {
        action.value = match wire.value {
            Some(money) if money.units != 0 || money.nanos != 0 => {
                let valid_code = money.currency_code.len() == 3
                    && money.currency_code.chars().all(|c| c.is_ascii_uppercase());
                if !valid_code {
                    violations.add(
                        field("value.currency_code"),
                        "an ISO 4217 code, three upper-case letters",
                    );
                }
                if money.units < 0 || money.nanos < 0 {
                    violations.add(field("value"), "must not be negative");
                }
                if money.nanos.abs() > 999_999_999 {
                    violations.add(field("value.nanos"), "between -999,999,999 and 999,999,999");
                }
                Some(Money {
                    currency_code: money.currency_code,
                    units: money.units,
                    nanos: money.nanos,
                })
            }
            _ => None,
        };
    }
    if wants("business_priority") {
        match wire.business_priority {
            0 => action.business_priority = 50,
            1..=100 => action.business_priority = wire.business_priority as u32,
            other => violations.add(
                field("business_priority"),
                format!("1 to 100, or 0 for 50; got {other}"),
            ),
        }
    }
    if wants("eligibility_rule") {
        action.eligibility_rule = wire.eligibility_rule;
    }
    if wants("purpose") {
        violations.check(check_word(&field("purpose"), &wire.purpose));
        action.purpose = if wire.purpose.is_empty() {
            action.kind.default_purpose().to_string()
        } else {
            wire.purpose
        };
    }
    if wants("transactional") {
        action.transactional = wire.transactional;
    }
    if wants("caps") {
        let caps = wire.caps.unwrap_or_default();
        for (name, value, max) in [
            (
                "max_per_customer_per_day",
                caps.max_per_customer_per_day,
                1000,
            ),
            (
                "max_per_customer_per_week",
                caps.max_per_customer_per_week,
                10_000,
            ),
            (
                "max_per_customer_lifetime",
                caps.max_per_customer_lifetime,
                10_000,
            ),
        ] {
            if !(0..=max).contains(&value) {
                violations.add(field(&format!("caps.{name}")), format!("0 to {max}"));
            }
        }
        action.caps = ActionCaps {
            per_day: caps.max_per_customer_per_day.max(0) as u32,
            per_week: caps.max_per_customer_per_week.max(0) as u32,
            lifetime: caps.max_per_customer_lifetime.max(0) as u32,
        };
    }
    if wants("volume_limit") {
        let limit = wire.volume_limit.unwrap_or_default();
        for (name, value) in [
            ("max_per_day", limit.max_per_day),
            ("max_per_week", limit.max_per_week),
        ] {
            if !(0..=100_000_000).contains(&value) {
                violations.add(field(&format!("volume_limit.{name}")), "0 to 100,000,000");
            }
        }
        action.volume_limit = VolumeLimit {
            per_day: limit.max_per_day.max(0) as u64,
            per_week: limit.max_per_week.max(0) as u64,
        };
    }
    if wants("decline_cooldown") {
        action.decline_cooldown_seconds = wire.decline_cooldown.and_then(|duration| {
            violations.check(duration_seconds(
                &field("decline_cooldown"),
                &duration,
                MAX_COOLDOWN_SECONDS,
            ))
        });
    }
    if wants("properties") {
        action.properties = properties(&field("properties"), wire.properties, 4096, violations);
    }
}

/// A new action from a create request, checked.
pub fn new_action(wire: Option<pb::Action>, now: DateTime<Utc>) -> Result<Action> {
    let mut violations = Violations::new();
    let Some(wire) = wire else {
        return Err(Error::invalid("action", "required"));
    };
    let id = if wire.action_id.is_empty() {
        uuid::Uuid::now_v7().to_string()
    } else {
        violations.check(check_id("action.action_id", &wire.action_id));
        wire.action_id.clone()
    };
    let kind = violations.check(kind("action.kind", wire.kind));
    let mut action = Action {
        id,
        name: String::new(),
        description: String::new(),
        kind: kind.unwrap_or(ActionKind::SalesOffer),
        category: String::new(),
        product_offering_id: String::new(),
        channels: Vec::new(),
        valid_from: None,
        valid_until: None,
        value: None,
        business_priority: 50,
        eligibility_rule: String::new(),
        purpose: String::new(),
        transactional: false,
        caps: ActionCaps::default(),
        volume_limit: VolumeLimit::default(),
        decline_cooldown_seconds: None,
        properties: BTreeMap::new(),
        state: ActionState::Active,
        create_time: now,
        update_time: now,
        retire_time: None,
        version: 1,
    };
    apply_action("action", wire, None, &mut action, &mut violations);
    if kind.is_some() {
        violations.check(action.check("action"));
    }
    violations.finish()?;
    Ok(action)
}

/// The wire action.
pub fn action_to_proto(action: &Action) -> pb::Action {
    pb::Action {
        action_id: action.id.clone(),
        name: action.name.clone(),
        description: action.description.clone(),
        kind: kind_to_proto(action.kind) as i32,
        category: action.category.clone(),
        product_offering_id: action.product_offering_id.clone(),
        channels: action.channels.clone(),
        valid_for: (action.valid_from.is_some() || action.valid_until.is_some()).then(|| {
            common::TimeRange {
                start_time: action.valid_from.map(timestamp_to_proto),
                end_time: action.valid_until.map(timestamp_to_proto),
            }
        }),
        value: action.value.as_ref().map(|money| common::Money {
            currency_code: money.currency_code.clone(),
            units: money.units,
            nanos: money.nanos,
        }),
        business_priority: action.business_priority as i32,
        eligibility_rule: action.eligibility_rule.clone(),
        purpose: action.purpose.clone(),
        transactional: action.transactional,
        caps: action.caps.any().then_some(pb::ActionCaps {
            max_per_customer_per_day: action.caps.per_day as i32,
            max_per_customer_per_week: action.caps.per_week as i32,
            max_per_customer_lifetime: action.caps.lifetime as i32,
        }),
        volume_limit: action.volume_limit.any().then_some(pb::VolumeLimit {
            max_per_day: action.volume_limit.per_day as i64,
            max_per_week: action.volume_limit.per_week as i64,
        }),
        decline_cooldown: action.decline_cooldown_seconds.map(duration_to_proto),
        properties: action
            .properties
            .iter()
            .map(|(name, value)| (name.clone(), value.to_proto()))
            .collect(),
        state: match action.state {
            ActionState::Active => pb::ActionState::Active,
            ActionState::Retired => pb::ActionState::Retired,
        } as i32,
        create_time: Some(timestamp_to_proto(action.create_time)),
        update_time: Some(timestamp_to_proto(action.update_time)),
        retire_time: action.retire_time.map(timestamp_to_proto),
        etag: action.etag(),
    }
}

/// An etag as a version; `None` when empty.
pub fn etag(field: &str, etag: &str) -> Result<Option<i64>> {
    if etag.is_empty() {
        return Ok(None);
    }
    etag.strip_prefix('v')
        .and_then(|version| version.parse().ok())
        .map(Some)
        .ok_or_else(|| Error::invalid(field, "not an etag this server issued"))
}

/// The context of a Decide request.
pub fn context(wire: Option<pb::DecisionContext>, violations: &mut Violations) -> DecisionContext {
    let wire = wire.unwrap_or_default();
    for (name, value, max) in [
        ("journey_id", &wire.journey_id, 64),
        ("stage", &wire.stage, 64),
        ("page", &wire.page, 1024),
        ("device", &wire.device, 128),
    ] {
        if value.len() > max {
            violations.add(format!("context.{name}"), format!("at most {max} bytes"));
        }
    }
    if wire.journey_id.is_empty() && !wire.stage.is_empty() {
        violations.add("context.stage", "must be empty when context.journey_id is");
    }
    DecisionContext {
        journey_id: wire.journey_id,
        stage: wire.stage,
        page: wire.page,
        device: wire.device,
        properties: properties("context.properties", wire.properties, 1024, violations),
    }
}

fn context_to_proto(context: &DecisionContext) -> pb::DecisionContext {
    pb::DecisionContext {
        journey_id: context.journey_id.clone(),
        stage: context.stage.clone(),
        page: context.page.clone(),
        device: context.device.clone(),
        properties: context
            .properties
            .iter()
            .map(|(name, value)| (name.clone(), value.to_proto()))
            .collect(),
    }
}

/// A logged candidate on the wire.
pub fn candidate_to_proto(candidate: &LoggedCandidate, outcome: i32) -> pb::Candidate {
    pb::Candidate {
        action_id: candidate.action_id.clone(),
        action_name: candidate.action_name.clone(),
        rank: candidate.rank as i32,
        exclusion_reason: candidate.reason,
        detail: candidate.detail.clone(),
        score: candidate.score,
        propensity: candidate.propensity,
        selection_probability: candidate.selection_probability,
        outcome,
    }
}

fn recommended(chosen: &ChosenAction) -> pb::RecommendedAction {
    let explanation = &chosen.explanation;
    pb::RecommendedAction {
        rank: chosen.rank as i32,
        action: Some(action_to_proto(&chosen.action)),
        score: chosen.score,
        propensity: chosen.propensity,
        selection_probability: chosen.selection_probability,
        explanation: Some(pb::Explanation {
            eligibility_rule: explanation.eligibility_rule.clone(),
            drivers: explanation
                .drivers
                .iter()
                .map(|driver| pb::ScoreDriver {
                    feature: driver.feature.clone(),
                    value: Some(TypedValue::Number(driver.value).to_proto()),
                    contribution: driver.contribution,
                })
                .collect(),
            ranking_propensity: explanation.ranking_propensity,
            value_factor: explanation.value_factor,
            priority_factor: explanation.priority_factor,
            explored: explanation.explored,
            cold_start: explanation.cold_start,
            summary: explanation.summary.clone(),
        }),
    }
}

/// Left-out counts per reason, reasons in enum order.
fn left_out_counts(candidates: &[LoggedCandidate]) -> Vec<pb::ExclusionCount> {
    let mut counts: BTreeMap<i32, i32> = BTreeMap::new();
    for candidate in candidates.iter().filter(|c| c.reason != 0) {
        *counts.entry(candidate.reason).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(reason, count)| pb::ExclusionCount { reason, count })
        .collect()
}

/// The Decide answer.
pub fn decide_response(decision: &Decision, explain: bool) -> pb::DecideResponse {
    pb::DecideResponse {
        decision_id: decision.id.to_string(),
        profile_id: decision
            .profile_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        actions: decision.chosen.iter().map(recommended).collect(),
        no_action_reason: decision.no_action_reason,
        left_out_counts: left_out_counts(&decision.candidates),
        left_out: if explain {
            decision
                .candidates
                .iter()
                .filter(|candidate| candidate.reason != 0)
                .map(|candidate| candidate_to_proto(candidate, 0))
                .collect()
        } else {
            Vec::new()
        },
        policy_id: decision.policy_id.clone(),
        decide_time: Some(timestamp_to_proto(decision.decide_time)),
        expire_time: Some(timestamp_to_proto(decision.expire_time)),
    }
}

/// An outcome on the wire.
pub fn outcome_to_proto(outcome: &Outcome) -> pb::Outcome {
    pb::Outcome {
        decision_id: outcome.decision_id.to_string(),
        action_id: outcome.action_id.clone(),
        r#type: outcome.kind,
        channel: outcome.channel,
        occur_time: Some(timestamp_to_proto(outcome.occur_time)),
        record_time: Some(timestamp_to_proto(outcome.record_time)),
        source: outcome.source,
    }
}

/// A logged decision on the wire, in `full` or basic view.
pub fn decision_to_proto(decision: &Decision, full: bool) -> pb::Decision {
    let latest = |action_id: &str| {
        decision
            .outcomes
            .iter()
            .filter(|outcome| outcome.action_id == action_id)
            .fold(0, |latest, outcome| {
                if crate::storage::is_final(latest) {
                    latest
                } else {
                    outcome.kind
                }
            })
    };
    pb::Decision {
        decision_id: decision.id.to_string(),
        request_id: decision.request_id.clone().unwrap_or_default(),
        profile_id: decision
            .profile_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        channel: decision.channel,
        context: Some(context_to_proto(&decision.context)),
        features: if full {
            decision
                .features
                .iter()
                .map(|(name, value)| (name.clone(), TypedValue::Number(*value).to_proto()))
                .collect()
        } else {
            Default::default()
        },
        policy_id: decision.policy_id.clone(),
        candidates: decision
            .candidates
            .iter()
            .filter(|candidate| full || candidate.reason == 0)
            .map(|candidate| {
                let outcome = if candidate.reason == 0 {
                    latest(&candidate.action_id)
                } else {
                    0
                };
                candidate_to_proto(candidate, outcome)
            })
            .collect(),
        no_action_reason: decision.no_action_reason,
        outcomes: decision.outcomes.iter().map(outcome_to_proto).collect(),
        shadow_choices: if full {
            decision
                .shadow_choices
                .iter()
                .map(shadow_to_proto)
                .collect()
        } else {
            Vec::new()
        },
        decide_time: Some(timestamp_to_proto(decision.decide_time)),
        expire_time: Some(timestamp_to_proto(decision.expire_time)),
    }
}

fn shadow_to_proto(shadow: &ShadowChoice) -> pb::ShadowChoice {
    pb::ShadowChoice {
        policy_id: shadow.policy_id.clone(),
        actions: shadow
            .actions
            .iter()
            .map(|candidate| candidate_to_proto(candidate, 0))
            .collect(),
    }
}

fn hhmm(field: &str, text: &str) -> Result<NaiveTime> {
    NaiveTime::parse_from_str(text, "%H:%M").map_err(|_| {
        Error::invalid(
            field,
            "a time of day in \"HH:MM\" form, for example \"21:00\"",
        )
    })
}

/// Applies the paths of a contact-policy update to `policy`.
pub fn apply_contact_policy(
    wire: pb::ContactPolicy,
    paths: &[String],
    policy: &mut ContactPolicy,
) -> Result<()> {
    let mut violations = Violations::new();
    let caps = |field: &str, wire: Option<pb::ContactCaps>, violations: &mut Violations| {
        let wire = wire.unwrap_or_default();
        if !(0..=1000).contains(&wire.max_per_day) {
            violations.add(format!("{field}.max_per_day"), "0 to 1000");
        }
        if !(0..=10_000).contains(&wire.max_per_week) {
            violations.add(format!("{field}.max_per_week"), "0 to 10000");
        }
        ContactCaps {
            per_day: wire.max_per_day.max(0) as u32,
            per_week: wire.max_per_week.max(0) as u32,
        }
    };
    for path in paths {
        match path.as_str() {
            "channels" => {
                let mut channels: Vec<ChannelPolicy> = Vec::new();
                for (i, channel) in wire.channels.iter().enumerate() {
                    let field = format!("contact_policy.channels[{i}]");
                    let Some(number) = violations.check(cairn_runtime::common::channel(
                        &format!("{field}.channel"),
                        channel.channel,
                    )) else {
                        continue;
                    };
                    if channels.iter().any(|c| c.channel == number as i32) {
                        violations.add(format!("{field}.channel"), "a channel listed twice");
                        continue;
                    }
                    channels.push(ChannelPolicy {
                        channel: number as i32,
                        caps: caps(&format!("{field}.caps"), channel.caps, &mut violations),
                        quiet_hours_apply: channel.quiet_hours_apply,
                    });
                }
                policy.channels = channels;
            }
            "all_channels" => {
                policy.all_channels = caps(
                    "contact_policy.all_channels",
                    wire.all_channels,
                    &mut violations,
                );
            }
            "quiet_hours" => {
                let quiet = wire.quiet_hours.clone().unwrap_or_default();
                let start = violations.check(hhmm(
                    "contact_policy.quiet_hours.start_time",
                    &quiet.start_time,
                ));
                let end = violations.check(hhmm(
                    "contact_policy.quiet_hours.end_time",
                    &quiet.end_time,
                ));
                if let (Some(start), Some(end)) = (start, end) {
                    policy.quiet_hours = QuietHours { start, end };
                }
            }
            "time_zone" => {
                if wire.time_zone.parse::<chrono_tz::Tz>().is_err() {
                    violations.add(
                        "contact_policy.time_zone",
                        "an IANA time zone, for example \"Europe/Stockholm\"",
                    );
                } else {
                    policy.time_zone = wire.time_zone.clone();
                }
            }
            "complaint_suppression" => {
                let wire = wire.complaint_suppression.clone().unwrap_or_default();
                let mut kinds = Vec::new();
                for (i, raw) in wire.kinds.iter().enumerate() {
                    if let Some(kind) = violations.check(kind(
                        &format!("contact_policy.complaint_suppression.kinds[{i}]"),
                        *raw,
                    )) && !kinds.contains(&kind)
                    {
                        kinds.push(kind);
                    }
                }
                let after_close = wire.after_close.map_or(Some(0), |duration| {
                    violations.check(duration_seconds(
                        "contact_policy.complaint_suppression.after_close",
                        &duration,
                        90 * 24 * 3600,
                    ))
                });
                policy.complaint_suppression = ComplaintSuppression {
                    enabled: wire.enabled,
                    kinds,
                    after_close_seconds: after_close.unwrap_or(0),
                };
            }
            "default_decline_cooldown" => {
                let seconds = wire.default_decline_cooldown.map_or(Some(0), |duration| {
                    violations.check(duration_seconds(
                        "contact_policy.default_decline_cooldown",
                        &duration,
                        MAX_COOLDOWN_SECONDS,
                    ))
                });
                policy.default_decline_cooldown_seconds = seconds.unwrap_or(0);
            }
            other => violations.add(
                "update_mask",
                format!(
                    "{other} is not an updatable path; use channels, all_channels, quiet_hours, time_zone, complaint_suppression or default_decline_cooldown"
                ),
            ),
        }
    }
    violations.finish()
}

/// The wire contact policy.
pub fn contact_policy_to_proto(policy: &ContactPolicy) -> pb::ContactPolicy {
    let caps = |caps: &ContactCaps| pb::ContactCaps {
        max_per_day: caps.per_day as i32,
        max_per_week: caps.per_week as i32,
    };
    pb::ContactPolicy {
        channels: policy
            .channels
            .iter()
            .map(|channel| pb::ChannelContactPolicy {
                channel: channel.channel,
                caps: Some(caps(&channel.caps)),
                quiet_hours_apply: channel.quiet_hours_apply,
            })
            .collect(),
        all_channels: Some(caps(&policy.all_channels)),
        quiet_hours: Some(pb::QuietHours {
            start_time: policy.quiet_hours.start.format("%H:%M").to_string(),
            end_time: policy.quiet_hours.end.format("%H:%M").to_string(),
        }),
        time_zone: policy.time_zone.clone(),
        complaint_suppression: Some(pb::ComplaintSuppression {
            enabled: policy.complaint_suppression.enabled,
            kinds: policy
                .complaint_suppression
                .kinds
                .iter()
                .map(|kind| kind_to_proto(*kind) as i32)
                .collect(),
            after_close: Some(duration_to_proto(
                policy.complaint_suppression.after_close_seconds,
            )),
        }),
        default_decline_cooldown: Some(duration_to_proto(policy.default_decline_cooldown_seconds)),
        update_time: Some(timestamp_to_proto(policy.update_time)),
        etag: policy.etag(),
    }
}

/// The wire budget.
pub fn budget_to_proto(budget: &Budget) -> pb::ContactBudget {
    pb::ContactBudget {
        allowed: budget.allowed,
        reason: budget.reason,
        detail: budget.detail.clone(),
        used_today: budget.used_today as i32,
        max_per_day: budget.max_per_day as i32,
        used_this_week: budget.used_this_week as i32,
        max_per_week: budget.max_per_week as i32,
        next_allowed_time: budget.next_allowed_time.map(timestamp_to_proto),
    }
}

/// A scorer configuration from the wire.
pub fn scorer(field: &str, wire: Option<pb::ScorerConfig>) -> Result<Scorer> {
    let wire = wire.unwrap_or_default();
    let method = match pb::ScoringMethod::try_from(wire.method) {
        Ok(pb::ScoringMethod::Unspecified | pb::ScoringMethod::LinearThompsonSampling) => {
            Method::ThompsonSampling
        }
        Ok(pb::ScoringMethod::LinearUpperConfidenceBound) => Method::UpperConfidenceBound,
        Ok(pb::ScoringMethod::EpsilonGreedy) => Method::EpsilonGreedy,
        Ok(pb::ScoringMethod::UniformRandom) => Method::UniformRandom,
        Err(_) => {
            return Err(Error::invalid(
                format!("{field}.method"),
                format!("{} is not a known ScoringMethod value", wire.method),
            ));
        }
    };
    if let Some(exploration) = wire.exploration {
        let valid = exploration.is_finite()
            && exploration >= 0.0
            && (method != Method::EpsilonGreedy || exploration <= 1.0)
            && exploration <= 100.0;
        if !valid {
            return Err(Error::invalid(
                format!("{field}.exploration"),
                "not negative; at most 1 for epsilon-greedy, at most 100 otherwise",
            ));
        }
    }
    if !wire.minimum_score.is_finite() || wire.minimum_score < 0.0 {
        return Err(Error::invalid(
            format!("{field}.minimum_score"),
            "must not be negative",
        ));
    }
    Ok(Scorer {
        method,
        exploration: wire.exploration,
        minimum_score: wire.minimum_score,
    })
}

/// The wire scorer configuration.
pub fn scorer_to_proto(scorer: &Scorer) -> pb::ScorerConfig {
    pb::ScorerConfig {
        method: match scorer.method {
            Method::ThompsonSampling => pb::ScoringMethod::LinearThompsonSampling,
            Method::UpperConfidenceBound => pb::ScoringMethod::LinearUpperConfidenceBound,
            Method::EpsilonGreedy => pb::ScoringMethod::EpsilonGreedy,
            Method::UniformRandom => pb::ScoringMethod::UniformRandom,
        } as i32,
        exploration: Some(scorer.exploration()),
        minimum_score: scorer.minimum_score,
    }
}

/// The wire policy.
pub fn policy_to_proto(policy: &Policy) -> pb::Policy {
    pb::Policy {
        policy_id: policy.id.clone(),
        display_name: policy.display_name.clone(),
        description: policy.description.clone(),
        scorer: Some(scorer_to_proto(&policy.scorer)),
        state: match policy.state {
            PolicyState::Live => pb::PolicyState::Live,
            PolicyState::Shadow => pb::PolicyState::Shadow,
            PolicyState::Retired => pb::PolicyState::Retired,
        } as i32,
        create_time: Some(timestamp_to_proto(policy.create_time)),
        promote_time: policy.promote_time.map(timestamp_to_proto),
        retire_time: policy.retire_time.map(timestamp_to_proto),
    }
}

fn interval_to_proto(interval: &Interval) -> pb::Estimate {
    pb::Estimate {
        value: interval.value,
        lower: interval.lower,
        upper: interval.upper,
    }
}

/// The wire evaluation.
pub fn evaluation_to_proto(evaluation: &Evaluation, currency_code: String) -> pb::PolicyEvaluation {
    pb::PolicyEvaluation {
        decisions_evaluated: evaluation.decisions_evaluated,
        matched_decisions: evaluation.matched_decisions,
        acceptance_rate: Some(interval_to_proto(&evaluation.acceptance_rate)),
        value_per_decision: Some(interval_to_proto(&evaluation.value_per_decision)),
        live_acceptance_rate: Some(interval_to_proto(&evaluation.live_acceptance_rate)),
        live_value_per_decision: Some(interval_to_proto(&evaluation.live_value_per_decision)),
        currency_code,
        confidence_level: evaluation.confidence_level,
        decide_time: Some(common::TimeRange {
            start_time: evaluation.first_time.map(timestamp_to_proto),
            end_time: evaluation.last_time.map(timestamp_to_proto),
        }),
    }
}

/// A span of time: (start, end); `None` is open.
pub type Span = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A time range filter, checked.
pub fn time_range(field: &str, range: Option<common::TimeRange>) -> Result<Span> {
    let Some(range) = range else {
        return Ok((None, None));
    };
    let start = range
        .start_time
        .map(|time| timestamp_from_proto(&format!("{field}.start_time"), &time))
        .transpose()?;
    let end = range
        .end_time
        .map(|time| timestamp_from_proto(&format!("{field}.end_time"), &time))
        .transpose()?;
    if let (Some(start), Some(end)) = (start, end)
        && end < start
    {
        return Err(Error::invalid(
            format!("{field}.end_time"),
            "must not be before start_time",
        ));
    }
    Ok((start, end))
}

/// A confidence level: 0 means 0.95.
pub fn confidence(field: &str, level: f64) -> Result<f64> {
    if level == 0.0 {
        Ok(0.95)
    } else if level > 0.0 && level < 1.0 {
        Ok(level)
    } else {
        Err(Error::invalid(
            field,
            "strictly between 0 and 1, or 0 for 0.95",
        ))
    }
}

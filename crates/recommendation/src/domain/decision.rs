//! Decisions as logged: the candidates with why each was chosen or left
//! out, the chosen actions as they were, the features the scorer saw, the
//! shadow policies' choices and the outcomes; and the policies that choose.
//!
//! Reasons, outcome types and sources are kept as the contract's enum
//! numbers (`cairn.recommendation.v1.ExclusionReason`, `OutcomeType`,
//! `OutcomeSource`, `NoActionReason`), which are stable by the contract's
//! rules, so the log reads back exactly as it was written.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::action::Action;
use super::bandit::Scorer;
use super::features::{DecisionContext, Features};

/// One candidate of a decision, chosen or left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedCandidate {
    /// The action.
    pub action_id: String,
    /// Its name at the time.
    pub action_name: String,
    /// 1 for the best chosen, 0 when left out.
    pub rank: u32,
    /// `ExclusionReason` number; 0 when chosen.
    pub reason: i32,
    /// Details of the reason.
    pub detail: String,
    /// Arbitration score, for candidates that reached scoring.
    pub score: f64,
    /// Mean acceptance estimate, for candidates that reached scoring.
    pub propensity: f64,
    /// Probability of the choice at its rank; chosen candidates only.
    pub selection_probability: f64,
    /// The action's learning group, for offline replays.
    #[serde(default)]
    pub group: String,
    /// value factor × priority factor, for offline replays.
    #[serde(default)]
    pub factor: f64,
    /// The value factor alone, for value estimates.
    #[serde(default)]
    pub value_factor: f64,
}

/// One feature's contribution to a propensity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Driver {
    /// The feature's name.
    pub feature: String,
    /// Its value.
    pub value: f64,
    /// θ·x for it, clamped to -1..1.
    pub contribution: f64,
}

/// Why an action was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Explanation {
    /// The rule that held; empty without one.
    pub eligibility_rule: String,
    /// Largest contributions first, at most 5.
    pub drivers: Vec<Driver>,
    /// The propensity after exploration.
    pub ranking_propensity: f64,
    /// Value in arbitration.
    pub value_factor: f64,
    /// business_priority / 50.
    pub priority_factor: f64,
    /// Chosen to explore.
    pub explored: bool,
    /// Scored mostly from similar actions.
    pub cold_start: bool,
    /// One line for people.
    pub summary: String,
}

/// A chosen action of a decision, as it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChosenAction {
    /// 1 is best.
    pub rank: u32,
    /// The action when chosen.
    pub action: Action,
    /// Arbitration score.
    pub score: f64,
    /// Mean acceptance estimate.
    pub propensity: f64,
    /// Probability of the choice at this rank.
    pub selection_probability: f64,
    /// Why.
    pub explanation: Explanation,
}

/// What a shadow policy would have chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowChoice {
    /// The shadow policy.
    pub policy_id: String,
    /// Its choices, in rank order.
    pub actions: Vec<LoggedCandidate>,
}

/// One outcome of a chosen action.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The decision.
    pub decision_id: Uuid,
    /// The action.
    pub action_id: String,
    /// `OutcomeType` number.
    pub kind: i32,
    /// Channel where it happened.
    pub channel: i32,
    /// When it happened.
    pub occur_time: DateTime<Utc>,
    /// When it was recorded.
    pub record_time: DateTime<Utc>,
    /// `OutcomeSource` number.
    pub source: i32,
}

/// A logged decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Its id.
    pub id: Uuid,
    /// The caller's idempotency key.
    pub request_id: Option<String>,
    /// The profile; `None` for an anonymous unknown customer.
    pub profile_id: Option<Uuid>,
    /// The channel's enum number.
    pub channel: i32,
    /// The caller's context.
    pub context: DecisionContext,
    /// What the scorer saw.
    pub features: Features,
    /// The live policy.
    pub policy_id: String,
    /// Chosen candidates in rank order, then the left-out ones in catalogue order.
    pub candidates: Vec<LoggedCandidate>,
    /// The chosen actions.
    pub chosen: Vec<ChosenAction>,
    /// `NoActionReason` number.
    pub no_action_reason: i32,
    /// Shadow policies' choices.
    pub shadow_choices: Vec<ShadowChoice>,
    /// When made.
    pub decide_time: DateTime<Utc>,
    /// Until when outcomes are accepted.
    pub expire_time: DateTime<Utc>,
    /// Outcomes recorded, in order (filled when read back).
    pub outcomes: Vec<Outcome>,
}

/// Where a policy is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyState {
    /// Chooses what customers get.
    Live,
    /// Chooses beside the live one; never shown.
    Shadow,
    /// No longer chooses.
    Retired,
}

impl PolicyState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Shadow => "shadow",
            Self::Retired => "retired",
        }
    }

    /// Reads a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "live" => Some(Self::Live),
            "shadow" => Some(Self::Shadow),
            "retired" => Some(Self::Retired),
            _ => None,
        }
    }
}

/// A decision policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Its id.
    pub id: String,
    /// Name for people.
    pub display_name: String,
    /// Why it exists.
    pub description: String,
    /// How it scores.
    pub scorer: Scorer,
    /// Live, shadow or retired.
    pub state: PolicyState,
    /// When created.
    pub create_time: DateTime<Utc>,
    /// When it became live.
    pub promote_time: Option<DateTime<Utc>>,
    /// When retired.
    pub retire_time: Option<DateTime<Utc>>,
}

/// The id of the policy the server creates on first start.
pub const DEFAULT_POLICY: &str = "default";

/// Most shadow policies running at once.
pub const MAX_SHADOW_POLICIES: usize = 3;

//! The catalogue's actions: what the operator may do for or offer to a
//! customer (TMF680 RecommendationItem; for offers, a TMF620
//! ProductOffering with its decision rules).

use std::collections::BTreeMap;

use cairn_runtime::common::TypedValue;
use cairn_runtime::rules::Rule;
use cairn_runtime::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The variables an eligibility rule may name (see `Action.eligibility_rule`
/// in the contract).
pub const RULE_VARIABLES: &[&str] = &[
    "attributes",
    "segments",
    "groups",
    "journey",
    "stages",
    "channel",
    "context",
    "now",
];

/// Longest cool-down after a decline: a year.
pub const MAX_COOLDOWN_SECONDS: i64 = 365 * 24 * 3600;

/// What an action does for the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// An offer that sells something.
    SalesOffer,
    /// An offer that keeps a customer.
    RetentionOffer,
    /// A service action the customer needs.
    Service,
    /// Information without an offer.
    Information,
}

impl ActionKind {
    /// The consent purpose an action of this kind needs unless it names one.
    pub fn default_purpose(self) -> &'static str {
        match self {
            Self::SalesOffer | Self::RetentionOffer => "marketing",
            Self::Service | Self::Information => "service",
        }
    }

    /// The stored name, also used in learning-group keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SalesOffer => "sales_offer",
            Self::RetentionOffer => "retention_offer",
            Self::Service => "service",
            Self::Information => "information",
        }
    }

    /// Only service and information actions may bypass marketing caps.
    pub fn may_be_transactional(self) -> bool {
        matches!(self, Self::Service | Self::Information)
    }
}

/// Whether an action can still be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionState {
    /// May be chosen inside its validity window.
    Active,
    /// Never chosen again; kept for the log. Final.
    Retired,
}

/// An amount in the catalogue currency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Money {
    /// ISO 4217 code.
    pub currency_code: String,
    /// Whole units.
    pub units: i64,
    /// Nano units, same sign as `units`.
    pub nanos: i32,
}

impl Money {
    /// The amount in whole units, as a float for arbitration.
    pub fn amount(&self) -> f64 {
        self.units as f64 + f64::from(self.nanos) / 1e9
    }
}

/// How often one customer may get an action; 0 means no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionCaps {
    /// Per customer per day.
    pub per_day: u32,
    /// Per customer per week.
    pub per_week: u32,
    /// Per customer ever.
    pub lifetime: u32,
}

impl ActionCaps {
    /// True when any cap is set.
    pub fn any(&self) -> bool {
        self.per_day > 0 || self.per_week > 0 || self.lifetime > 0
    }
}

/// How often an action may be chosen across all customers; 0 means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeLimit {
    /// Per day.
    pub per_day: u64,
    /// Per week.
    pub per_week: u64,
}

impl VolumeLimit {
    /// True when any limit is set.
    pub fn any(&self) -> bool {
        self.per_day > 0 || self.per_week > 0
    }
}

/// One action of the catalogue, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Immutable id.
    pub id: String,
    /// Name for agents and analysts.
    pub name: String,
    /// Longer description.
    pub description: String,
    /// What it does; immutable.
    pub kind: ActionKind,
    /// Free grouping within the kind; learning shares across kind and category.
    pub category: String,
    /// The TMF620 ProductOffering it offers, if any.
    pub product_offering_id: String,
    /// Channels (enum numbers) on which it may be chosen.
    pub channels: Vec<i32>,
    /// Start of the validity window; `None` means from creation.
    pub valid_from: Option<DateTime<Utc>>,
    /// End of the validity window (exclusive); `None` means without end.
    pub valid_until: Option<DateTime<Utc>>,
    /// What an acceptance is worth.
    pub value: Option<Money>,
    /// 1 to 100; 50 is neutral.
    pub business_priority: u32,
    /// CEL eligibility rule; empty means everyone.
    pub eligibility_rule: String,
    /// Consent purpose needed on the channel.
    pub purpose: String,
    /// Bypasses frequency caps and complaint suppression (never consent).
    pub transactional: bool,
    /// Per-customer caps.
    pub caps: ActionCaps,
    /// Global volume limit.
    pub volume_limit: VolumeLimit,
    /// Cool-down after a decline in seconds; `None` means the contact
    /// policy's default.
    pub decline_cooldown_seconds: Option<i64>,
    /// Content for the channel to render.
    pub properties: BTreeMap<String, TypedValue>,
    /// Active or retired.
    pub state: ActionState,
    /// When created.
    pub create_time: DateTime<Utc>,
    /// When last changed.
    pub update_time: DateTime<Utc>,
    /// When retired.
    pub retire_time: Option<DateTime<Utc>>,
    /// Increased by every change; the etag.
    pub version: i64,
}

impl Action {
    /// The value used in arbitration: the value in whole units, or 1 when
    /// there is none (so actions without a value rank by propensity).
    pub fn value_factor(&self) -> f64 {
        match &self.value {
            Some(money) if money.amount() > 0.0 => money.amount(),
            _ => 1.0,
        }
    }

    /// business_priority / 50.
    pub fn priority_factor(&self) -> f64 {
        f64::from(self.business_priority) / 50.0
    }

    /// The learning group: actions of one kind and category share what the
    /// model learns about them, so a new one starts from its group.
    pub fn group_key(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.category)
    }

    /// True when the action may be chosen at `now`.
    pub fn available(&self, now: DateTime<Utc>) -> bool {
        self.state == ActionState::Active
            && self.valid_from.is_none_or(|from| now >= from)
            && self.valid_until.is_none_or(|until| now < until)
    }

    /// The etag clients send back to guard updates.
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }

    /// Compiles the eligibility rule; `None` when there is none.
    pub fn compile_rule(&self, field: &str) -> Result<Option<Rule>> {
        if self.eligibility_rule.trim().is_empty() {
            return Ok(None);
        }
        Rule::compile(field, &self.eligibility_rule, RULE_VARIABLES).map(Some)
    }

    /// Checks the rules that span several fields; `prefix` names the action
    /// in errors (for example "action").
    pub fn check(&self, prefix: &str) -> Result<()> {
        if self.transactional && !self.kind.may_be_transactional() {
            return Err(Error::invalid(
                format!("{prefix}.transactional"),
                "only ACTION_KIND_SERVICE and ACTION_KIND_INFORMATION actions may be transactional",
            ));
        }
        if let (Some(from), Some(until)) = (self.valid_from, self.valid_until)
            && until <= from
        {
            return Err(Error::invalid(
                format!("{prefix}.valid_for.end_time"),
                "must be after start_time",
            ));
        }
        self.compile_rule(&format!("{prefix}.eligibility_rule"))?;
        Ok(())
    }
}

/// Checks an action or policy id: lower-case letters, digits, '-' and '_',
/// 1 to 64 bytes, starting with a letter or digit.
pub fn check_id(field: &str, id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "ids are 1 to 64 bytes of lower-case letters, digits, '-' and '_', starting with a letter or digit",
        ))
    }
}

/// Checks a purpose or category: lower-case letters, digits and '_', at
/// most 64 bytes (empty allowed where the caller allows it).
pub fn check_word(field: &str, word: &str) -> Result<()> {
    let valid = word.len() <= 64
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "lower-case letters, digits and '_', at most 64 bytes",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action() -> Action {
        let now = Utc::now();
        Action {
            id: "upgrade-5g".into(),
            name: "5G upgrade".into(),
            description: String::new(),
            kind: ActionKind::SalesOffer,
            category: "upgrade".into(),
            product_offering_id: String::new(),
            channels: vec![1],
            valid_from: None,
            valid_until: None,
            value: None,
            business_priority: 50,
            eligibility_rule: String::new(),
            purpose: "marketing".into(),
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
        }
    }

    #[test]
    fn factors_and_availability() {
        let mut action = action();
        assert_eq!(action.value_factor(), 1.0);
        assert_eq!(action.priority_factor(), 1.0);
        action.value = Some(Money {
            currency_code: "EUR".into(),
            units: 12,
            nanos: 500_000_000,
        });
        assert_eq!(action.value_factor(), 12.5);
        assert!(action.available(Utc::now()));
        action.valid_until = Some(Utc::now() - chrono::Duration::seconds(1));
        assert!(!action.available(Utc::now()));
        assert_eq!(action.group_key(), "sales_offer:upgrade");
    }

    #[test]
    fn only_service_kinds_are_transactional_and_rules_must_parse() {
        let mut action = action();
        action.transactional = true;
        assert!(action.check("action").is_err());
        action.transactional = false;
        action.eligibility_rule = "attributes.tenure_months >".into();
        let Err(Error::InvalidArgument(violations)) = action.check("action") else {
            panic!("a broken rule passed");
        };
        assert_eq!(violations[0].field, "action.eligibility_rule");
        action.eligibility_rule = "\"vip\" in segments && channel == \"web\"".into();
        assert!(action.check("action").is_ok());
    }

    #[test]
    fn ids() {
        assert!(check_id("id", "retention-10pct-24m").is_ok());
        assert!(check_id("id", "-x").is_err());
        assert!(check_id("id", "Upper").is_err());
        assert!(check_id("id", "").is_err());
    }
}

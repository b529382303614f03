//! A touchpoint: one interaction of a customer with the operator.

use std::collections::BTreeMap;

use cairn_runtime::common::TypedValue;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// Longest client-chosen touchpoint id.
pub const MAX_TOUCHPOINT_ID_BYTES: usize = 128;
/// Most properties on one touchpoint.
pub const MAX_PROPERTIES: usize = 64;
/// Largest property value (strings, or a list's strings together).
pub const MAX_PROPERTY_VALUE_BYTES: usize = 4096;
/// How far in the future a touchpoint may claim to have happened (clock skew).
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);

/// Properties by name.
pub type Properties = BTreeMap<String, TypedValue>;

/// What kind of touchpoint it is: a name from the documented vocabulary, or
/// an operator's own (stored as `custom:<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TouchpointKind(String);

impl TouchpointKind {
    /// A kind from its stored name.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The stored name, for example `add_to_cart` or `custom:roaming_pass`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored touchpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Touchpoint {
    /// The client-chosen id; the same id is the same touchpoint.
    pub id: String,
    /// The profile it was resolved to.
    pub profile_id: Uuid,
    /// The channel, as the contract's enum number.
    pub channel: i32,
    /// What happened.
    pub kind: TouchpointKind,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// When Cairn stored it.
    pub received_at: DateTime<Utc>,
    /// Details.
    pub properties: Properties,
}

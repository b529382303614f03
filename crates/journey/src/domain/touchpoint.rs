//! A touchpoint: one interaction of a customer with the operator.

use std::collections::BTreeMap;

use cairn_runtime::common::{CustomerReference, TypedValue};
use cairn_runtime::{Error, Result};
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

/// A touchpoint as a caller sent it, checked but not yet resolved to a profile.
#[derive(Debug, Clone)]
pub struct IncomingTouchpoint {
    /// The client-chosen id.
    pub id: String,
    /// Who it concerns.
    pub customer: CustomerReference,
    /// The channel's enum number.
    pub channel: i32,
    /// What kind of touchpoint it is.
    pub kind: TouchpointKind,
    /// When it happened on the channel.
    pub occurred_at: DateTime<Utc>,
    /// Its properties, checked.
    pub properties: Properties,
}

impl IncomingTouchpoint {
    /// Keeps the id of a touchpoint sent with `customer`'s own token under
    /// that customer (`<profile id>/<touchpoint id>`), so that ids form one
    /// namespace per customer: a customer's front end can neither claim an
    /// id another system will later send for someone else (which would then
    /// be taken for a retry and dropped) nor learn, from how its own id is
    /// answered, that another customer's touchpoint holds it. Retries from
    /// the same customer still count once. The scoped id must fit the
    /// store's 128 bytes, so such an id is at most 91 bytes.
    pub fn scoped_to(mut self, field: &str, customer: Option<Uuid>) -> Result<Self> {
        let Some(customer) = customer else {
            return Ok(self);
        };
        let scoped = format!("{customer}/{}", self.id);
        if scoped.len() > MAX_TOUCHPOINT_ID_BYTES {
            return Err(Error::invalid(
                format!("{field}.touchpoint_id"),
                format!(
                    "at most {} bytes with a customer's token, which keeps the id under the customer's profile id",
                    MAX_TOUCHPOINT_ID_BYTES - customer.to_string().len() - 1
                ),
            ));
        }
        self.id = scoped;
        Ok(self)
    }

    /// The decision the touchpoint names (its `decision_id` property, which
    /// the recommendation service reads as an offer's outcome), if any.
    pub fn decision_id(&self) -> Option<&str> {
        match self.properties.get("decision_id") {
            Some(cairn_runtime::common::TypedValue::String(id)) if !id.is_empty() => Some(id),
            _ => None,
        }
    }

    /// The touchpoint to store, resolved to `profile_id`.
    pub fn into_touchpoint(self, profile_id: Uuid) -> Touchpoint {
        Touchpoint {
            id: self.id,
            profile_id,
            channel: self.channel,
            kind: self.kind,
            occurred_at: self.occurred_at,
            received_at: Utc::now(),
            properties: self.properties,
        }
    }
}

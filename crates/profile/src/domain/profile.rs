//! A profile: one customer across every channel.

use std::collections::BTreeMap;

use cairn_runtime::common::TypedValue;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Identifier;

/// Most attributes one profile may carry.
pub const MAX_ATTRIBUTES: usize = 256;

/// Attributes by name.
pub type Attributes = BTreeMap<String, TypedValue>;

/// Whether the customer is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileState {
    /// Only a cookie or a device has been seen.
    Anonymous,
    /// A personal identifier or attributes are known.
    Known,
}

impl ProfileState {
    /// The stored name.
    pub fn storage_name(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Known => "known",
        }
    }

    /// Reads a stored name back (unknown names read as known).
    pub fn from_storage_name(name: &str) -> Self {
        if name == "anonymous" {
            Self::Anonymous
        } else {
            Self::Known
        }
    }
}

/// An identifier as a profile holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileIdentifier {
    /// The identifier.
    pub identifier: Identifier,
    /// Several people share it; it never merges profiles automatically.
    pub shared: bool,
    /// Since when the profile holds it.
    pub valid_from: DateTime<Utc>,
    /// Until when it held it; `None` while it does.
    pub valid_until: Option<DateTime<Utc>>,
}

/// One customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Cairn's id.
    pub id: Uuid,
    /// Known or anonymous.
    pub state: ProfileState,
    /// Its identifiers, current and past.
    pub identifiers: Vec<ProfileIdentifier>,
    /// Its attributes.
    pub attributes: Attributes,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// What a caller gives to create a profile, already validated.
#[derive(Debug, Clone)]
pub struct NewProfile {
    /// At least one identifier.
    pub identifiers: Vec<Identifier>,
    /// Initial attributes.
    pub attributes: Attributes,
    /// Created on first sight of an identifier, not by a caller who knows the customer.
    pub anonymous: bool,
    /// The caller's idempotency key, if any.
    pub request_id: Option<String>,
}

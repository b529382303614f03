//! The profile domain: identifiers and profiles, free of gRPC and SQL.

mod attributes;
mod consent;
mod identifier;
mod merge;
mod profile;

pub use attributes::{AttributeDefinition, ValueType, check_types};
pub use consent::{
    ConsentAnswer, ContactDecision, ContactReason, Preferences, Purpose, may_contact,
};
pub use identifier::{Identifier, IdentifierKind, MAX_VALUE_BYTES, PhoneRules};
pub use merge::MergeRule;
pub use profile::{
    Attributes, MAX_ATTRIBUTES, NewProfile, Profile, ProfileIdentifier, ProfileState,
};

//! Registered attributes and the type check of their values.

use cairn_runtime::common::TypedValue;
use cairn_runtime::{Error, Result, Violations};

use super::Attributes;

/// The type a registered attribute's values must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// Text.
    String,
    /// A number.
    Number,
    /// True or false.
    Bool,
    /// A point in time.
    Timestamp,
    /// A list of strings.
    List,
}

impl ValueType {
    /// The stored name.
    pub fn storage_name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Bool => "bool",
            Self::Timestamp => "timestamp",
            Self::List => "list",
        }
    }

    /// Reads a stored name back.
    pub fn from_storage_name(name: &str) -> Option<Self> {
        Some(match name {
            "string" => Self::String,
            "number" => Self::Number,
            "bool" => Self::Bool,
            "timestamp" => Self::Timestamp,
            "list" => Self::List,
            _ => return None,
        })
    }

    fn of(value: &TypedValue) -> Self {
        match value {
            TypedValue::String(_) => Self::String,
            TypedValue::Number(_) => Self::Number,
            TypedValue::Bool(_) => Self::Bool,
            TypedValue::Timestamp(_) => Self::Timestamp,
            TypedValue::List(_) => Self::List,
        }
    }
}

/// A registered attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeDefinition {
    /// Its name.
    pub name: String,
    /// The type of its values.
    pub value_type: ValueType,
    /// What it means.
    pub description: String,
    /// Whether its values are personal data.
    pub personal_data: bool,
}

/// Checks `attributes` (named under `field`) against `definitions`: a
/// registered attribute's value must have its type; unregistered ones pass.
pub fn check_types(
    field: &str,
    attributes: &Attributes,
    definitions: &[AttributeDefinition],
) -> Result<()> {
    let mut violations = Violations::new();
    for (name, value) in attributes {
        if let Some(definition) = definitions.iter().find(|d| &d.name == name) {
            let actual = ValueType::of(value);
            if actual != definition.value_type {
                violations.add(
                    format!("{field}[{name}]"),
                    format!(
                        "is registered as a {} attribute; got a {}",
                        definition.value_type.storage_name(),
                        actual.storage_name()
                    ),
                );
            }
        }
    }
    violations.finish().map_err(|error| match error {
        Error::InvalidArgument(found) => Error::InvalidArgument(found),
        other => other,
    })
}

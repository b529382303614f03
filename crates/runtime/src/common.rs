//! Conversions of the contract's common types (`cairn.common.v1`) into
//! domain types, validated once at the edge and shared by every service.

use cairn_contract::common::v1 as pb;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest attribute or property name.
pub const MAX_NAME_BYTES: usize = 64;

/// A typed value of an attribute, a property or a context entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypedValue {
    /// Text.
    String(String),
    /// A number.
    Number(f64),
    /// True or false.
    Bool(bool),
    /// A point in time.
    Timestamp(DateTime<Utc>),
    /// A list of strings.
    List(Vec<String>),
}

impl TypedValue {
    /// Reads a wire value; `field` names it in the error when it is empty.
    pub fn from_proto(field: &str, value: pb::Value) -> Result<Self> {
        use pb::value::Kind;
        match value.kind {
            Some(Kind::StringValue(text)) => Ok(Self::String(text)),
            Some(Kind::NumberValue(number)) if number.is_finite() => Ok(Self::Number(number)),
            Some(Kind::NumberValue(_)) => Err(Error::invalid(field, "numbers must be finite")),
            Some(Kind::BoolValue(flag)) => Ok(Self::Bool(flag)),
            Some(Kind::TimestampValue(timestamp)) => {
                Ok(Self::Timestamp(timestamp_from_proto(field, &timestamp)?))
            }
            Some(Kind::ListValue(list)) => Ok(Self::List(list.values)),
            None => Err(Error::invalid(field, "a value must set one of its kinds")),
        }
    }

    /// The wire form.
    pub fn to_proto(&self) -> pb::Value {
        use pb::value::Kind;
        let kind = match self {
            Self::String(text) => Kind::StringValue(text.clone()),
            Self::Number(number) => Kind::NumberValue(*number),
            Self::Bool(flag) => Kind::BoolValue(*flag),
            Self::Timestamp(time) => Kind::TimestampValue(timestamp_to_proto(*time)),
            Self::List(values) => Kind::ListValue(pb::StringList {
                values: values.clone(),
            }),
        };
        pb::Value { kind: Some(kind) }
    }

    /// The value as rules (CEL) see it: plain JSON, timestamps as RFC 3339
    /// text, so that every service's rules read values the same way.
    pub fn to_rule_value(&self) -> serde_json::Value {
        match self {
            Self::String(text) => serde_json::Value::String(text.clone()),
            Self::Number(number) => serde_json::json!(number),
            Self::Bool(flag) => serde_json::Value::Bool(*flag),
            Self::Timestamp(time) => serde_json::Value::String(time.to_rfc3339()),
            Self::List(items) => serde_json::json!(items),
        }
    }

    /// Bytes the value takes, for size limits.
    pub fn size(&self) -> usize {
        match self {
            Self::String(text) => text.len(),
            Self::List(values) => values.iter().map(String::len).sum(),
            Self::Number(_) | Self::Bool(_) | Self::Timestamp(_) => 8,
        }
    }
}

/// A wire timestamp as a UTC time.
pub fn timestamp_from_proto(
    field: &str,
    timestamp: &prost_types::Timestamp,
) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp(timestamp.seconds, timestamp.nanos.max(0) as u32)
        .ok_or_else(|| Error::invalid(field, "the timestamp is out of range"))
}

/// A UTC time as a wire timestamp.
pub fn timestamp_to_proto(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// A required channel: INVALID_ARGUMENT naming `field` when it is unset or unknown.
pub fn channel(field: &str, raw: i32) -> Result<pb::Channel> {
    match pb::Channel::try_from(raw) {
        Ok(pb::Channel::Unspecified) => {
            Err(Error::invalid(field, "required: one of the Channel values"))
        }
        Ok(channel) => Ok(channel),
        Err(_) => Err(Error::invalid(
            field,
            format!("{raw} is not a known Channel value"),
        )),
    }
}

/// Checks an attribute or property name: lower-case letters, digits and '_',
/// starting with a letter, at most [`MAX_NAME_BYTES`].
pub fn check_name(field: &str, name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!(
                "names are lower-case letters, digits and '_', start with a letter, at most {MAX_NAME_BYTES} bytes"
            ),
        ))
    }
}

/// How a request names a customer, checked for shape (the profile service
/// normalises identifier values).
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerReference {
    /// By Cairn's profile id.
    ProfileId(uuid::Uuid),
    /// By an identifier, as sent.
    Identifier(pb::Identifier),
}

impl CustomerReference {
    /// Reads a required customer reference named `field`.
    pub fn from_proto(field: &str, customer: Option<pb::CustomerRef>) -> Result<Self> {
        use pb::customer_ref::Customer;
        match customer.and_then(|c| c.customer) {
            Some(Customer::ProfileId(id)) => uuid::Uuid::parse_str(&id)
                .map(Self::ProfileId)
                .map_err(|_| Error::invalid(format!("{field}.profile_id"), "must be a UUID")),
            Some(Customer::Identifier(identifier)) => {
                if identifier.value.trim().is_empty() {
                    return Err(Error::invalid(
                        format!("{field}.identifier.value"),
                        "required",
                    ));
                }
                match pb::IdentifierType::try_from(identifier.r#type) {
                    Ok(pb::IdentifierType::Unspecified) | Err(_) => Err(Error::invalid(
                        format!("{field}.identifier.type"),
                        "required: one of the IdentifierType values",
                    )),
                    Ok(_) => Ok(Self::Identifier(identifier)),
                }
            }
            None => Err(Error::invalid(
                field,
                "required: a profile_id or an identifier",
            )),
        }
    }

    /// The wire form.
    pub fn to_proto(&self) -> pb::CustomerRef {
        use pb::customer_ref::Customer;
        pb::CustomerRef {
            customer: Some(match self {
                Self::ProfileId(id) => Customer::ProfileId(id.to_string()),
                Self::Identifier(identifier) => Customer::Identifier(identifier.clone()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let values = [
            TypedValue::String("gold".into()),
            TypedValue::Number(12.5),
            TypedValue::Bool(true),
            TypedValue::List(vec!["a".into()]),
        ];
        for value in values {
            assert_eq!(
                TypedValue::from_proto("v", value.to_proto()).unwrap(),
                value
            );
        }
        assert!(TypedValue::from_proto("v", pb::Value { kind: None }).is_err());
    }

    #[test]
    fn names_and_channels() {
        assert!(check_name("n", "tenure_months").is_ok());
        assert!(check_name("n", "Tenure").is_err());
        assert!(check_name("n", "").is_err());
        assert!(channel("c", 0).is_err());
        assert!(channel("c", 999).is_err());
        assert_eq!(channel("c", 1).unwrap(), pb::Channel::Web);
    }
}

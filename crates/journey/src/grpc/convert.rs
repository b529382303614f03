//! Wire ⇄ domain conversions of the journey service, validated once here.

use cairn_contract::journey::v1 as pb;
use cairn_runtime::common::{
    CustomerReference, TypedValue, channel, check_name, timestamp_from_proto, timestamp_to_proto,
};
use cairn_runtime::{Error, Result, Violations};
use chrono::{DateTime, Utc};

use crate::domain::{
    IncomingTouchpoint, MAX_FUTURE_SKEW, MAX_PROPERTIES, MAX_PROPERTY_VALUE_BYTES,
    MAX_TOUCHPOINT_ID_BYTES, Properties, Touchpoint, TouchpointKind,
};

/// Checks a wire touchpoint named `field`, reporting every bad field at once.
pub fn incoming_touchpoint(
    field: &str,
    wire: pb::Touchpoint,
    now: DateTime<Utc>,
) -> Result<IncomingTouchpoint> {
    let mut violations = Violations::new();
    let id = wire.touchpoint_id;
    if id.is_empty() {
        violations.add(
            format!("{field}.touchpoint_id"),
            "required: a client-chosen id that makes retries count once",
        );
    } else if id.len() > MAX_TOUCHPOINT_ID_BYTES {
        violations.add(
            format!("{field}.touchpoint_id"),
            format!("at most {MAX_TOUCHPOINT_ID_BYTES} bytes"),
        );
    }
    let customer = violations.check(CustomerReference::from_proto(
        &format!("{field}.customer"),
        wire.customer,
    ));
    let channel_value = violations.check(channel(&format!("{field}.channel"), wire.channel));
    let kind = violations.check(kind(field, wire.r#type, &wire.custom_type));
    let occurred_at = match wire.occurred_at {
        None => {
            violations.add(
                format!("{field}.occurred_at"),
                "required: when it happened on the channel",
            );
            None
        }
        Some(timestamp) => {
            match timestamp_from_proto(&format!("{field}.occurred_at"), &timestamp) {
                Ok(time) if time > now + MAX_FUTURE_SKEW => {
                    violations.add(
                        format!("{field}.occurred_at"),
                        "more than 5 minutes in the future; check the sender's clock",
                    );
                    None
                }
                outcome => violations.check(outcome),
            }
        }
    };
    let mut properties = Properties::new();
    if wire.properties.len() > MAX_PROPERTIES {
        violations.add(
            format!("{field}.properties"),
            format!("at most {MAX_PROPERTIES} properties"),
        );
    } else {
        for (name, value) in wire.properties {
            let entry = format!("{field}.properties[{name}]");
            if violations.check(check_name(&entry, &name)).is_none() {
                continue;
            }
            match TypedValue::from_proto(&entry, value) {
                Ok(value) if value.size() > MAX_PROPERTY_VALUE_BYTES => {
                    violations.add(entry, format!("at most {MAX_PROPERTY_VALUE_BYTES} bytes"));
                }
                outcome => {
                    if let Some(value) = violations.check(outcome) {
                        properties.insert(name, value);
                    }
                }
            }
        }
    }
    violations.finish()?;
    match (customer, channel_value, kind, occurred_at) {
        (Some(customer), Some(channel), Some(kind), Some(occurred_at)) => Ok(IncomingTouchpoint {
            id,
            customer,
            channel: channel as i32,
            kind,
            occurred_at,
            properties,
        }),
        _ => Err(Error::internal("a checked touchpoint field is missing")),
    }
}

/// The stored name of a vocabulary touchpoint type named `field` (not custom).
pub fn kind_name(field: &str, raw: i32) -> Result<String> {
    use pb::TouchpointType as T;
    match T::try_from(raw) {
        Ok(T::Unspecified) | Ok(T::Custom) | Err(_) => Err(Error::invalid(
            field,
            "one of the TouchpointType values other than custom",
        )),
        Ok(known) => Ok(known
            .as_str_name()
            .trim_start_matches("TOUCHPOINT_TYPE_")
            .to_lowercase()),
    }
}

fn kind(field: &str, raw: i32, custom_type: &str) -> Result<TouchpointKind> {
    use pb::TouchpointType as T;
    let name = match T::try_from(raw) {
        Ok(T::Unspecified) => {
            return Err(Error::invalid(
                format!("{field}.type"),
                "required: one of the TouchpointType values",
            ));
        }
        Err(_) => {
            return Err(Error::invalid(
                format!("{field}.type"),
                format!("{raw} is not a known TouchpointType value"),
            ));
        }
        Ok(T::Custom) => {
            check_name(&format!("{field}.custom_type"), custom_type)?;
            return Ok(TouchpointKind::new(format!("custom:{custom_type}")));
        }
        Ok(known) => known
            .as_str_name()
            .trim_start_matches("TOUCHPOINT_TYPE_")
            .to_lowercase(),
    };
    if !custom_type.is_empty() {
        return Err(Error::invalid(
            format!("{field}.custom_type"),
            "only for TOUCHPOINT_TYPE_CUSTOM",
        ));
    }
    Ok(TouchpointKind::new(name))
}

/// The wire form of a stored touchpoint.
pub fn touchpoint_to_proto(touchpoint: &Touchpoint) -> pb::Touchpoint {
    let (kind, custom_type) = match touchpoint.kind.as_str().strip_prefix("custom:") {
        Some(custom) => (pb::TouchpointType::Custom, custom.to_string()),
        None => (
            pb::TouchpointType::from_str_name(&format!(
                "TOUCHPOINT_TYPE_{}",
                touchpoint.kind.as_str().to_uppercase()
            ))
            .unwrap_or(pb::TouchpointType::Custom),
            String::new(),
        ),
    };
    pb::Touchpoint {
        touchpoint_id: touchpoint.id.clone(),
        customer: Some(CustomerReference::ProfileId(touchpoint.profile_id).to_proto()),
        profile_id: touchpoint.profile_id.to_string(),
        channel: touchpoint.channel,
        r#type: kind as i32,
        custom_type,
        occurred_at: Some(timestamp_to_proto(touchpoint.occurred_at)),
        receive_time: Some(timestamp_to_proto(touchpoint.received_at)),
        properties: touchpoint
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), v.to_proto()))
            .collect(),
        ..Default::default()
    }
}

//! Wire ⇄ domain conversions of the profile service, validated once here.

use cairn_contract::common::v1 as common;
use cairn_contract::profile::v1 as pb;
use cairn_runtime::common::{TypedValue, check_name, timestamp_to_proto};
use cairn_runtime::{Error, Result, Violations};
use std::collections::HashMap;

use crate::domain::{
    Attributes, Identifier, IdentifierKind, MAX_ATTRIBUTES, PhoneRules, Profile, ProfileState,
};
use crate::domain::{ConsentAnswer, ContactReason, Preferences, Purpose};
use crate::storage::{Erasure, MergeRecord, parse_time_zone};
use cairn_runtime::common::{channel, timestamp_from_proto};
use chrono::{DateTime, NaiveTime, Utc};

/// The longest idempotency key.
const MAX_REQUEST_ID_BYTES: usize = 128;

/// Reads a wire identifier named `field`, normalised.
pub fn identifier(
    field: &str,
    identifier: Option<common::Identifier>,
    phone: &PhoneRules,
) -> Result<Identifier> {
    let identifier = identifier.ok_or_else(|| Error::invalid(field, "required"))?;
    let kind = match identifier_kind(&format!("{field}.type"), identifier.r#type)? {
        None => {
            check_name(&format!("{field}.custom_type"), &identifier.custom_type)?;
            IdentifierKind::Custom(identifier.custom_type.clone())
        }
        Some(kind) => kind,
    };
    if !matches!(kind, IdentifierKind::Custom(_)) && !identifier.custom_type.is_empty() {
        return Err(Error::invalid(
            format!("{field}.custom_type"),
            "only for IDENTIFIER_TYPE_CUSTOM",
        ));
    }
    Identifier::parse(&format!("{field}.value"), kind, &identifier.value, phone)
}

/// The kind of a wire identifier type named `field`; `None` for
/// IDENTIFIER_TYPE_CUSTOM, whose name comes with the identifier.
pub fn identifier_kind(field: &str, raw: i32) -> Result<Option<IdentifierKind>> {
    Ok(Some(match common::IdentifierType::try_from(raw) {
        Ok(common::IdentifierType::Email) => IdentifierKind::Email,
        Ok(common::IdentifierType::PhoneNumber) => IdentifierKind::PhoneNumber,
        Ok(common::IdentifierType::DeviceId) => IdentifierKind::DeviceId,
        Ok(common::IdentifierType::CookieId) => IdentifierKind::CookieId,
        Ok(common::IdentifierType::SocialHandle) => IdentifierKind::SocialHandle,
        Ok(common::IdentifierType::CrmId) => IdentifierKind::CrmId,
        Ok(common::IdentifierType::BillingAccountId) => IdentifierKind::BillingAccountId,
        Ok(common::IdentifierType::Custom) => return Ok(None),
        Ok(common::IdentifierType::Unspecified) => {
            return Err(Error::invalid(
                field,
                "required: one of the IdentifierType values",
            ));
        }
        Err(_) => {
            return Err(Error::invalid(
                field,
                format!("{raw} is not a known IdentifierType value"),
            ));
        }
    }))
}

/// The wire form of a domain identifier.
pub fn identifier_to_proto(identifier: &Identifier) -> common::Identifier {
    let (kind, custom_type) = match identifier.kind() {
        IdentifierKind::Email => (common::IdentifierType::Email, String::new()),
        IdentifierKind::PhoneNumber => (common::IdentifierType::PhoneNumber, String::new()),
        IdentifierKind::DeviceId => (common::IdentifierType::DeviceId, String::new()),
        IdentifierKind::CookieId => (common::IdentifierType::CookieId, String::new()),
        IdentifierKind::SocialHandle => (common::IdentifierType::SocialHandle, String::new()),
        IdentifierKind::CrmId => (common::IdentifierType::CrmId, String::new()),
        IdentifierKind::BillingAccountId => {
            (common::IdentifierType::BillingAccountId, String::new())
        }
        IdentifierKind::Custom(name) => (common::IdentifierType::Custom, name.clone()),
    };
    common::Identifier {
        r#type: kind as i32,
        value: identifier.value().to_string(),
        custom_type,
    }
}

/// Reads a map of attributes named `field`.
pub fn attributes(
    field: &str,
    wire: HashMap<String, common::Value>,
    violations: &mut Violations,
) -> Attributes {
    let mut attributes = Attributes::new();
    if wire.len() > MAX_ATTRIBUTES {
        violations.add(field, format!("at most {MAX_ATTRIBUTES} attributes"));
        return attributes;
    }
    for (name, value) in wire {
        let entry = format!("{field}[{name}]");
        if violations.check(check_name(&entry, &name)).is_none() {
            continue;
        }
        if let Some(value) = violations.check(TypedValue::from_proto(&entry, value)) {
            attributes.insert(name, value);
        }
    }
    attributes
}

/// Reads an optional idempotency key.
pub fn request_id(raw: String) -> Result<Option<String>> {
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.len() > MAX_REQUEST_ID_BYTES {
        return Err(Error::invalid(
            "request_id",
            format!("at most {MAX_REQUEST_ID_BYTES} bytes"),
        ));
    }
    Ok(Some(raw))
}

/// Reads an optional state filter.
pub fn state_filter(raw: i32) -> Result<Option<ProfileState>> {
    match pb::ProfileState::try_from(raw) {
        Ok(pb::ProfileState::Unspecified) => Ok(None),
        Ok(pb::ProfileState::Anonymous) => Ok(Some(ProfileState::Anonymous)),
        Ok(pb::ProfileState::Known) => Ok(Some(ProfileState::Known)),
        Err(_) => Err(Error::invalid(
            "state",
            format!("{raw} is not a known ProfileState value"),
        )),
    }
}

/// The wire form of a profile.
pub fn profile_to_proto(profile: &Profile) -> pb::Profile {
    pb::Profile {
        profile_id: profile.id.to_string(),
        state: match profile.state {
            ProfileState::Anonymous => pb::ProfileState::Anonymous,
            ProfileState::Known => pb::ProfileState::Known,
        } as i32,
        identifiers: profile
            .identifiers
            .iter()
            .map(|held| pb::ProfileIdentifier {
                identifier: Some(identifier_to_proto(&held.identifier)),
                shared: held.shared,
                valid_from: Some(timestamp_to_proto(held.valid_from)),
                valid_until: held.valid_until.map(timestamp_to_proto),
            })
            .collect(),
        attributes: profile
            .attributes
            .iter()
            .map(|(name, value)| (name.clone(), value.to_proto()))
            .collect(),
        create_time: Some(timestamp_to_proto(profile.created_at)),
        update_time: Some(timestamp_to_proto(profile.updated_at)),
        ..Default::default()
    }
}

/// The wire form of a merge.
pub fn merge_to_proto(merge: &MergeRecord) -> pb::Merge {
    pb::Merge {
        merge_id: merge.id.to_string(),
        survivor_profile_id: merge.survivor_id.to_string(),
        merged_profile_id: merge.merged_id.to_string(),
        reason: merge.reason.clone(),
        create_time: Some(timestamp_to_proto(merge.created_at)),
        undo_time: merge.undone_at.map(timestamp_to_proto),
    }
}

/// The wire form of an erasure request.
pub fn erasure_to_proto(erasure: &Erasure) -> pb::ErasureRequest {
    pb::ErasureRequest {
        erasure_request_id: erasure.id.to_string(),
        receive_time: Some(timestamp_to_proto(erasure.received_at)),
        complete_time: erasure.completed_at.map(timestamp_to_proto),
        profile_ids: erasure
            .profile_ids
            .iter()
            .map(ToString::to_string)
            .collect(),
    }
}

/// Reads a consent purpose named `field`.
pub fn purpose(field: &str, raw: &str) -> Result<Purpose> {
    Purpose::new(raw).ok_or_else(|| {
        Error::invalid(field, "a purpose is \"marketing\", \"service\", \"analytics\", \"profiling\" or your own: lower-case letters, digits and '_', at most 64 bytes")
    })
}

/// Reads a consent answer named `field`, recorded `now` unless it says when.
pub fn consent(
    field: &str,
    wire: Option<pb::Consent>,
    now: DateTime<Utc>,
) -> Result<ConsentAnswer> {
    let wire = wire.ok_or_else(|| Error::invalid(field, "required"))?;
    let mut violations = Violations::new();
    let purpose = violations.check(purpose(&format!("{field}.purpose"), &wire.purpose));
    let channel = violations.check(channel(&format!("{field}.channel"), wire.channel));
    if wire.source.trim().is_empty() || wire.source.len() > 128 {
        violations.add(
            format!("{field}.source"),
            "required, at most 128 bytes: where the answer was given",
        );
    }
    let recorded_at = match &wire.record_time {
        Some(time) => {
            match violations.check(timestamp_from_proto(&format!("{field}.record_time"), time)) {
                Some(time) if time > now + chrono::Duration::minutes(5) => {
                    violations.add(format!("{field}.record_time"), "in the future");
                    None
                }
                other => other,
            }
        }
        None => Some(now),
    };
    let expires_at = match &wire.expire_time {
        Some(time) => violations
            .check(timestamp_from_proto(&format!("{field}.expire_time"), time))
            .map(Some),
        None => Some(None),
    };
    violations.finish()?;
    match (purpose, channel, recorded_at, expires_at) {
        (Some(purpose), Some(channel), Some(recorded_at), Some(expires_at)) => Ok(ConsentAnswer {
            purpose,
            channel: channel as i32,
            granted: wire.granted,
            source: wire.source.trim().to_string(),
            recorded_at,
            expires_at,
        }),
        _ => Err(Error::internal("checked consent fields missing")),
    }
}

/// The wire form of a consent answer.
pub fn consent_to_proto(answer: &ConsentAnswer) -> pb::Consent {
    pb::Consent {
        purpose: answer.purpose.as_str().to_string(),
        channel: answer.channel,
        granted: answer.granted,
        source: answer.source.clone(),
        record_time: Some(timestamp_to_proto(answer.recorded_at)),
        expire_time: answer.expires_at.map(timestamp_to_proto),
    }
}

/// Reads preferences named `field`.
pub fn preferences(field: &str, wire: Option<pb::Preferences>) -> Result<Preferences> {
    let wire = wire.unwrap_or_default();
    let mut violations = Violations::new();
    let time_zone = if wire.time_zone.is_empty() {
        None
    } else {
        violations.check(parse_time_zone(
            &format!("{field}.time_zone"),
            &wire.time_zone,
        ))
    };
    let preferred_channel = if wire.preferred_channel == 0 {
        None
    } else {
        violations
            .check(channel(
                &format!("{field}.preferred_channel"),
                wire.preferred_channel,
            ))
            .map(|c| c as i32)
    };
    let mut clock = |name: &str, text: &str| -> Option<NaiveTime> {
        if text.is_empty() {
            return None;
        }
        let parsed = NaiveTime::parse_from_str(text, "%H:%M").ok();
        if parsed.is_none() {
            violations.add(format!("{field}.{name}"), "a local time \"HH:MM\"");
        }
        parsed
    };
    let start = clock("quiet_hours_start", &wire.quiet_hours_start);
    let end = clock("quiet_hours_end", &wire.quiet_hours_end);
    if start.is_some() != end.is_some() {
        violations.add(
            format!("{field}.quiet_hours_end"),
            "give both the start and the end of quiet hours, or neither",
        );
    }
    if wire.language.len() > 35 {
        violations.add(
            format!("{field}.language"),
            "a BCP 47 language tag such as \"sv-SE\"",
        );
    }
    violations.finish()?;
    Ok(Preferences {
        language: (!wire.language.is_empty()).then_some(wire.language),
        preferred_channel,
        time_zone,
        quiet_hours: start.zip(end),
    })
}

/// The wire form of preferences.
pub fn preferences_to_proto(preferences: &Preferences) -> pb::Preferences {
    pb::Preferences {
        language: preferences.language.clone().unwrap_or_default(),
        preferred_channel: preferences.preferred_channel.unwrap_or_default(),
        time_zone: preferences
            .time_zone
            .map(|zone| zone.name().to_string())
            .unwrap_or_default(),
        quiet_hours_start: preferences
            .quiet_hours
            .map(|(start, _)| start.format("%H:%M").to_string())
            .unwrap_or_default(),
        quiet_hours_end: preferences
            .quiet_hours
            .map(|(_, end)| end.format("%H:%M").to_string())
            .unwrap_or_default(),
    }
}

/// The wire form of a contact verdict.
pub fn verdict_to_proto(reason: ContactReason) -> pb::ContactVerdict {
    match reason {
        ContactReason::Granted => pb::ContactVerdict::Granted,
        ContactReason::ServicePurpose => pb::ContactVerdict::ServicePurpose,
        ContactReason::Denied => pb::ContactVerdict::Denied,
        ContactReason::NoConsent => pb::ContactVerdict::NoConsent,
        ContactReason::QuietHours => pb::ContactVerdict::QuietHours,
    }
}

/// The wire form of a contact answer: the verdict and the preferences a
/// caller needs to contact the customer well.
pub fn contact_answer_to_proto(
    decision: &crate::domain::ContactDecision,
    preferences: &Preferences,
) -> pb::CheckContactResponse {
    pb::CheckContactResponse {
        allowed: decision.allowed,
        verdict: verdict_to_proto(decision.reason) as i32,
        allowed_from: decision.allowed_from.map(timestamp_to_proto),
        preferences: Some(preferences_to_proto(preferences)),
    }
}

/// Reads an attribute definition named `field`.
pub fn attribute_definition(
    field: &str,
    wire: Option<pb::AttributeDefinition>,
) -> Result<crate::domain::AttributeDefinition> {
    use crate::domain::ValueType;
    let wire = wire.ok_or_else(|| Error::invalid(field, "required"))?;
    let mut violations = Violations::new();
    violations.check(check_name(&format!("{field}.name"), &wire.name));
    let value_type = match pb::AttributeType::try_from(wire.r#type) {
        Ok(pb::AttributeType::String) => Some(ValueType::String),
        Ok(pb::AttributeType::Number) => Some(ValueType::Number),
        Ok(pb::AttributeType::Bool) => Some(ValueType::Bool),
        Ok(pb::AttributeType::Timestamp) => Some(ValueType::Timestamp),
        Ok(pb::AttributeType::List) => Some(ValueType::List),
        Ok(pb::AttributeType::Unspecified) | Err(_) => {
            violations.add(
                format!("{field}.type"),
                "required: one of the AttributeType values",
            );
            None
        }
    };
    if wire.description.len() > 1024 {
        violations.add(format!("{field}.description"), "at most 1024 bytes");
    }
    violations.finish()?;
    Ok(crate::domain::AttributeDefinition {
        name: wire.name,
        value_type: value_type.ok_or_else(|| Error::internal("checked type missing"))?,
        description: wire.description,
        personal_data: wire.personal_data,
    })
}

/// The wire form of an attribute definition.
pub fn attribute_definition_to_proto(
    definition: &crate::domain::AttributeDefinition,
) -> pb::AttributeDefinition {
    use crate::domain::ValueType;
    pb::AttributeDefinition {
        name: definition.name.clone(),
        r#type: match definition.value_type {
            ValueType::String => pb::AttributeType::String,
            ValueType::Number => pb::AttributeType::Number,
            ValueType::Bool => pb::AttributeType::Bool,
            ValueType::Timestamp => pb::AttributeType::Timestamp,
            ValueType::List => pb::AttributeType::List,
        } as i32,
        description: definition.description.clone(),
        personal_data: definition.personal_data,
    }
}

/// The wire form of a segment.
pub fn segment_to_proto(segment: &crate::storage::SegmentRecord) -> pb::Segment {
    pb::Segment {
        segment_id: segment.id.clone(),
        display_name: segment.display_name.clone(),
        description: segment.description.clone(),
        rule: segment
            .rule
            .as_ref()
            .map(|r| r.source().to_string())
            .unwrap_or_default(),
        member_count: segment.member_count as i64,
        create_time: Some(timestamp_to_proto(segment.created_at)),
    }
}

/// Checks a segment id named `field`.
pub fn segment_id(field: &str, raw: &str) -> Result<String> {
    let valid = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if valid {
        Ok(raw.to_string())
    } else {
        Err(Error::invalid(
            field,
            "lower-case letters, digits, '_' and '-', at most 64 bytes",
        ))
    }
}

/// Reads an optional segment rule named `field` (empty: a static segment).
pub fn segment_rule(field: &str, raw: &str) -> Result<Option<cairn_runtime::rules::Rule>> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    cairn_runtime::rules::Rule::compile(field, raw, crate::storage::SEGMENT_VARIABLES).map(Some)
}

/// The stored name of a wire group type.
pub fn group_type(field: &str, raw: i32) -> Result<&'static str> {
    match pb::GroupType::try_from(raw) {
        Ok(pb::GroupType::Household) => Ok("household"),
        Ok(pb::GroupType::Family) => Ok("family"),
        Ok(pb::GroupType::Company) => Ok("company"),
        _ => Err(Error::invalid(
            field,
            "required: one of the GroupType values",
        )),
    }
}

/// The stored name of a wire group role.
pub fn group_role(field: &str, raw: i32) -> Result<&'static str> {
    match pb::GroupRole::try_from(raw) {
        Ok(pb::GroupRole::Owner) => Ok("owner"),
        Ok(pb::GroupRole::Payer) => Ok("payer"),
        Ok(pb::GroupRole::Member) => Ok("member"),
        _ => Err(Error::invalid(
            field,
            "required: one of the GroupRole values",
        )),
    }
}

/// The wire form of a group.
pub fn group_to_proto(group: &crate::storage::GroupRecord) -> pb::Group {
    let group_type = match group.group_type.as_str() {
        "household" => pb::GroupType::Household,
        "family" => pb::GroupType::Family,
        "company" => pb::GroupType::Company,
        _ => pb::GroupType::Unspecified,
    };
    pb::Group {
        group_id: group.id.to_string(),
        r#type: group_type as i32,
        display_name: group.display_name.clone(),
        members: group
            .members
            .iter()
            .map(|(profile_id, role, since)| pb::GroupMember {
                profile_id: profile_id.clone(),
                role: match role.as_str() {
                    "owner" => pb::GroupRole::Owner,
                    "payer" => pb::GroupRole::Payer,
                    _ => pb::GroupRole::Member,
                } as i32,
                join_time: Some(timestamp_to_proto(*since)),
            })
            .collect(),
        create_time: Some(timestamp_to_proto(group.created_at)),
    }
}

/// The wire form of a referral.
pub fn referral_to_proto(referral: &crate::storage::ReferralRecord) -> pb::Referral {
    let by_id = |id: &str| {
        Some(common::CustomerRef {
            customer: Some(common::customer_ref::Customer::ProfileId(id.to_string())),
        })
    };
    pb::Referral {
        referral_id: referral.id.to_string(),
        referrer: by_id(&referral.referrer_id),
        referred: by_id(&referral.referred_id),
        referral_time: Some(timestamp_to_proto(referral.referred_at)),
        outcome: referral.outcome.clone(),
        referrer_profile_id: referral.referrer_id.clone(),
        referred_profile_id: referral.referred_id.clone(),
    }
}

/// A customer reference of a batch, checked and normalised; violations are
/// named within the reference ("identifier.value"), empty for the
/// reference as a whole, so that the batch answers each on its own.
pub fn wanted(customer: common::CustomerRef, phone: &PhoneRules) -> Result<crate::storage::Wanted> {
    use common::customer_ref::Customer;
    match customer.customer {
        Some(Customer::ProfileId(raw)) => uuid::Uuid::parse_str(&raw)
            .map(crate::storage::Wanted::ProfileId)
            .map_err(|_| Error::invalid("profile_id", "must be a UUID")),
        Some(Customer::Identifier(wire)) => {
            identifier("identifier", Some(wire), phone).map(crate::storage::Wanted::Identifier)
        }
        None => Err(Error::invalid(
            "",
            "required: a profile_id or an identifier",
        )),
    }
}

/// The wire answer about the customer at `index` of a batch resolve.
pub fn resolved_to_proto(
    index: usize,
    outcome: Result<crate::storage::Resolution>,
) -> pb::ResolvedCustomer {
    let index = i32::try_from(index).unwrap_or(i32::MAX);
    match outcome {
        Ok(resolution) => pb::ResolvedCustomer {
            index,
            profile_id: resolution.profile_id.to_string(),
            created: resolution.created,
            ..Default::default()
        },
        Err(error) => {
            let field_violations = match &error {
                Error::InvalidArgument(violations) => violations
                    .iter()
                    .map(|violation| pb::ReferenceViolation {
                        field: violation.field.clone(),
                        description: violation.description.clone(),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let status = tonic::Status::from(error);
            pb::ResolvedCustomer {
                index,
                error_code: status.code() as i32,
                error_message: status.message().to_string(),
                field_violations,
                ..Default::default()
            }
        }
    }
}

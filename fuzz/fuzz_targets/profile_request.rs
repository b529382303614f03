//! Profile's request readers: the first byte picks a message (identifier,
//! attributes, consent, preferences, attribute definition, segment rule),
//! the rest is decoded as it and read as the service reads it.
#![no_main]

use cairn_contract::profile::v1 as pb;
use cairn_profile::grpc::convert;
use cairn_runtime::Violations;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let now = chrono::Utc::now();
    match selector % 6 {
        0 => {
            if let Ok(request) = pb::IdentifyProfileRequest::decode(rest) {
                for (index, identifier) in request.identifiers.into_iter().enumerate() {
                    let field = format!("identifiers[{index}]");
                    let _ = convert::identifier(
                        &field,
                        Some(identifier),
                        &cairn_profile::domain::PhoneRules::in_region("SE"),
                    );
                }
            }
        }
        1 => {
            if let Ok(request) = pb::CreateProfileRequest::decode(rest) {
                let mut violations = Violations::new();
                let _ = convert::attributes("attributes", request.attributes, &mut violations);
                let _ = violations.finish();
                let _ = convert::request_id(request.request_id);
            }
        }
        2 => {
            if let Ok(request) = pb::RecordConsentRequest::decode(rest) {
                let _ = convert::consent("consent", request.consent, now);
            }
        }
        3 => {
            if let Ok(request) = pb::UpdatePreferencesRequest::decode(rest) {
                let _ = convert::preferences("preferences", request.preferences);
            }
        }
        4 => {
            if let Ok(request) = pb::CreateAttributeDefinitionRequest::decode(rest) {
                let _ = convert::attribute_definition("definition", request.definition);
            }
        }
        _ => {
            if let Ok(request) = pb::CreateSegmentRequest::decode(rest) {
                if let Some(segment) = request.segment {
                    let _ = convert::segment_id("segment.segment_id", &segment.segment_id);
                    let _ = convert::segment_rule("segment.rule", &segment.rule);
                }
            }
        }
    }
});

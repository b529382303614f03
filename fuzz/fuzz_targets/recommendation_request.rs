//! Recommendation's request readers: the first byte picks a message (a new
//! action, a contact-policy update, a decision's context, a scoring policy),
//! the rest is decoded as it and read as the service reads it.
#![no_main]

use cairn_contract::recommendation::v1 as pb;
use cairn_recommendation::domain::contact::ContactPolicy;
use cairn_recommendation::grpc::convert;
use cairn_runtime::Violations;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let now = chrono::Utc::now();
    match selector % 4 {
        0 => {
            if let Ok(request) = pb::CreateActionRequest::decode(rest) {
                let _ = convert::new_action(request.action, now);
                let _ = convert::request_id("request_id", &request.request_id);
            }
        }
        1 => {
            if let Ok(request) = pb::UpdateContactPolicyRequest::decode(rest) {
                let paths = request
                    .update_mask
                    .map(|mask| mask.paths)
                    .unwrap_or_default();
                let mut policy = ContactPolicy::initial(now);
                if let Some(wire) = request.contact_policy {
                    let _ = convert::apply_contact_policy(wire, &paths, &mut policy);
                }
            }
        }
        2 => {
            if let Ok(request) = pb::DecideRequest::decode(rest) {
                let mut violations = Violations::new();
                let _ = convert::context(request.context, &mut violations);
                let _ = violations.finish();
            }
        }
        _ => {
            if let Ok(request) = pb::CreatePolicyRequest::decode(rest) {
                if let Some(policy) = request.policy {
                    let _ = convert::scorer("policy.scorer", policy.scorer);
                }
            }
        }
    }
});

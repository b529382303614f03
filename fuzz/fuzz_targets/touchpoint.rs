//! Journey's ingestion: any bytes as a batch of touchpoints on the wire
//! (the shape of RecordTouchpoints and of a stream message), decoded and
//! each touchpoint checked as the service checks it. Nothing may panic;
//! a touchpoint either passes with a customer reference or is refused.
#![no_main]

use cairn_contract::journey::v1 as pb;
use cairn_journey::grpc::convert::incoming_touchpoint;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = pb::RecordTouchpointsRequest::decode(data) else {
        return;
    };
    let now = chrono::Utc::now();
    for (index, wire) in batch.touchpoints.into_iter().enumerate() {
        let field = format!("touchpoints[{index}]");
        if let Ok(touchpoint) = incoming_touchpoint(&field, wire, now) {
            assert!(
                !touchpoint.id.is_empty(),
                "an accepted touchpoint has its id"
            );
        }
    }
});

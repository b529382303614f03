//! Journeys as code: any text read as a journey definition file and
//! compiled (stages, rules, durations), as `cairn journeys apply` and the
//! service do. It is accepted or refused with a message, never a panic.
#![no_main]

use cairn_journey::domain::definition::DefinitionDocument;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(document) = DefinitionDocument::from_toml(text) {
        let _ = document.compile(1, false, chrono::Utc::now());
    }
});

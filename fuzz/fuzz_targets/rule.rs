//! The rule compiler (segments, stage conditions, eligibility, survey
//! triggers): any text is compiled with the variables rules may name, and
//! either compiles or is refused with a message; it never panics or hangs.
#![no_main]

use cairn_runtime::rules::Rule;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    // The widest set of names any rule may use (recommendation's eligibility).
    let _ = Rule::compile(
        "rule",
        source,
        cairn_recommendation::domain::action::RULE_VARIABLES,
    );
    let _ = Rule::compile(
        "rule",
        source,
        cairn_journey::domain::definition::TOUCHPOINT_VARIABLES,
    );
});

//! The identifier normalisers: the first byte picks the kind (email, E.164
//! phone number with or without a region, device, cookie, social handle,
//! CRM id, billing account, custom), the rest is the raw value. A value
//! that normalises must normalise to itself again (the normal form is
//! stable), or two spellings of one identifier could become two profiles.
#![no_main]

use cairn_profile::domain::{Identifier, IdentifierKind, PhoneRules};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(raw) = std::str::from_utf8(rest) else {
        return;
    };
    let kind = match selector % 8 {
        0 => IdentifierKind::Email,
        1 => IdentifierKind::PhoneNumber,
        2 => IdentifierKind::DeviceId,
        3 => IdentifierKind::CookieId,
        4 => IdentifierKind::SocialHandle,
        5 => IdentifierKind::CrmId,
        6 => IdentifierKind::BillingAccountId,
        _ => IdentifierKind::Custom("loyalty_card".to_owned()),
    };
    let region = PhoneRules {
        default_region: (selector & 0x80 == 0).then(|| "SE".to_owned()),
        allow_letters: selector & 0x40 != 0,
    };
    if let Ok(identifier) = Identifier::parse("identifier", kind.clone(), raw, &region) {
        let again = Identifier::parse("identifier", kind, identifier.value(), &region)
            .expect("a normalised identifier parses again");
        assert_eq!(again, identifier, "normalising is stable");
    }
});

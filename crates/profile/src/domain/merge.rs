//! When evidence is strong enough to merge two profiles automatically.
//!
//! The stated rule:
//! - Each identifier kind has a priority (a CRM id outranks a cookie).
//! - An identify call links the identifiers it carries. A profile is merged
//!   into the one holding the call's strongest identifier only when the
//!   call's link to it is at least as strong as the strongest identifier the
//!   profile holds: a login (cookie + email) pulls an anonymous cookie
//!   profile into the email's profile, but a shared laptop's cookie never
//!   pulls another customer's CRM-identified profile along.
//! - Identifiers marked shared link nothing.
//! - A merge that would leave the survivor with more than `max_per_kind`
//!   identifiers of one kind (a kiosk device seen by hundreds) is refused.
//!
//! Explicit merges by an operator skip these safeguards: the operator is the evidence.

use crate::domain::IdentifierKind;

/// The automatic-merge policy.
#[derive(Debug, Clone)]
pub struct MergeRule {
    /// Most identifiers of one kind a profile may hold after an automatic merge.
    pub max_per_kind: usize,
}

impl Default for MergeRule {
    fn default() -> Self {
        Self { max_per_kind: 50 }
    }
}

impl MergeRule {
    /// How strong an identifier of `kind` is as evidence of identity.
    pub fn priority(&self, kind: &IdentifierKind) -> u8 {
        match kind {
            IdentifierKind::CrmId => 100,
            IdentifierKind::BillingAccountId => 90,
            IdentifierKind::PhoneNumber => 70,
            IdentifierKind::Email => 60,
            IdentifierKind::SocialHandle => 40,
            IdentifierKind::Custom(_) => 30,
            IdentifierKind::DeviceId => 20,
            IdentifierKind::CookieId => 10,
        }
    }

    /// True when a link of strength `link` may merge away a profile whose
    /// strongest identifier has strength `strongest_held`.
    pub fn link_is_strong_enough(&self, link: u8, strongest_held: u8) -> bool {
        link >= strongest_held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_cannot_merge_away_a_crm_profile_but_a_login_merges_a_cookie() {
        let rule = MergeRule::default();
        let cookie = rule.priority(&IdentifierKind::CookieId);
        let crm = rule.priority(&IdentifierKind::CrmId);
        assert!(!rule.link_is_strong_enough(cookie, crm));
        assert!(rule.link_is_strong_enough(cookie, cookie));
        assert!(crm > rule.priority(&IdentifierKind::Email));
    }
}

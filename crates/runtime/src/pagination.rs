//! Page sizes and page tokens, the same for every List method.
//!
//! A token is the position after which the next page starts, signed: the
//! base64 of the versioned position, a dot, and the base64 of an HMAC-SHA-256
//! over the listing and the position, keyed with the page-token key
//! ([`PageTokens::from_settings`]). A listing is a List method together with
//! the request's filters ([`listing`]), so a token resumes only the listing
//! it was issued for. Callers cannot read meaning into it or forge one: a
//! token changed by one bit, made up, issued by another method, or issued
//! for other filters (another customer, survey, time range) does not verify
//! and is refused with INVALID_ARGUMENT before any position reaches a query. Every replica holds the same key, so a token
//! from one replica works on any other.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::config::Settings;
use crate::error::{Error, Result};

/// Page size used when the caller sends 0.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
/// Largest page size a caller may ask for.
pub const MAX_PAGE_SIZE: u64 = 1000;
/// Shortest page-token key accepted (the same bound as the HS256 key).
pub const MIN_KEY_BYTES: usize = 32;

const TOKEN_VERSION: &str = "v1:";

/// What the derived key is derived with, so that the token key is never the
/// HS256 key itself.
const DERIVATION_LABEL: &[u8] = b"cairn page tokens v1";

/// The page size of a request: 0 means the default; 1 to 1000 are taken as
/// they are; anything else is INVALID_ARGUMENT naming `page_size`.
pub fn page_size(requested: i32) -> Result<u64> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        1.. if requested as u64 <= MAX_PAGE_SIZE => Ok(requested as u64),
        _ => Err(Error::invalid(
            "page_size",
            format!(
                "must be between 1 and {MAX_PAGE_SIZE}, or 0 for the default of {DEFAULT_PAGE_SIZE}; got {requested}"
            ),
        )),
    }
}

/// A List request whose page tokens are bound to its filters.
pub trait PageFilters {
    /// The request without its page token and page size, as bytes: what
    /// must not change between the pages of one listing.
    fn filters(&self) -> Vec<u8>;
}

/// Implements [`PageFilters`] for List requests with `page_token` and
/// `page_size` fields (the contract's convention for every List method).
macro_rules! page_filters {
    ($($request:ty),* $(,)?) => {
        $(impl PageFilters for $request {
            fn filters(&self) -> Vec<u8> {
                let mut filters = self.clone();
                filters.page_token.clear();
                filters.page_size = 0;
                prost::Message::encode_to_vec(&filters)
            }
        })*
    };
}

page_filters!(
    cairn_contract::profile::v1::ListProfilesRequest,
    cairn_contract::profile::v1::ListSegmentsRequest,
    cairn_contract::profile::v1::ListSegmentMembersRequest,
    cairn_contract::profile::v1::ListGroupsRequest,
    cairn_contract::journey::v1::ListTimelineRequest,
    cairn_contract::journey::v1::ListJourneyDefinitionsRequest,
    cairn_contract::journey::v1::ListAbandonmentsRequest,
    cairn_contract::recommendation::v1::ListActionsRequest,
    cairn_contract::recommendation::v1::ListDecisionsRequest,
    cairn_contract::recommendation::v1::ListPoliciesRequest,
    cairn_contract::feedback::v1::ListSurveysRequest,
    cairn_contract::feedback::v1::ListSurveyResponsesRequest,
    cairn_contract::feedback::v1::ListCommentsRequest,
    cairn_contract::feedback::v1::ListTicketsRequest,
    cairn_contract::feedback::v1::ListFeatureRequestsRequest,
    cairn_contract::feedback::v1::ListFollowUpTasksRequest,
);

/// The listing a page token of `method` (such as `profile.list_profiles`)
/// is bound to: the method and a digest of the request's filters. Compute
/// it before the request's fields are moved, and use it for both
/// [`PageTokens::decode`] and [`PageTokens::next`].
pub fn listing(method: &str, request: &impl PageFilters) -> String {
    use sha2::Digest;
    let digest = Sha256::digest(request.filters());
    format!("{method}?{}", URL_SAFE_NO_PAD.encode(digest))
}

/// Signs and verifies the page tokens of every listing of a service.
#[derive(Clone)]
pub struct PageTokens {
    key: SecretString,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens { key: <secret> }")
    }
}

impl PageTokens {
    /// Tokens signed with `key` (tests; services use [`Self::from_settings`]).
    pub fn new(key: SecretString) -> Self {
        Self { key }
    }

    /// The key of `CAIRN_PAGE_TOKEN_KEY`; unset, one derived from the HS256
    /// token key (every replica has that one already); with neither and
    /// authentication off (a local trial), a fixed trial key. With
    /// authentication on and neither key, the start fails: a key of this
    /// process alone would break pagination across replicas.
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        if let Some(key) = &settings.page_token_key {
            if key.expose_secret().len() < MIN_KEY_BYTES {
                return Err(Error::FailedPrecondition(format!(
                    "CAIRN_PAGE_TOKEN_KEY must be at least {MIN_KEY_BYTES} bytes"
                )));
            }
            return Ok(Self::new(key.clone()));
        }
        if let Some(hs256) = &settings.auth_hs256_key {
            let derived = sign(hs256.expose_secret().as_bytes(), &[DERIVATION_LABEL]);
            return Ok(Self::new(SecretString::from(
                URL_SAFE_NO_PAD.encode(derived),
            )));
        }
        if settings.auth_disabled {
            tracing::warn!(
                "no CAIRN_PAGE_TOKEN_KEY or CAIRN_AUTH_HS256_KEY: page tokens are signed with a fixed local-trial key"
            );
            return Ok(Self::new(SecretString::from(
                "cairn-local-trial-page-token-key-not-secret",
            )));
        }
        Err(Error::FailedPrecondition(
            "set CAIRN_PAGE_TOKEN_KEY (at least 32 bytes, the same on every replica): page tokens are signed with it, and there is no CAIRN_AUTH_HS256_KEY to derive it from".into(),
        ))
    }

    /// The token that resumes `listing` (see [`listing`]) after `position`.
    pub fn encode(&self, listing: &str, position: &str) -> String {
        let body = format!("{TOKEN_VERSION}{position}");
        let tag = sign(
            self.key.expose_secret().as_bytes(),
            &[listing.as_bytes(), b"\n", body.as_bytes()],
        );
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(body),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The `next_page_token` of a page of `listing`: the token of `next`, or
    /// empty on the last page.
    pub fn next(&self, listing: &str, next: Option<String>) -> String {
        next.map(|position| self.encode(listing, &position))
            .unwrap_or_default()
    }

    /// The position in a caller's `page_token` of `listing`; `None` for the
    /// first page (an empty token). A token this service did not issue for
    /// this listing is INVALID_ARGUMENT naming `page_token`.
    pub fn decode(&self, listing: &str, token: &str) -> Result<Option<String>> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || {
            Error::invalid(
                "page_token",
                "not a token of this listing: pass the next_page_token of the previous page, with the same filters as that page's request (only page_size may change), or nothing for the first page",
            )
        };
        let (body, tag) = token.split_once('.').ok_or_else(invalid)?;
        let body = URL_SAFE_NO_PAD.decode(body).map_err(|_| invalid())?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
        let mut mac = mac(self.key.expose_secret().as_bytes());
        mac.update(listing.as_bytes());
        mac.update(b"\n");
        mac.update(&body);
        // Constant-time comparison.
        mac.verify_slice(&tag).map_err(|_| invalid())?;
        let text = String::from_utf8(body).map_err(|_| invalid())?;
        text.strip_prefix(TOKEN_VERSION)
            .map(|p| Some(p.to_string()))
            .ok_or_else(invalid)
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length; the error case cannot happen.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

fn sign(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = mac(key);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(key: &str) -> PageTokens {
        PageTokens::new(SecretString::from(key.to_string()))
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0).unwrap(), 100);
        assert_eq!(page_size(1000).unwrap(), 1000);
        assert!(page_size(1001).is_err());
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn tokens_round_trip() {
        let tokens = tokens("a key of at least thirty-two bytes, for tests");
        let token = tokens.encode("test.List", "2026-11-22T10:00:00Z|abc");
        assert_eq!(
            tokens.decode("test.List", &token).unwrap().as_deref(),
            Some("2026-11-22T10:00:00Z|abc")
        );
        assert_eq!(tokens.decode("test.List", "").unwrap(), None);
        assert!(tokens.decode("test.List", "!!").is_err());
    }

    #[test]
    fn tampered_forged_and_foreign_tokens_are_refused() {
        let ours = tokens("a key of at least thirty-two bytes, for tests");
        let token = ours.encode("test.List", "p-1");
        // Every single-character change.
        for index in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            if tampered != token {
                assert!(ours.decode("test.List", &tampered).is_err(), "{tampered}");
            }
        }
        // An unsigned token of the old form, and one signed with another key.
        let unsigned = URL_SAFE_NO_PAD.encode("v1:p-1");
        assert!(ours.decode("test.List", &unsigned).is_err());
        let theirs = tokens("another key of at least thirty-two bytes!!");
        assert!(
            ours.decode("test.List", &theirs.encode("test.List", "p-1"))
                .is_err()
        );
        // Another listing's token.
        assert!(ours.decode("test.Other", &token).is_err());
        // The same method with other filters.
        let customer = |id: &str| cairn_contract::journey::v1::ListTimelineRequest {
            customer: Some(cairn_contract::common::v1::CustomerRef {
                customer: Some(
                    cairn_contract::common::v1::customer_ref::Customer::ProfileId(id.into()),
                ),
            }),
            ..Default::default()
        };
        let mine = listing("journey.list_timeline", &customer("p-1"));
        let bound = ours.encode(&mine, "p-1");
        let mut next_page = customer("p-1");
        next_page.page_token = bound.clone();
        next_page.page_size = 7;
        assert_eq!(mine, listing("journey.list_timeline", &next_page));
        assert!(ours.decode(&mine, &bound).is_ok());
        let theirs = listing("journey.list_timeline", &customer("p-2"));
        assert!(ours.decode(&theirs, &bound).is_err());
        // The same key on another replica.
        let replica = tokens("a key of at least thirty-two bytes, for tests");
        assert_eq!(
            replica.decode("test.List", &token).unwrap().as_deref(),
            Some("p-1")
        );
    }
}

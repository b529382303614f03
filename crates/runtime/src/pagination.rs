//! Page sizes and page tokens, the same for every List method.
//!
//! Tokens are opaque to callers (base64 of a versioned position) so that the
//! position's form can change without breaking clients.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};

/// Page size used when the caller sends 0.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
/// Largest page size a caller may ask for.
pub const MAX_PAGE_SIZE: u64 = 1000;

const TOKEN_VERSION: &str = "v1:";

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

/// The token that resumes a listing after `position`.
pub fn encode_token(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{TOKEN_VERSION}{position}"))
}

/// The position in a caller's `page_token`; `None` for the first page.
pub fn decode_token(token: &str) -> Result<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        Error::invalid(
            "page_token",
            "not a token this server issued; pass the next_page_token of the previous page, or nothing",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    text.strip_prefix(TOKEN_VERSION)
        .map(|p| Some(p.to_string()))
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0).unwrap(), 100);
        assert_eq!(page_size(1000).unwrap(), 1000);
        assert!(page_size(1001).is_err());
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn tokens_round_trip() {
        let token = encode_token("2026-11-22T10:00:00Z|abc");
        assert_eq!(
            decode_token(&token).unwrap().as_deref(),
            Some("2026-11-22T10:00:00Z|abc")
        );
        assert_eq!(decode_token("").unwrap(), None);
        assert!(decode_token("!!").is_err());
    }
}

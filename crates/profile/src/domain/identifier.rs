//! Identifiers, parsed and normalised once at the edge so that the same
//! person's email or phone number always compares equal, however a channel
//! wrote it.

use std::fmt;
use std::str::FromStr;

use cairn_runtime::{Error, Result};

/// The kinds of identifier a profile can hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdentifierKind {
    /// An email address.
    Email,
    /// A phone number in E.164.
    PhoneNumber,
    /// A device id.
    DeviceId,
    /// A web cookie id.
    CookieId,
    /// A social network handle, `network:handle`.
    SocialHandle,
    /// The customer's CRM id.
    CrmId,
    /// A billing account id.
    BillingAccountId,
    /// An operator-defined kind.
    Custom(String),
}

impl IdentifierKind {
    /// The stored name of the kind (`custom:<name>` for operator kinds).
    pub fn storage_name(&self) -> String {
        match self {
            Self::Email => "email".into(),
            Self::PhoneNumber => "phone_number".into(),
            Self::DeviceId => "device_id".into(),
            Self::CookieId => "cookie_id".into(),
            Self::SocialHandle => "social_handle".into(),
            Self::CrmId => "crm_id".into(),
            Self::BillingAccountId => "billing_account_id".into(),
            Self::Custom(name) => format!("custom:{name}"),
        }
    }

    /// Reads a stored name back.
    pub fn from_storage_name(name: &str) -> Option<Self> {
        Some(match name {
            "email" => Self::Email,
            "phone_number" => Self::PhoneNumber,
            "device_id" => Self::DeviceId,
            "cookie_id" => Self::CookieId,
            "social_handle" => Self::SocialHandle,
            "crm_id" => Self::CrmId,
            "billing_account_id" => Self::BillingAccountId,
            other => Self::Custom(other.strip_prefix("custom:")?.to_string()),
        })
    }
}

/// Longest identifier value accepted.
pub const MAX_VALUE_BYTES: usize = 512;

/// How phone numbers are read: the settings `CAIRN_DEFAULT_PHONE_REGION`
/// and `CAIRN_PHONE_ALLOW_LETTERS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhoneRules {
    /// Region (ISO 3166 alpha-2) of numbers written without a country code;
    /// `None` refuses such numbers.
    pub default_region: Option<String>,
    /// Accept vanity letters (`+1 800 FLOWERS`), read as keypad digits.
    /// Off by default: a letter in a phone number is far more often a typing
    /// mistake or junk than a vanity number, and junk must not become
    /// someone's number.
    pub allow_letters: bool,
}

impl PhoneRules {
    /// Numbers without a country code are read in `region`; no letters.
    pub fn in_region(region: &str) -> Self {
        Self {
            default_region: Some(region.to_string()),
            allow_letters: false,
        }
    }
}

/// A normalised identifier: equal values mean the same identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identifier {
    kind: IdentifierKind,
    value: String,
}

impl Identifier {
    /// Parses `raw` as an identifier of `kind`, normalising it. `field` names
    /// the request field in errors; `phone` says how phone numbers are read.
    pub fn parse(field: &str, kind: IdentifierKind, raw: &str, phone: &PhoneRules) -> Result<Self> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(Error::invalid(field, "required"));
        }
        if raw.len() > MAX_VALUE_BYTES {
            return Err(Error::invalid(
                field,
                format!("at most {MAX_VALUE_BYTES} bytes"),
            ));
        }
        let value = match &kind {
            IdentifierKind::Email => normalise_email(field, raw)?,
            IdentifierKind::PhoneNumber => normalise_phone(field, raw, phone)?,
            IdentifierKind::SocialHandle => {
                let (network, handle) = raw
                    .split_once(':')
                    .filter(|(network, handle)| !network.is_empty() && !handle.is_empty())
                    .ok_or_else(|| Error::invalid(field, "a social handle is written \"network:handle\", for example \"x:@anna\""))?;
                format!("{}:{}", network.to_lowercase(), handle.to_lowercase())
            }
            IdentifierKind::DeviceId
            | IdentifierKind::CookieId
            | IdentifierKind::CrmId
            | IdentifierKind::BillingAccountId
            | IdentifierKind::Custom(_) => raw.to_string(),
        };
        Ok(Self { kind, value })
    }

    /// An identifier read back from storage, already normalised.
    pub fn from_stored(kind: IdentifierKind, value: String) -> Self {
        Self { kind, value }
    }

    /// Its kind.
    pub fn kind(&self) -> &IdentifierKind {
        &self.kind
    }

    /// Its normalised value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// True for identifiers that identify a person by themselves (as opposed
    /// to a cookie or a device): attaching one makes an anonymous profile known.
    pub fn is_personal(&self) -> bool {
        !matches!(
            self.kind,
            IdentifierKind::CookieId | IdentifierKind::DeviceId
        )
    }
}

impl fmt::Display for Identifier {
    /// Shows the kind only: identifier values are personal data and must not reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} identifier", self.kind.storage_name())
    }
}

fn normalise_email(field: &str, raw: &str) -> Result<String> {
    let address = email_address::EmailAddress::from_str(raw)
        .map_err(|_| Error::invalid(field, "not a valid email address"))?;
    Ok(address.as_str().to_lowercase())
}

/// Refuses what is not written as a phone number: anything but digits,
/// spaces and the separators `-` `.` `(` `)` `/`, with one `+` only in
/// front (letters only when `allow_letters`). The phone number library is
/// lenient by design (it reads "++46…" and digits inside words), which
/// would turn junk into somebody's number.
fn check_phone_characters(field: &str, raw: &str, allow_letters: bool) -> Result<()> {
    let body = raw.strip_prefix('+').unwrap_or(raw);
    if body.contains('+') {
        return Err(Error::invalid(
            field,
            "not a phone number: one '+' at most, before the country code",
        ));
    }
    let allowed = |c: char| {
        c.is_ascii_digit()
            || matches!(c, ' ' | '-' | '.' | '(' | ')' | '/')
            || (allow_letters && c.is_ascii_alphabetic())
    };
    if !body.chars().all(allowed) {
        let letters = if allow_letters {
            ", letters"
        } else {
            " (letters only where CAIRN_PHONE_ALLOW_LETTERS is on)"
        };
        return Err(Error::invalid(
            field,
            format!("not a phone number: digits, spaces, - . ( ) / and a leading + only{letters}"),
        ));
    }
    if !body.chars().any(|c| c.is_ascii_digit()) {
        return Err(Error::invalid(field, "not a phone number: no digits"));
    }
    Ok(())
}

/// The digit of a letter on a telephone keypad (ITU E.161).
fn keypad_digit(letter: char) -> char {
    match letter.to_ascii_uppercase() {
        'A'..='C' => '2',
        'D'..='F' => '3',
        'G'..='I' => '4',
        'J'..='L' => '5',
        'M'..='O' => '6',
        'P'..='S' => '7',
        'T'..='V' => '8',
        'W'..='Z' => '9',
        other => other,
    }
}

fn normalise_phone(field: &str, raw: &str, phone: &PhoneRules) -> Result<String> {
    check_phone_characters(field, raw, phone.allow_letters)?;
    let keyed: String;
    let raw = if phone.allow_letters {
        keyed = raw.chars().map(keypad_digit).collect();
        keyed.as_str()
    } else {
        raw
    };
    let region = match phone.default_region.as_deref() {
        Some(code) => Some(
            code.to_uppercase()
                .parse::<phonenumber::country::Id>()
                .map_err(|_| {
                    Error::internal(format!(
                        "CAIRN_DEFAULT_PHONE_REGION {code} is not a region code"
                    ))
                })?,
        ),
        None => None,
    };
    if region.is_none() && !raw.starts_with('+') && !raw.starts_with("00") {
        return Err(Error::invalid(
            field,
            "write the phone number with its country code (for example +46701234567); no default region is configured",
        ));
    }
    let number =
        phonenumber::parse(region, raw).map_err(|_| Error::invalid(field, "not a phone number"))?;
    if !phonenumber::is_valid(&number) {
        return Err(Error::invalid(
            field,
            "not a valid phone number for its country",
        ));
    }
    Ok(number.format().mode(phonenumber::Mode::E164).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> PhoneRules {
        PhoneRules::default()
    }

    #[test]
    fn letters_and_a_doubled_plus_are_not_phone_numbers() {
        for junk in [
            "+46 70 ABC 1234",
            "++46701234567",
            "+46+701234567",
            "+46 70 123 45 67 x",
            "+1 800 FLOWERS",
        ] {
            let refused = Identifier::parse("v", IdentifierKind::PhoneNumber, junk, &none());
            assert!(refused.is_err(), "{junk} was accepted: {refused:?}");
        }
        // Where the setting allows vanity numbers, letters are keypad digits.
        let vanity = PhoneRules {
            default_region: None,
            allow_letters: true,
        };
        let number =
            Identifier::parse("v", IdentifierKind::PhoneNumber, "+1 800 FLOWERS", &vanity).unwrap();
        assert_eq!(number.value(), "+18003569377");
        assert!(
            Identifier::parse("v", IdentifierKind::PhoneNumber, "++18003569377", &vanity).is_err()
        );
    }

    #[test]
    fn emails_are_lower_cased() {
        let id =
            Identifier::parse("v", IdentifierKind::Email, " Anna@Example.COM ", &none()).unwrap();
        assert_eq!(id.value(), "anna@example.com");
        assert!(Identifier::parse("v", IdentifierKind::Email, "not-an-email", &none()).is_err());
    }

    #[test]
    fn phone_numbers_become_e164() {
        let id = Identifier::parse(
            "v",
            IdentifierKind::PhoneNumber,
            "+46 70 123 45 67",
            &none(),
        )
        .unwrap();
        assert_eq!(id.value(), "+46701234567");
        let national = Identifier::parse(
            "v",
            IdentifierKind::PhoneNumber,
            "070-123 45 67",
            &PhoneRules::in_region("se"),
        )
        .unwrap();
        assert_eq!(national.value(), "+46701234567");
        assert!(
            Identifier::parse("v", IdentifierKind::PhoneNumber, "070-123 45 67", &none()).is_err()
        );
        assert!(Identifier::parse("v", IdentifierKind::PhoneNumber, "+46 12", &none()).is_err());
    }

    #[test]
    fn display_hides_the_value() {
        let id =
            Identifier::parse("v", IdentifierKind::Email, "anna@example.com", &none()).unwrap();
        assert!(!id.to_string().contains("anna"));
    }

    #[test]
    fn kinds_round_trip_through_storage() {
        for kind in [
            IdentifierKind::Email,
            IdentifierKind::Custom("loyalty_card".into()),
        ] {
            assert_eq!(
                IdentifierKind::from_storage_name(&kind.storage_name()),
                Some(kind)
            );
        }
    }
}

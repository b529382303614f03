//! Consent per purpose and channel (TM Forum TMF644's party privacy
//! agreement), preferences, and the question every other service asks:
//! "may we contact this customer on channel C for purpose P now?"
//!
//! The stated rules:
//! - Marketing, profiling, analytics and custom purposes are opt-in: no
//!   answer (or an expired one) means no.
//! - The service purpose (notices the customer needs: an outage, a bill) is
//!   allowed unless the customer said no.
//! - When two profiles merge, the most restrictive answer per purpose and
//!   channel wins: a "no" beats a "yes"; of two "yes", the earlier expiry.
//! - Quiet hours apply in the customer's own time zone, to every purpose.

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Why consent is asked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Purpose(String);

impl Purpose {
    /// The service purpose: notices a customer needs.
    pub const SERVICE: &'static str = "service";

    /// A purpose name: `marketing`, `service`, `analytics`, `profiling`, or
    /// an operator's own (lower-case letters, digits, '_').
    pub fn new(name: &str) -> Option<Self> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        valid.then(|| Self(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn is_opt_in(&self) -> bool {
        self.0 != Self::SERVICE
    }
}

/// One answer of the customer.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentAnswer {
    /// For what.
    pub purpose: Purpose,
    /// On which channel (the contract's enum number).
    pub channel: i32,
    /// Yes or no.
    pub granted: bool,
    /// Where it was given ("web_form", "store", "call_recording", ...).
    pub source: String,
    /// When it was given.
    pub recorded_at: DateTime<Utc>,
    /// When a "yes" lapses, if it does.
    pub expires_at: Option<DateTime<Utc>>,
}

impl ConsentAnswer {
    fn in_force(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|expiry| expiry > now)
    }

    /// The more restrictive of two answers for the same purpose and channel.
    pub fn most_restrictive(a: ConsentAnswer, b: ConsentAnswer) -> ConsentAnswer {
        match (a.granted, b.granted) {
            (false, true) => a,
            (true, false) => b,
            (false, false) => {
                if a.recorded_at >= b.recorded_at {
                    a
                } else {
                    b
                }
            }
            (true, true) => match (a.expires_at, b.expires_at) {
                (Some(x), Some(y)) => {
                    if x <= y {
                        a
                    } else {
                        b
                    }
                }
                (Some(_), None) => a,
                (None, Some(_)) => b,
                (None, None) => {
                    if a.recorded_at <= b.recorded_at {
                        a
                    } else {
                        b
                    }
                }
            },
        }
    }
}

/// When and how the customer wants to be contacted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Preferences {
    /// BCP 47 language tag, for example "sv-SE".
    pub language: Option<String>,
    /// The channel they prefer.
    pub preferred_channel: Option<i32>,
    /// Their IANA time zone, for example "Europe/Stockholm".
    pub time_zone: Option<Tz>,
    /// Local times between which nobody contacts them (may wrap midnight).
    pub quiet_hours: Option<(NaiveTime, NaiveTime)>,
}

/// The answer to "may we contact them?".
#[derive(Debug, Clone, PartialEq)]
pub struct ContactDecision {
    /// Yes or no.
    pub allowed: bool,
    /// Why, in a word a program can branch on.
    pub reason: ContactReason,
    /// When quiet hours end, if they are why not.
    pub allowed_from: Option<DateTime<Utc>>,
}

/// Why contact is or is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactReason {
    /// A "yes" in force.
    Granted,
    /// Service notices need no opt-in.
    ServicePurpose,
    /// The customer said no.
    Denied,
    /// No answer, or an expired one, for an opt-in purpose.
    NoConsent,
    /// It is night (or whatever they chose) where they live.
    QuietHours,
}

/// Decides whether the customer may be contacted on `channel` for `purpose`
/// at `now`, from their `answers` (current ones, one per purpose and channel).
pub fn may_contact(
    answers: &[ConsentAnswer],
    preferences: &Preferences,
    purpose: &Purpose,
    channel: i32,
    now: DateTime<Utc>,
) -> ContactDecision {
    let answer = answers
        .iter()
        .filter(|a| a.purpose == *purpose && a.channel == channel && a.in_force(now))
        .max_by_key(|a| a.recorded_at);
    let reason = match answer {
        Some(answer) if !answer.granted => ContactReason::Denied,
        Some(_) => ContactReason::Granted,
        None if purpose.is_opt_in() => ContactReason::NoConsent,
        None => ContactReason::ServicePurpose,
    };
    if matches!(reason, ContactReason::Denied | ContactReason::NoConsent) {
        return ContactDecision {
            allowed: false,
            reason,
            allowed_from: None,
        };
    }
    if let Some(end) = quiet_until(preferences, now) {
        return ContactDecision {
            allowed: false,
            reason: ContactReason::QuietHours,
            allowed_from: Some(end),
        };
    }
    ContactDecision {
        allowed: true,
        reason,
        allowed_from: None,
    }
}

/// When the quiet hours that hold at `now` end, if they hold.
fn quiet_until(preferences: &Preferences, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let (start, end) = preferences.quiet_hours?;
    let zone = preferences.time_zone.unwrap_or(Tz::UTC);
    let local = now.with_timezone(&zone);
    let time = local.time();
    let quiet = if start <= end {
        time >= start && time < end
    } else {
        time >= start || time < end
    };
    if !quiet {
        return None;
    }
    let mut day = local.date_naive();
    if start > end && time >= start {
        day = day.succ_opt()?;
    }
    zone.from_local_datetime(&day.and_time(end))
        .earliest()
        .map(|end| end.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(
        purpose: &str,
        granted: bool,
        recorded: &str,
        expires: Option<&str>,
    ) -> ConsentAnswer {
        ConsentAnswer {
            purpose: Purpose::new(purpose).unwrap(),
            channel: 9,
            granted,
            source: "web_form".into(),
            recorded_at: recorded.parse().unwrap(),
            expires_at: expires.map(|e| e.parse().unwrap()),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn marketing_is_opt_in_and_service_is_not() {
        let preferences = Preferences::default();
        let marketing = Purpose::new("marketing").unwrap();
        let service = Purpose::new("service").unwrap();
        let now = at("2026-11-22T12:00:00Z");
        assert_eq!(
            may_contact(&[], &preferences, &marketing, 9, now).reason,
            ContactReason::NoConsent
        );
        assert!(may_contact(&[], &preferences, &service, 9, now).allowed);
        let yes = answer(
            "marketing",
            true,
            "2026-01-01T00:00:00Z",
            Some("2026-06-01T00:00:00Z"),
        );
        assert_eq!(
            may_contact(std::slice::from_ref(&yes), &preferences, &marketing, 9, now).reason,
            ContactReason::NoConsent,
            "expired"
        );
        let no = answer("service", false, "2026-01-01T00:00:00Z", None);
        assert_eq!(
            may_contact(&[no], &preferences, &service, 9, now).reason,
            ContactReason::Denied
        );
    }

    #[test]
    fn quiet_hours_hold_in_the_customers_time_zone() {
        let preferences = Preferences {
            time_zone: Some(chrono_tz::Europe::Stockholm),
            quiet_hours: Some((
                NaiveTime::from_hms_opt(21, 0, 0).unwrap(),
                NaiveTime::from_hms_opt(8, 0, 0).unwrap(),
            )),
            ..Default::default()
        };
        let service = Purpose::new("service").unwrap();
        // 21:30 UTC is 22:30 in Stockholm in November: quiet until 08:00 local (07:00 UTC).
        let decision = may_contact(&[], &preferences, &service, 9, at("2026-11-22T21:30:00Z"));
        assert_eq!(decision.reason, ContactReason::QuietHours);
        assert_eq!(decision.allowed_from, Some(at("2026-11-23T07:00:00Z")));
        assert!(may_contact(&[], &preferences, &service, 9, at("2026-11-22T12:00:00Z")).allowed);
    }

    #[test]
    fn a_no_beats_a_yes_and_the_earlier_expiry_wins() {
        let yes = answer("marketing", true, "2026-03-01T00:00:00Z", None);
        let no = answer("marketing", false, "2026-01-01T00:00:00Z", None);
        assert!(!ConsentAnswer::most_restrictive(yes.clone(), no.clone()).granted);
        let short = answer(
            "marketing",
            true,
            "2026-01-01T00:00:00Z",
            Some("2026-12-01T00:00:00Z"),
        );
        assert_eq!(ConsentAnswer::most_restrictive(yes, short.clone()), short);
    }
}

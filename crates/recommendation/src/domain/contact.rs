//! The operator's contact policy: how often, when and in which
//! circumstances customers may be contacted, for decisions and contact
//! reservations (survey invitations) alike, and the calendar periods in
//! which contacts are counted.

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::action::ActionKind;

/// Caps per customer; 0 means no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactCaps {
    /// Contacts per day.
    pub per_day: u32,
    /// Contacts per week (Monday to Sunday).
    pub per_week: u32,
}

/// The policy of one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelPolicy {
    /// The channel's enum number.
    pub channel: i32,
    /// Caps on the channel.
    pub caps: ContactCaps,
    /// True when quiet hours apply on the channel.
    pub quiet_hours_apply: bool,
}

/// A daily span of local time without contacts; `start == end` means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    /// Inclusive start.
    pub start: NaiveTime,
    /// Exclusive end; before the start, the span wraps midnight.
    pub end: NaiveTime,
}

impl QuietHours {
    /// When the quiet hours that hold at `now` in `zone` end; `None` when
    /// they do not hold.
    pub fn until(&self, zone: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.start == self.end {
            return None;
        }
        let local = now.with_timezone(&zone);
        let time = local.time();
        let quiet = if self.start < self.end {
            time >= self.start && time < self.end
        } else {
            time >= self.start || time < self.end
        };
        if !quiet {
            return None;
        }
        let mut day = local.date_naive();
        if self.start > self.end && time >= self.start {
            day = day.succ_opt()?;
        }
        zone.from_local_datetime(&day.and_time(self.end))
            .earliest()
            .map(|end| end.with_timezone(&Utc))
    }
}

/// Suppression while a customer has an open complaint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplaintSuppression {
    /// On or off.
    pub enabled: bool,
    /// Kinds suppressed (transactional actions never are).
    pub kinds: Vec<ActionKind>,
    /// How long suppression lasts after the complaint closed, in seconds.
    pub after_close_seconds: i64,
}

/// The contact policy; one per installation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactPolicy {
    /// Per-channel caps and quiet-hours switches.
    pub channels: Vec<ChannelPolicy>,
    /// Caps over all channels together.
    pub all_channels: ContactCaps,
    /// Quiet hours for customers without their own.
    pub quiet_hours: QuietHours,
    /// IANA zone for customers without one, and for volume limits.
    pub time_zone: String,
    /// Suppression after complaints.
    pub complaint_suppression: ComplaintSuppression,
    /// Cool-down after a decline for actions without their own, seconds.
    pub default_decline_cooldown_seconds: i64,
    /// When it last changed.
    pub update_time: DateTime<Utc>,
    /// Increased by every change; the etag.
    pub version: i64,
}

impl ContactPolicy {
    /// The initial policy, as the contract documents it.
    pub fn initial(now: DateTime<Utc>) -> Self {
        use cairn_contract::common::v1::Channel;
        let capped = |channel: Channel| ChannelPolicy {
            channel: channel as i32,
            caps: ContactCaps {
                per_day: 1,
                per_week: 3,
            },
            quiet_hours_apply: true,
        };
        Self {
            channels: vec![
                capped(Channel::Sms),
                capped(Channel::Email),
                capped(Channel::Push),
                capped(Channel::Messaging),
                capped(Channel::CallCentre),
            ],
            all_channels: ContactCaps {
                per_day: 2,
                per_week: 5,
            },
            quiet_hours: QuietHours {
                start: NaiveTime::from_hms_opt(21, 0, 0).unwrap_or_default(),
                end: NaiveTime::from_hms_opt(8, 0, 0).unwrap_or_default(),
            },
            time_zone: "UTC".into(),
            complaint_suppression: ComplaintSuppression {
                enabled: true,
                kinds: vec![ActionKind::SalesOffer],
                after_close_seconds: 0,
            },
            default_decline_cooldown_seconds: 7 * 24 * 3600,
            update_time: now,
            version: 1,
        }
    }

    /// The policy of `channel`; a channel not listed has no caps and no quiet hours.
    pub fn channel(&self, channel: i32) -> ChannelPolicy {
        self.channels
            .iter()
            .find(|policy| policy.channel == channel)
            .cloned()
            .unwrap_or(ChannelPolicy {
                channel,
                caps: ContactCaps::default(),
                quiet_hours_apply: false,
            })
    }

    /// The policy's zone (UTC if the stored name no longer parses).
    pub fn zone(&self) -> Tz {
        self.time_zone.parse().unwrap_or(Tz::UTC)
    }

    /// True when complaint suppression stops actions of `kind`.
    pub fn suppresses(&self, kind: ActionKind, transactional: bool) -> bool {
        !transactional
            && self.complaint_suppression.enabled
            && self.complaint_suppression.kinds.contains(&kind)
    }

    /// The etag clients send back to guard updates.
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }
}

/// The calendar periods a contact at one moment counts in, in one zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Periods {
    /// The local day, "2026-12-04".
    pub day: String,
    /// The ISO week, "2026-W49" (Monday to Sunday).
    pub week: String,
    /// When the next day starts.
    pub next_day: DateTime<Utc>,
    /// When the next week starts.
    pub next_week: DateTime<Utc>,
}

impl Periods {
    /// The periods of `now` in `zone`.
    pub fn at(zone: Tz, now: DateTime<Utc>) -> Self {
        let local = now.with_timezone(&zone);
        let date = local.date_naive();
        let week = date.iso_week();
        let start_of = |day: chrono::NaiveDate| {
            zone.from_local_datetime(&day.and_time(NaiveTime::MIN))
                .earliest()
                .map(|time| time.with_timezone(&Utc))
                .unwrap_or(now + Duration::days(1))
        };
        let tomorrow = date.succ_opt().unwrap_or(date);
        let days_to_monday = 7 - i64::from(date.weekday().num_days_from_monday());
        let next_monday = date + Duration::days(days_to_monday);
        Self {
            day: date.format("%Y-%m-%d").to_string(),
            week: format!("{}-W{:02}", week.year(), week.week()),
            next_day: start_of(tomorrow),
            next_week: start_of(next_monday),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn quiet_hours_wrap_midnight_in_the_customers_zone() {
        let quiet = QuietHours {
            start: NaiveTime::from_hms_opt(21, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(8, 0, 0).unwrap(),
        };
        let stockholm: Tz = "Europe/Stockholm".parse().unwrap();
        // 21:30 UTC is 22:30 in Stockholm in December: quiet until 08:00 local.
        assert_eq!(
            quiet.until(stockholm, at("2026-12-04T21:30:00Z")),
            Some(at("2026-12-05T07:00:00Z"))
        );
        assert_eq!(quiet.until(stockholm, at("2026-12-04T12:00:00Z")), None);
        let none = QuietHours {
            start: quiet.start,
            end: quiet.start,
        };
        assert_eq!(none.until(stockholm, at("2026-12-04T21:30:00Z")), None);
    }

    #[test]
    fn periods_are_local_days_and_iso_weeks() {
        let periods = Periods::at(Tz::UTC, at("2026-12-04T10:00:00Z"));
        assert_eq!(periods.day, "2026-12-04");
        assert_eq!(periods.week, "2026-W49");
        assert_eq!(periods.next_day, at("2026-12-05T00:00:00Z"));
        assert_eq!(periods.next_week, at("2026-12-07T00:00:00Z"));
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        assert_eq!(
            Periods::at(tokyo, at("2026-12-04T20:00:00Z")).day,
            "2026-12-05"
        );
    }

    #[test]
    fn the_initial_policy_caps_outbound_channels() {
        let policy = ContactPolicy::initial(Utc::now());
        let sms = policy.channel(cairn_contract::common::v1::Channel::Sms as i32);
        assert_eq!(sms.caps.per_day, 1);
        assert!(sms.quiet_hours_apply);
        let web = policy.channel(cairn_contract::common::v1::Channel::Web as i32);
        assert_eq!(web.caps, ContactCaps::default());
        assert!(policy.suppresses(ActionKind::SalesOffer, false));
        assert!(!policy.suppresses(ActionKind::SalesOffer, true));
        assert!(!policy.suppresses(ActionKind::RetentionOffer, false));
    }
}

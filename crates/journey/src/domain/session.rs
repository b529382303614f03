//! A customer's active cross-channel session: where they are in a journey,
//! their cart and context, and the channels they used, so that a journey
//! begun on the web continues in the app or in a store.

use std::collections::BTreeMap;

use cairn_runtime::common::TypedValue;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Most context entries in one session.
pub const MAX_CONTEXT_ENTRIES: usize = 64;
/// Most cart lines in one session.
pub const MAX_CART_ITEMS: usize = 100;
/// Longest step, journey id or product offering id.
pub const MAX_TEXT_BYTES: usize = 256;

/// One cart line (TMF663 Shopping Cart, summarised).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CartItem {
    /// The product offering (TMF620).
    pub product_offering_id: String,
    /// How many, at least 1.
    pub quantity: i32,
    /// Unit price, when known: currency, units, nanos.
    pub unit_price: Option<(String, i64, i32)>,
}

/// The active session of one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Its id.
    pub id: String,
    /// The customer's profile.
    pub profile_id: String,
    /// The journey the customer is on, if any.
    pub journey_id: String,
    /// The current step.
    pub current_step: String,
    /// The cart.
    pub cart: Vec<CartItem>,
    /// Free context.
    pub context: BTreeMap<String, TypedValue>,
    /// Channels used, in order of first use (contract enum numbers).
    pub channels: Vec<i32>,
    /// The channel used last.
    pub last_channel: i32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Raised by every change: the etag.
    pub revision: u64,
}

/// The parts of a session a caller may change.
#[derive(Debug, Clone, Default)]
pub struct SessionChange {
    /// New journey id.
    pub journey_id: Option<String>,
    /// New current step.
    pub current_step: Option<String>,
    /// New cart.
    pub cart: Option<Vec<CartItem>>,
    /// New context.
    pub context: Option<BTreeMap<String, TypedValue>>,
}

impl Session {
    /// A new session of `profile_id` begun on `channel`.
    pub fn start(profile_id: String, channel: i32, now: DateTime<Utc>) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            profile_id,
            journey_id: String::new(),
            current_step: String::new(),
            cart: Vec::new(),
            context: BTreeMap::new(),
            channels: vec![channel],
            last_channel: channel,
            started_at: now,
            updated_at: now,
            revision: 1,
        }
    }

    /// The session continued on `channel`.
    pub fn touched(mut self, channel: i32, now: DateTime<Utc>) -> Self {
        if !self.channels.contains(&channel) {
            self.channels.push(channel);
        }
        self.last_channel = channel;
        self.updated_at = now;
        self.revision += 1;
        self
    }

    /// The session with `change` applied on `channel`.
    pub fn changed(self, change: SessionChange, channel: i32, now: DateTime<Utc>) -> Self {
        let mut session = self.touched(channel, now);
        if let Some(journey_id) = change.journey_id {
            session.journey_id = journey_id;
        }
        if let Some(step) = change.current_step {
            session.current_step = step;
        }
        if let Some(cart) = change.cart {
            session.cart = cart;
        }
        if let Some(context) = change.context {
            session.context = context;
        }
        session
    }

    /// The etag callers send back: the session's id and its revision, so
    /// that an etag read from one session never matches another (two
    /// sessions both at their second revision once shared "r2").
    pub fn etag(&self) -> String {
        format!("{}/r{}", self.id, self.revision)
    }

    /// This session (the survivor's, or the first found) and `other` (a
    /// session kept under a profile merged into it) as one, by the rule the
    /// contract states: nothing either held is dropped.
    ///
    /// - cart lines are united, one line per product offering: this
    ///   session's lines in their order, then the other's lines for
    ///   offerings this one lacks; an offering in both keeps the larger
    ///   quantity, and the unit price of the session changed last (or the
    ///   only price known);
    /// - the journey and current step of the session changed last are
    ///   kept (on a tie, this one's);
    /// - context entries are united; a name in both keeps the value of the
    ///   session changed last;
    /// - channels are united (this one's, then the other's new ones), and
    ///   the last channel is the one of the session changed last;
    /// - it keeps this session's id, started when the earlier began, last
    ///   changed when the later did, and its revision is raised past both,
    ///   so that an etag read from either before is stale.
    pub fn combined(self, other: Session) -> Self {
        let other_is_later = other.updated_at > self.updated_at;
        let (later, earlier) = if other_is_later {
            (&other, &self)
        } else {
            (&self, &other)
        };
        let mut cart = self.cart.clone();
        for line in &other.cart {
            match cart
                .iter_mut()
                .find(|kept| kept.product_offering_id == line.product_offering_id)
            {
                Some(kept) => {
                    kept.quantity = kept.quantity.max(line.quantity);
                    let later_price = if other_is_later {
                        line.unit_price.clone()
                    } else {
                        kept.unit_price.clone()
                    };
                    kept.unit_price = later_price
                        .or_else(|| kept.unit_price.clone())
                        .or_else(|| line.unit_price.clone());
                }
                None => cart.push(line.clone()),
            }
        }
        let mut context = earlier.context.clone();
        context.extend(later.context.clone());
        let mut channels = self.channels.clone();
        for channel in &other.channels {
            if !channels.contains(channel) {
                channels.push(*channel);
            }
        }
        Self {
            id: self.id.clone(),
            profile_id: self.profile_id.clone(),
            journey_id: later.journey_id.clone(),
            current_step: later.current_step.clone(),
            cart,
            context,
            channels,
            last_channel: later.last_channel,
            started_at: self.started_at.min(other.started_at),
            updated_at: later.updated_at,
            revision: self.revision.max(other.revision) + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(offering: &str, quantity: i32, price: Option<i64>) -> CartItem {
        CartItem {
            product_offering_id: offering.into(),
            quantity,
            unit_price: price.map(|units| ("EUR".to_string(), units, 0)),
        }
    }

    #[test]
    fn two_sessions_combine_by_the_written_rule() {
        let start = Utc::now();
        let later = start + chrono::Duration::seconds(5);
        let mut app = Session::start("survivor".into(), 3, start);
        app.cart = vec![line("case", 1, Some(20)), line("phone-x", 1, None)];
        app.current_step = "browse".into();
        app.context
            .insert("page".into(), TypedValue::String("home".into()));
        app.revision = 4;
        let mut web = Session::start("visitor".into(), 1, start).touched(1, later);
        web.cart = vec![line("phone-x", 2, Some(700)), line("plan", 1, None)];
        web.journey_id = "guided_shopping".into();
        web.current_step = "checkout".into();
        web.context
            .insert("page".into(), TypedValue::String("cart".into()));
        web.context.insert("promo".into(), TypedValue::Bool(true));

        let combined = app.clone().combined(web.clone());
        assert_eq!(combined.id, app.id, "the survivor's session continues");
        assert_eq!(combined.profile_id, "survivor");
        assert_eq!(
            combined.cart,
            [
                line("case", 1, Some(20)),
                line("phone-x", 2, Some(700)),
                line("plan", 1, None)
            ]
        );
        assert_eq!(combined.current_step, "checkout", "the latest step");
        assert_eq!(combined.journey_id, "guided_shopping");
        assert_eq!(
            combined.context.get("page"),
            Some(&TypedValue::String("cart".into()))
        );
        assert_eq!(combined.context.get("promo"), Some(&TypedValue::Bool(true)));
        assert_eq!(combined.channels, [3, 1]);
        assert_eq!(combined.last_channel, 1);
        assert_eq!(combined.updated_at, later);
        assert_ne!(combined.etag(), app.etag());
        assert_ne!(combined.etag(), web.etag());
    }

    #[test]
    fn etags_of_two_sessions_at_one_revision_differ() {
        let now = Utc::now();
        let first = Session::start("a".into(), 1, now);
        let second = Session::start("a".into(), 1, now);
        assert_eq!(first.revision, second.revision);
        assert_ne!(first.etag(), second.etag());
    }
}

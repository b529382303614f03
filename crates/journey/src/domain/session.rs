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

    /// The etag callers send back.
    pub fn etag(&self) -> String {
        format!("r{}", self.revision)
    }
}

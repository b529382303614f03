//! The recommendation domain, free of wire and storage types.
//!
//! - [`action`]: the catalogue's actions and their checks.
//! - [`contact`]: the contact policy (caps, quiet hours, complaint
//!   suppression, cool-down) and the calendar periods caps count in.
//! - [`features`]: what the scorer sees of a customer and a context.
//! - [`bandit`]: the learned model and the scoring methods of policies.
//! - [`decision`]: decisions, candidates, outcomes and policies.

pub mod action;
pub mod bandit;
pub mod contact;
pub mod decision;
pub mod features;

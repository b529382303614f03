//! Cairn's integration tests: one binary, a module per behaviour, each test
//! with its own suite, database and Redis prefix.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod attributes;
mod auth;
mod bus;
mod consent;
mod contract;
mod events;
mod feedback;
mod groups;
mod journeys;
mod lifecycle;
mod limits;
mod portability;
mod profiles;
mod segments;
mod sessions;
mod timeline;
mod tracing_context;

//! Cairn's integration tests: one binary, a module per behaviour, each test
//! with its own suite, database and Redis prefix.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod abandonment;
mod analytics;
mod attributes;
mod auth;
mod batch_resolve;
mod bus;
mod bus_reset;
mod bus_trim;
mod consent;
mod context;
mod contract;
mod embedded;
mod entrypoint;
mod events;
mod faults;
mod feedback;
mod groups;
mod hostile_input;
mod journeys;
mod journeys_as_code;
mod lifecycle;
mod limits;
mod merge_properties;
mod overload;
mod portability;
mod profiles;
mod readme;
mod recommendation;
mod security;
mod segments;
mod sessions;
mod start_while_down;
mod stream_restart;
mod timeline;
mod tracing_context;

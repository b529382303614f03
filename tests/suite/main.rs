//! Cairn's integration tests: one binary, a module per behaviour, each test
//! with its own suite, database and Redis prefix.

mod auth;
mod contract;
mod events;
mod lifecycle;
mod limits;
mod tracing_context;

//! What every Cairn service shares, so that each service crate holds only
//! its domain, its storage and its gRPC mapping.
//!
//! # Layout
//! - [`config`]: the settings table (flags and environment variables).
//! - [`telemetry`]: logs, OpenTelemetry traces, W3C trace context in and out.
//! - [`metrics`]: per-RPC metrics on a Prometheus endpoint.
//! - [`auth`]: bearer tokens and the scope of every RPC.
//! - [`error`]: the domain error kinds and their one mapping to `tonic::Status`.
//! - [`limits`]: load shedding, per-client limits and the status of oversized messages.
//! - [`breaker`]: failing fast while a service's database is down.
//! - [`deadline`]: call deadlines, answered and passed on to peer calls.
//! - [`caller`]: the client a call is for, passed on to peer calls.
//! - [`share`]: each client's fair share of a busy replica's work.
//! - [`server`]: serving a service with health, reflection and the event hub.
//! - [`starting`]: listening before the stores answer, starting when they do.
//! - [`peer`]: gRPC clients for service-to-service calls.
//! - [`tls`]: TLS on the listeners and mutual TLS between services.
//! - [`bus`], [`outbox`], [`inbox`]: change events between services, published
//!   transactionally and consumed idempotently.
//! - [`storage`]: database connections and migrations.
//! - [`pagination`]: page sizes and page tokens.
//! - [`common`]: the contract's common types as domain types.
//! - [`rules`]: CEL rules (segments, stage conditions, eligibility).

pub mod auth;
pub mod breaker;
pub mod bus;
pub mod caller;
pub mod common;
pub mod config;
pub mod deadline;
pub mod error;
pub mod inbox;
pub mod limits;
pub mod metrics;
pub mod outbox;
pub mod pagination;
pub mod peer;
pub mod rules;
pub mod server;
pub mod share;
pub mod starting;
pub mod storage;
pub mod telemetry;
pub mod tls;

pub use config::{ServiceKind, Settings};
pub use error::{Error, FieldViolation, Result, Violations};

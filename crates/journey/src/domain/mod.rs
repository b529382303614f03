//! The journey service's domain: touchpoints, journey definitions and how
//! customers move through them, free of gRPC and storage.

pub mod analytics;
pub mod definition;
pub mod progress;
pub mod session;
pub mod touchpoint;

pub use touchpoint::{
    IncomingTouchpoint, MAX_FUTURE_SKEW, MAX_PROPERTIES, MAX_PROPERTY_VALUE_BYTES,
    MAX_TOUCHPOINT_ID_BYTES, Properties, Touchpoint, TouchpointKind,
};

//! The journey domain, free of gRPC and SQL.

mod touchpoint;

pub use touchpoint::{
    MAX_FUTURE_SKEW, MAX_PROPERTIES, MAX_PROPERTY_VALUE_BYTES, MAX_TOUCHPOINT_ID_BYTES, Properties,
    Touchpoint, TouchpointKind,
};

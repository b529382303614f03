//! Cairn's gRPC contract, generated from the workspace's `proto/` folder.
//!
//! # Layout
//! One module per protobuf package, named after it (`common::v1`,
//! `profile::v1`, ...), plus [`FILE_DESCRIPTOR_SET`] for server reflection.
//! The crate is a leaf: it depends on nothing of ours, and it re-exports
//! `tonic`, `prost` and `prost_types` so every crate builds against one
//! version of each.
#![allow(missing_docs, clippy::all, clippy::unwrap_used, clippy::expect_used)]

pub mod checked;

pub use prost;
pub use prost_types;
pub use tonic;

/// The encoded `FileDescriptorSet` of every Cairn proto file, served by
/// reflection so that `grpcurl` and other tools can list the whole API.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cairn_descriptor.bin"));

/// Types shared by every service.
pub mod common {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/cairn.common.v1.rs"));
    }
}

/// Change events and the event hub.
pub mod events {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/cairn.events.v1.rs"));
    }
}

/// The profile service.
pub mod profile {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/cairn.profile.v1.rs"));
    }
}

/// The journey service.
pub mod journey {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/cairn.journey.v1.rs"));
    }
}

/// The recommendation (next best action) service.
pub mod recommendation {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/cairn.recommendation.v1.rs"));
    }
}

/// The feedback service.
pub mod feedback {
    /// Version 1.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/cairn.feedback.v1.rs"));
    }
}

//! The feedback domain, free of gRPC and SQL: survey definitions and how
//! answers are checked, the measures and their confidence intervals,
//! language detection and themes, tickets' lifecycle.

pub mod kpi;
pub mod survey;
pub mod text;
pub mod ticket;

/// Longest free text (comments, free-text answers): 8 KiB, as the contract says.
pub const MAX_TEXT_BYTES: usize = 8 * 1024;

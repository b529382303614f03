//! Who may do what, and what becomes of personal data: every RPC's scope,
//! customers' own tokens, TLS between services, erasure reaching every
//! store, the export of everything, the audit log, and logs without
//! personal data. `docs/reliability.md` lists each test with its figure.

mod audit;
mod customers;
pub mod erasure;
mod foreign_decisions;
mod logs;
mod oracles;
mod raw;
mod scopes;
mod tls;
mod touchpoint_ids;

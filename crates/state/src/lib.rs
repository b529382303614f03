//! Short-lived state shared by all replicas of a service: cross-channel
//! sessions, contact counters, caches.
//!
//! # Layout
//! - [`StateStore`]: the trait services program against.
//! - [`RedisStore`]: the production store, shared by every replica.
//! - [`MemoryStore`]: the in-process stand-in of a local trial (`make run`
//!   without Redis). It is not shared across replicas and is lost on restart;
//!   the process logs that when it starts.
//!
//! Every key is prefixed (the `CAIRN_REDIS_PREFIX` setting), so that several
//! suites, or parallel tests, can share one Redis without seeing each other.

mod memory;
mod redis_store;

use std::time::Duration;

pub use memory::MemoryStore;
pub use redis_store::RedisStore;

/// Why a state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The store cannot be reached; retrying later may work.
    #[error("the state store is unavailable: {0}")]
    Unavailable(String),
    /// The store answered something unexpected.
    #[error("the state store failed: {0}")]
    Failed(String),
}

/// One key of an atomic [`StateStore::swap_all`]: what the caller read from
/// it and what it should hold after.
#[derive(Debug, Clone, Copy)]
pub struct Swap<'a> {
    /// The key.
    pub key: &'a str,
    /// What it must still hold (`None`: it must be absent).
    pub expected: Option<&'a [u8]>,
    /// What it holds after (`None`: it is removed).
    pub value: Option<&'a [u8]>,
}

/// Short-lived key-value state with expiry and counters.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// The value of `key`, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError>;

    /// Sets `key` to `value`, expiring after `ttl` without writes.
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StateError>;

    /// Sets `key` to `value` only if it still holds `expected` (`None`: only
    /// if it is absent), in one atomic step; true when it was set. What two
    /// replicas changing one session at once need so that neither change is lost.
    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StateError>;

    /// The values of several keys at once, in their order (`None` where
    /// absent or expired): one round trip, however many keys.
    async fn get_all(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StateError>;

    /// Applies every swap in one atomic step, only if every key still holds
    /// its `expected` value; true when applied, false (nothing changed) when
    /// any key changed since it was read. What combining two customers'
    /// sessions after a merge needs: the survivor's is written and the
    /// merged one's removed together, so that two replicas doing it at
    /// once, or a later retry, never drop or double anything. Keys written
    /// expire after `ttl`. On Redis the keys must live on one node (a
    /// standalone Redis or a primary with replicas, not a cluster).
    async fn swap_all(&self, swaps: &[Swap<'_>], ttl: Duration) -> Result<bool, StateError>;

    /// Removes `key`; true when it existed.
    async fn delete(&self, key: &str) -> Result<bool, StateError>;

    /// Adds `by` to the counter `key` (created at 0), setting its expiry to
    /// `ttl` when the counter is new; returns the new value.
    async fn increment(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, StateError>;

    /// Removes every key that starts with `prefix` (erasure of a person's state).
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StateError>;

    /// Ok when the store answers.
    async fn ping(&self) -> Result<(), StateError>;

    /// True when every replica sees the same state.
    fn is_shared(&self) -> bool;
}

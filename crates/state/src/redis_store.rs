//! The production state store on Redis.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::{StateError, StateStore, Swap};

/// State in Redis, shared by every replica, under a key prefix.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
}

impl RedisStore {
    /// A store on `connection` whose keys all start with `prefix`.
    pub fn new(connection: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            connection,
            prefix: prefix.into(),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

fn failed(error: redis::RedisError) -> StateError {
    if error.is_io_error() || error.is_connection_dropped() || error.is_timeout() {
        StateError::Unavailable(error.to_string())
    } else {
        StateError::Failed(error.to_string())
    }
}

fn millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

#[async_trait::async_trait]
impl StateStore for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let mut connection = self.connection.clone();
        connection.get(self.key(key)).await.map_err(failed)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut connection)
            .await
            .map_err(failed)
    }

    async fn delete(&self, key: &str) -> Result<bool, StateError> {
        let mut connection = self.connection.clone();
        let removed: i64 = connection.del(self.key(key)).await.map_err(failed)?;
        Ok(removed > 0)
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let mut connection = self.connection.clone();
        let Some(expected) = expected else {
            let set: Option<String> = redis::cmd("SET")
                .arg(self.key(key))
                .arg(value)
                .arg("NX")
                .arg("PX")
                .arg(millis(ttl))
                .query_async(&mut connection)
                .await
                .map_err(failed)?;
            return Ok(set.is_some());
        };
        // One script, so that nothing changes the key between the compare and the set.
        let script = redis::Script::new(
            r"if redis.call('GET', KEYS[1]) == ARGV[1] then
                redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
                return 1
              end
              return 0",
        );
        let swapped: i64 = script
            .key(self.key(key))
            .arg(expected)
            .arg(value)
            .arg(millis(ttl))
            .invoke_async(&mut connection)
            .await
            .map_err(failed)?;
        Ok(swapped == 1)
    }

    async fn get_all(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StateError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("MGET");
        for key in keys {
            command.arg(self.key(key));
        }
        command.query_async(&mut connection).await.map_err(failed)
    }

    async fn swap_all(&self, swaps: &[Swap<'_>], ttl: Duration) -> Result<bool, StateError> {
        if swaps.is_empty() {
            return Ok(true);
        }
        // One script, so that nothing changes any key between the compares
        // and the writes. Per key four arguments: whether a value is
        // expected, the value, whether one is written, the value; then the
        // expiry. GET answers false for an absent key.
        let script = redis::Script::new(
            r"local ttl = ARGV[#ARGV]
              for i = 1, #KEYS do
                local current = redis.call('GET', KEYS[i])
                if ARGV[4 * i - 3] == '1' then
                  if current ~= ARGV[4 * i - 2] then return 0 end
                elseif current then
                  return 0
                end
              end
              for i = 1, #KEYS do
                if ARGV[4 * i - 1] == '1' then
                  redis.call('SET', KEYS[i], ARGV[4 * i], 'PX', ttl)
                else
                  redis.call('DEL', KEYS[i])
                end
              end
              return 1",
        );
        let mut invocation = script.prepare_invoke();
        for swap in swaps {
            invocation
                .key(self.key(swap.key))
                .arg(if swap.expected.is_some() { "1" } else { "0" })
                .arg(swap.expected.unwrap_or_default())
                .arg(if swap.value.is_some() { "1" } else { "0" })
                .arg(swap.value.unwrap_or_default());
        }
        invocation.arg(millis(ttl));
        let mut connection = self.connection.clone();
        let swapped: i64 = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(failed)?;
        Ok(swapped == 1)
    }

    async fn increment(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, StateError> {
        // One round trip, and the expiry is set only when the counter is new,
        // so a window keeps its start.
        let script = redis::Script::new(
            r"local v = redis.call('INCRBY', KEYS[1], ARGV[1])
              if v == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
              return v",
        );
        let mut connection = self.connection.clone();
        script
            .key(self.key(key))
            .arg(by)
            .arg(millis(ttl))
            .invoke_async(&mut connection)
            .await
            .map_err(failed)
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StateError> {
        let mut connection = self.connection.clone();
        let pattern = format!("{}*", self.key(&escape_glob(prefix)));
        let mut cursor: u64 = 0;
        let mut removed = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut connection)
                .await
                .map_err(failed)?;
            if !keys.is_empty() {
                let count: u64 = connection.del(&keys).await.map_err(failed)?;
                removed += count;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    async fn ping(&self) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .map_err(failed)?;
        Ok(())
    }

    fn is_shared(&self) -> bool {
        true
    }
}

fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

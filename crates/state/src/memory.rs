//! The in-process state store of a local trial.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{StateError, StateStore, Swap};

/// State held in this process only.
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Vec<u8>, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl StateStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let mut entries = self.entries();
        match entries.get(key) {
            Some((_, expires)) if *expires <= Instant::now() => {
                entries.remove(key);
                Ok(None)
            }
            Some((value, _)) => Ok(Some(value.clone())),
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StateError> {
        self.entries()
            .insert(key.to_string(), (value.to_vec(), Instant::now() + ttl));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, StateError> {
        Ok(self.entries().remove(key).is_some())
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let mut entries = self.entries();
        let now = Instant::now();
        let current = entries
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .map(|(value, _)| value.as_slice());
        if current != expected {
            return Ok(false);
        }
        entries.insert(key.to_string(), (value.to_vec(), now + ttl));
        Ok(true)
    }

    async fn get_all(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StateError> {
        let entries = self.entries();
        let now = Instant::now();
        Ok(keys
            .iter()
            .map(|key| {
                entries
                    .get(*key)
                    .filter(|(_, expires)| *expires > now)
                    .map(|(value, _)| value.clone())
            })
            .collect())
    }

    async fn swap_all(&self, swaps: &[Swap<'_>], ttl: Duration) -> Result<bool, StateError> {
        let mut entries = self.entries();
        let now = Instant::now();
        let unchanged = swaps.iter().all(|swap| {
            let current = entries
                .get(swap.key)
                .filter(|(_, expires)| *expires > now)
                .map(|(value, _)| value.as_slice());
            current == swap.expected
        });
        if !unchanged {
            return Ok(false);
        }
        for swap in swaps {
            match swap.value {
                Some(value) => {
                    entries.insert(swap.key.to_string(), (value.to_vec(), now + ttl));
                }
                None => {
                    entries.remove(swap.key);
                }
            }
        }
        Ok(true)
    }

    async fn increment(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, StateError> {
        let mut entries = self.entries();
        let now = Instant::now();
        let current = match entries.get(key) {
            Some((value, expires)) if *expires > now => {
                let text = String::from_utf8_lossy(value);
                let number = text
                    .parse::<i64>()
                    .map_err(|_| StateError::Failed(format!("{key} is not a counter")))?;
                Some((number, *expires))
            }
            _ => None,
        };
        let (value, expires) = match current {
            Some((number, expires)) => (number + by, expires),
            None => (by, now + ttl),
        };
        entries.insert(key.to_string(), (value.to_string().into_bytes(), expires));
        Ok(value)
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StateError> {
        let mut entries = self.entries();
        let before = entries.len();
        entries.retain(|key, _| !key.starts_with(prefix));
        Ok((before - entries.len()) as u64)
    }

    async fn ping(&self) -> Result<(), StateError> {
        Ok(())
    }

    fn is_shared(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_expire_and_counters_count() {
        let store = MemoryStore::new();
        store
            .set("a", b"1", Duration::from_millis(20))
            .await
            .unwrap();
        assert_eq!(store.get("a").await.unwrap(), Some(b"1".to_vec()));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(store.get("a").await.unwrap(), None);
        assert_eq!(
            store
                .increment("c", 2, Duration::from_secs(5))
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            store
                .increment("c", 3, Duration::from_secs(5))
                .await
                .unwrap(),
            5
        );
        store
            .set("p:1", b"x", Duration::from_secs(5))
            .await
            .unwrap();
        store
            .set("p:2", b"x", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(store.delete_prefix("p:").await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_swap_of_several_keys_applies_only_when_none_changed() {
        let store = MemoryStore::new();
        let ttl = Duration::from_secs(5);
        store.set("kept", b"old", ttl).await.unwrap();
        store.set("gone", b"merged", ttl).await.unwrap();
        let stale = [
            Swap {
                key: "kept",
                expected: Some(b"older"),
                value: Some(b"new"),
            },
            Swap {
                key: "gone",
                expected: Some(b"merged"),
                value: None,
            },
        ];
        assert!(!store.swap_all(&stale, ttl).await.unwrap());
        assert_eq!(
            store.get_all(&["kept", "gone"]).await.unwrap(),
            [Some(b"old".to_vec()), Some(b"merged".to_vec())],
            "nothing changed"
        );
        let fresh = [
            Swap {
                key: "kept",
                expected: Some(b"old"),
                value: Some(b"new"),
            },
            Swap {
                key: "gone",
                expected: Some(b"merged"),
                value: None,
            },
        ];
        assert!(store.swap_all(&fresh, ttl).await.unwrap());
        assert_eq!(
            store.get_all(&["kept", "gone"]).await.unwrap(),
            [Some(b"new".to_vec()), None]
        );
        assert!(!store.swap_all(&fresh, ttl).await.unwrap(), "applied once");
    }
}

//! Cross-channel sessions in the shared state store (Redis in production):
//! every replica sees the same session, it survives a restart of the
//! service, and it expires by itself after the idle time. Changes are
//! compare-and-set, so two channels changing one session at once never lose
//! a change silently: the loser retries, or hears ABORTED on a stale etag.

use std::sync::Arc;
use std::time::Duration;

use cairn_runtime::{Error, Result};
use cairn_state::{StateStore, Swap};
use chrono::Utc;

use crate::domain::session::{Session, SessionChange};

/// How often a change is retried against concurrent changes before giving up.
const ATTEMPTS: usize = 8;

/// Sessions by profile id.
#[derive(Clone)]
pub struct SessionStore {
    state: Arc<dyn StateStore>,
    idle: Duration,
}

fn key(profile_id: &str) -> String {
    format!("journey:session:{profile_id}")
}

impl SessionStore {
    /// Sessions in `state` that expire after `idle` without activity.
    pub fn new(state: Arc<dyn StateStore>, idle: Duration) -> Self {
        Self { state, idle }
    }

    /// How long a session lives without activity.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    async fn read(&self, profile_id: &str) -> Result<Option<(Session, Vec<u8>)>> {
        let Some(raw) = self.state.get(&key(profile_id)).await? else {
            return Ok(None);
        };
        let session = serde_json::from_slice(&raw).map_err(Error::internal)?;
        Ok(Some((session, raw)))
    }

    async fn write(&self, expected: Option<&[u8]>, session: &Session) -> Result<bool> {
        let raw = serde_json::to_vec(session).map_err(Error::internal)?;
        Ok(self
            .state
            .compare_and_set(&key(&session.profile_id), expected, &raw, self.idle)
            .await?)
    }

    /// The session of `profile_id` after the sessions still kept under the
    /// profiles merged into it (`merged`, every standing merge, through
    /// chains) were combined into it ([`Session::combined`]), with the
    /// bytes stored, for the caller's own compare-and-set.
    ///
    /// The combination is written and the merged-away sessions removed in
    /// one atomic step that applies only if none of them changed since they
    /// were read ([`StateStore::swap_all`]); otherwise everything is read
    /// again. So a call right after a merge sees the merged customer's
    /// session whether or not the merge event was handled yet, and two
    /// replicas combining at once, or the merge-event consumer later,
    /// combine each session exactly once: the loser finds the merged-away
    /// sessions gone.
    async fn settled(
        &self,
        profile_id: &str,
        merged: &[String],
    ) -> Result<Option<(Session, Vec<u8>)>> {
        if merged.is_empty() {
            return self.read(profile_id).await;
        }
        let mut keys = vec![key(profile_id)];
        keys.extend(merged.iter().map(|merged| key(merged)));
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        for _ in 0..ATTEMPTS {
            let raws = self.state.get_all(&key_refs).await?;
            if raws.iter().skip(1).all(Option::is_none) {
                return match raws.into_iter().next().flatten() {
                    Some(raw) => {
                        let session = serde_json::from_slice(&raw).map_err(Error::internal)?;
                        Ok(Some((session, raw)))
                    }
                    None => Ok(None),
                };
            }
            let mut combined: Option<Session> = None;
            for raw in raws.iter().flatten() {
                let session: Session = serde_json::from_slice(raw).map_err(Error::internal)?;
                combined = Some(match combined {
                    None => Session {
                        profile_id: profile_id.to_string(),
                        ..session
                    },
                    Some(kept) => kept.combined(session),
                });
            }
            let Some(combined) = combined else {
                return Ok(None);
            };
            let written = serde_json::to_vec(&combined).map_err(Error::internal)?;
            let swaps: Vec<Swap<'_>> = key_refs
                .iter()
                .zip(&raws)
                .enumerate()
                .map(|(index, (key, raw))| Swap {
                    key,
                    expected: raw.as_deref(),
                    value: (index == 0).then_some(written.as_slice()),
                })
                .collect();
            if self.state.swap_all(&swaps, self.idle).await? {
                tracing::debug!(
                    combined = raws.iter().flatten().count(),
                    "combined the sessions of merged profiles"
                );
                return Ok(Some((combined, written)));
            }
        }
        Err(Error::Aborted(
            "the sessions of the merged profiles kept changing; retry".into(),
        ))
    }

    /// The active session of `profile_id`, with those of the profiles
    /// `merged` into it combined into it.
    pub async fn get(&self, profile_id: &str, merged: &[String]) -> Result<Option<Session>> {
        Ok(self
            .settled(profile_id, merged)
            .await?
            .map(|(session, _)| session))
    }

    /// Continues the active session on `channel` (combined first with those
    /// of the profiles `merged` into the customer's), or starts one; true
    /// when started.
    pub async fn resume(
        &self,
        profile_id: &str,
        merged: &[String],
        channel: i32,
    ) -> Result<(Session, bool)> {
        for _ in 0..ATTEMPTS {
            let now = Utc::now();
            let (session, expected, started) = match self.settled(profile_id, merged).await? {
                Some((session, raw)) => (session.touched(channel, now), Some(raw), false),
                None => (
                    Session::start(profile_id.to_string(), channel, now),
                    None,
                    true,
                ),
            };
            if self.write(expected.as_deref(), &session).await? {
                return Ok((session, started));
            }
        }
        Err(Error::Aborted(
            "the session kept changing on other channels; retry".into(),
        ))
    }

    /// Applies `change` made on `channel` to the active session (combined
    /// first with those of the profiles `merged` into the customer's).
    /// NOT_FOUND when there is none; ABORTED when `etag` is given and stale,
    /// or was read from another session (one combined into this since).
    pub async fn update(
        &self,
        profile_id: &str,
        merged: &[String],
        channel: i32,
        change: SessionChange,
        etag: Option<&str>,
    ) -> Result<Session> {
        for _ in 0..ATTEMPTS {
            let Some((session, raw)) = self.settled(profile_id, merged).await? else {
                return Err(Error::not_found(
                    "session",
                    "the customer has no active session (it ended or expired); start one with ResumeSession",
                ));
            };
            if let Some(etag) = etag
                && etag != session.etag()
            {
                return Err(Error::Aborted(format!(
                    "the session changed since it was read, or the etag is another session's \
                     (etag {} is now {}); read it again",
                    etag,
                    session.etag()
                )));
            }
            let changed = session.changed(change.clone(), channel, Utc::now());
            if self.write(Some(&raw), &changed).await? {
                return Ok(changed);
            }
        }
        Err(Error::Aborted(
            "the session kept changing on other channels; retry".into(),
        ))
    }

    /// Ends the active session, and those still kept under the profiles
    /// `merged` into the customer's; true when there was one.
    pub async fn end(&self, profile_id: &str, merged: &[String]) -> Result<bool> {
        let mut ended = self.state.delete(&key(profile_id)).await?;
        for merged in merged {
            ended |= self.state.delete(&key(merged)).await?;
        }
        Ok(ended)
    }

    /// Combines `merged`'s session into `survivor`'s when the merge event
    /// arrives, by the same rule and in the same atomic step as a call
    /// does: idempotent, so a call that combined them first, a redelivered
    /// event, or two consumers at once change nothing more.
    pub async fn follow_merge(&self, survivor: &str, merged: &str) -> Result<()> {
        self.settled(survivor, &[merged.to_string()]).await?;
        Ok(())
    }
}

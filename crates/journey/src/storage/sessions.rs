//! Cross-channel sessions in the shared state store (Redis in production):
//! every replica sees the same session, it survives a restart of the
//! service, and it expires by itself after the idle time. Changes are
//! compare-and-set, so two channels changing one session at once never lose
//! a change silently: the loser retries, or hears ABORTED on a stale etag.

use std::sync::Arc;
use std::time::Duration;

use cairn_runtime::{Error, Result};
use cairn_state::StateStore;
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

    /// The active session of `profile_id`, if any.
    pub async fn get(&self, profile_id: &str) -> Result<Option<Session>> {
        Ok(self.read(profile_id).await?.map(|(session, _)| session))
    }

    /// Continues the active session on `channel`, or starts one; true when started.
    pub async fn resume(&self, profile_id: &str, channel: i32) -> Result<(Session, bool)> {
        for _ in 0..ATTEMPTS {
            let now = Utc::now();
            let (session, expected, started) = match self.read(profile_id).await? {
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

    /// Applies `change` made on `channel` to the active session. NOT_FOUND
    /// when there is none; ABORTED when `etag` is given and stale.
    pub async fn update(
        &self,
        profile_id: &str,
        channel: i32,
        change: SessionChange,
        etag: Option<&str>,
    ) -> Result<Session> {
        for _ in 0..ATTEMPTS {
            let Some((session, raw)) = self.read(profile_id).await? else {
                return Err(Error::not_found(
                    "session",
                    "the customer has no active session (it ended or expired); start one with ResumeSession",
                ));
            };
            if let Some(etag) = etag
                && etag != session.etag()
            {
                return Err(Error::Aborted(format!(
                    "the session changed since it was read (etag {} is now {}); read it again",
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

    /// Ends the active session; true when there was one.
    pub async fn end(&self, profile_id: &str) -> Result<bool> {
        Ok(self.state.delete(&key(profile_id)).await?)
    }

    /// Gives `merged`'s session to `survivor` when the survivor has none.
    pub async fn follow_merge(&self, survivor: &str, merged: &str) -> Result<()> {
        if let Some((mut session, _)) = self.read(merged).await? {
            session.profile_id = survivor.to_string();
            self.write(None, &session).await?;
            self.end(merged).await?;
        }
        Ok(())
    }
}

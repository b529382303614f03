//! Each client's fair share of a busy replica's work.
//!
//! A replica works on any client's calls at once while it is not busy. Once
//! as many calls are at work as it is busy at (its database pool's
//! connections: past that, calls only queue inside the pool, where a flood
//! of one client's calls would stand in front of everybody's), a client
//! that already has its share of calls at work waits for one of them to end
//! before another starts, while a client below its share starts at once.
//! Waiting clients are served in turn, one call each, so that two floods
//! share the replica evenly and a client with a single call never waits
//! behind a flood.
//!
//! Waiting is bounded elsewhere: by the client's open calls
//! (`CAIRN_CLIENT_MAX_IN_FLIGHT`, beyond which calls are refused with
//! RESOURCE_EXHAUSTED) and by the call's deadline.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// How work is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareQuota {
    /// Calls one client may have at work while the replica is busy; 0: no limit.
    pub per_client: usize,
    /// Calls at work (all clients together) from which the replica is busy.
    pub busy_at: usize,
}

impl ShareQuota {
    /// The quota the settings configure: `CAIRN_CLIENT_SHARE`, or half the
    /// database pool when it is unset; busy at the pool's size.
    pub fn from_settings(settings: &crate::Settings) -> Self {
        let pool = usize::try_from(settings.database_max_connections)
            .unwrap_or(usize::MAX)
            .max(1);
        Self {
            per_client: settings.client_share.unwrap_or(pool.div_ceil(2)),
            busy_at: pool,
        }
    }
}

/// The shares of one replica's work among its clients.
#[derive(Clone)]
pub struct WorkShares {
    inner: Arc<Inner>,
}

struct Inner {
    quota: ShareQuota,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Calls at work, all clients together.
    working: usize,
    /// Clients with calls at work or waiting.
    clients: HashMap<Arc<str>, ClientWork>,
    /// Clients with calls waiting, in the order they get their next turn.
    turns: VecDeque<Arc<str>>,
}

#[derive(Default)]
struct ClientWork {
    working: usize,
    waiting: VecDeque<oneshot::Sender<Slot>>,
}

/// One call's place at work; the place is given back when it is dropped.
pub struct Slot {
    inner: Arc<Inner>,
    client: Arc<str>,
    counted: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        let mut state = self.inner.lock();
        state.finish(&self.client);
        self.inner.hand_out(&mut state);
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// True when `client` may start a call now.
    fn admits(&self, state: &State, client: &str) -> bool {
        let working = state.clients.get(client).map_or(0, |work| work.working);
        self.quota.per_client == 0
            || working < self.quota.per_client
            || state.working < self.quota.busy_at
    }

    /// Gives places to waiting calls, one per client in turn, while any
    /// client's next call is admitted.
    fn hand_out(self: &Arc<Self>, state: &mut State) {
        loop {
            let mut handed = false;
            for _ in 0..state.turns.len() {
                let Some(client) = state.turns.pop_front() else {
                    break;
                };
                let admitted = self.admits(state, &client);
                let Some(work) = state.clients.get_mut(&client) else {
                    continue;
                };
                while work
                    .waiting
                    .front()
                    .is_some_and(|waiter| waiter.is_closed())
                {
                    work.waiting.pop_front();
                }
                if admitted && let Some(waiter) = work.waiting.pop_front() {
                    work.working += 1;
                    state.working += 1;
                    let slot = Slot {
                        inner: Arc::clone(self),
                        client: Arc::clone(&client),
                        counted: true,
                    };
                    if let Err(mut unwanted) = waiter.send(slot) {
                        // The call gave up (its deadline, or its caller) between the
                        // check and now: the place is not taken after all.
                        unwanted.counted = false;
                        work.working -= 1;
                        state.working -= 1;
                    } else {
                        handed = true;
                    }
                }
                let Some(work) = state.clients.get(&client) else {
                    continue;
                };
                if !work.waiting.is_empty() {
                    state.turns.push_back(client);
                } else if work.working == 0 {
                    state.clients.remove(&client);
                }
            }
            if !handed {
                return;
            }
        }
    }
}

impl State {
    fn finish(&mut self, client: &str) {
        self.working = self.working.saturating_sub(1);
        if let Some(work) = self.clients.get_mut(client) {
            work.working = work.working.saturating_sub(1);
            if work.working == 0 && work.waiting.is_empty() {
                self.clients.remove(client);
            }
        }
    }
}

impl WorkShares {
    /// Shares by `quota`.
    pub fn new(quota: ShareQuota) -> Self {
        Self {
            inner: Arc::new(Inner {
                quota,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// A place at work for one call of `client`: at once when the client is
    /// below its share or the replica is not busy, else when its turn comes.
    pub async fn enter(&self, client: Arc<str>) -> Slot {
        loop {
            let waiting = {
                let mut state = self.inner.lock();
                if self.inner.admits(&state, &client) {
                    drop(state);
                    return self.enter_now(client);
                }
                let (sender, receiver) = oneshot::channel();
                let work = state.clients.entry(Arc::clone(&client)).or_default();
                let first = work.waiting.is_empty();
                work.waiting.push_back(sender);
                if first && !state.turns.contains(&client) {
                    state.turns.push_back(Arc::clone(&client));
                }
                receiver
            };
            // A sender is only dropped unsent when its client's entry went
            // away, which waiting keeps from happening; ask again if it did.
            if let Ok(slot) = waiting.await {
                return slot;
            }
        }
    }

    /// A place at work for one call of `client` at once, whatever its share:
    /// for calls whose share was already applied where they started (a
    /// service's call for a client). It still counts, so the client's own
    /// calls wait the longer.
    pub fn enter_now(&self, client: Arc<str>) -> Slot {
        let mut state = self.inner.lock();
        state.working += 1;
        state
            .clients
            .entry(Arc::clone(&client))
            .or_default()
            .working += 1;
        Slot {
            inner: Arc::clone(&self.inner),
            client,
            counted: true,
        }
    }

    /// Calls at work now, all clients together (for tests and metrics).
    pub fn working(&self) -> usize {
        self.inner.lock().working
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn shares(per_client: usize, busy_at: usize) -> WorkShares {
        WorkShares::new(ShareQuota {
            per_client,
            busy_at,
        })
    }

    async fn enters_at_once(shares: &WorkShares, client: &str) -> Option<Slot> {
        tokio::time::timeout(Duration::from_millis(50), shares.enter(client.into()))
            .await
            .ok()
    }

    #[tokio::test]
    async fn a_client_alone_uses_the_whole_replica_until_it_is_busy() {
        let shares = shares(2, 4);
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(
                enters_at_once(&shares, "flood")
                    .await
                    .expect("not busy yet"),
            );
        }
        assert!(
            enters_at_once(&shares, "flood").await.is_none(),
            "busy, over its share"
        );
        assert_eq!(shares.working(), 4);
    }

    #[tokio::test]
    async fn a_client_below_its_share_starts_at_once_while_a_flood_waits() {
        let shares = shares(2, 4);
        let mut flood = Vec::new();
        for _ in 0..4 {
            flood.push(enters_at_once(&shares, "flood").await.unwrap());
        }
        let waiting = tokio::spawn({
            let shares = shares.clone();
            async move { shares.enter("flood".into()).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let victim = enters_at_once(&shares, "victim").await;
        assert!(victim.is_some(), "a client below its share never waits");
        assert!(!waiting.is_finished(), "the flood waits its turn");
        drop(flood.pop());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "still busy (the victim's call took a place): the flood still waits"
        );
        drop(victim);
        let next = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("a place freed goes to the waiting call")
            .unwrap();
        assert_eq!(shares.working(), 4);
        drop(next);
        drop(flood);
        assert_eq!(shares.working(), 0);
        assert!(
            shares.inner.lock().clients.is_empty(),
            "nothing kept of idle clients"
        );
    }

    #[tokio::test]
    async fn waiting_clients_take_turns() {
        let shares = shares(1, 1);
        let first = enters_at_once(&shares, "a").await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for client in ["a", "a", "a", "b"] {
            let shares = shares.clone();
            let order = Arc::clone(&order);
            waiters.push(tokio::spawn(async move {
                let slot = shares.enter(client.into()).await;
                order.lock().unwrap().push(client);
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(slot);
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(first);
        for waiter in waiters {
            waiter.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert!(
            order[..2].contains(&"b"),
            "b's one call does not wait for all of a's: {order:?}"
        );
    }

    #[tokio::test]
    async fn a_call_that_gives_up_waiting_takes_no_place() {
        let shares = shares(1, 1);
        let first = enters_at_once(&shares, "a").await.unwrap();
        assert!(
            enters_at_once(&shares, "a").await.is_none(),
            "gave up waiting"
        );
        drop(first);
        assert_eq!(shares.working(), 0);
        assert!(enters_at_once(&shares, "a").await.is_some());
    }

    #[tokio::test]
    async fn a_call_entered_at_once_counts_against_its_client() {
        let shares = shares(1, 1);
        let now = shares.enter_now("a".into());
        let again = shares.enter_now("a".into());
        assert_eq!(shares.working(), 2);
        assert!(
            enters_at_once(&shares, "a").await.is_none(),
            "a's own calls wait"
        );
        drop((now, again));
        assert!(enters_at_once(&shares, "a").await.is_some());
    }

    #[tokio::test]
    async fn no_share_means_no_waiting() {
        let shares = shares(0, 1);
        let _held: Vec<_> =
            futures::future::join_all((0..10).map(|_| shares.enter("a".into()))).await;
        assert_eq!(shares.working(), 10);
    }
}

//! The in-process bus of a local trial: the same semantics as the Redis
//! bus (positions, retention, consumer groups, reclaiming), held in memory.
//! Not shared across processes, and lost on restart.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_contract::events::v1::ChangeEvent;
use tokio::sync::Notify;

use super::{Delivery, EventBus, Gap, Origin, Position};
use crate::error::{Error, Result};

/// An event bus held in this process.
pub struct MemoryBus {
    state: Mutex<State>,
    published: Notify,
    retention: usize,
    /// The log lives as long as the process: one generation.
    generation: String,
}

#[derive(Default)]
struct State {
    events: VecDeque<Delivery>,
    next_sequence: u64,
    /// The newest position trimmed away, if any.
    trimmed: Option<Position>,
    groups: HashMap<String, Group>,
}

#[derive(Default)]
struct Group {
    delivered: Position,
    pending: BTreeMap<Position, (String, Instant)>,
    /// Events redelivered to this group alone, not yet read.
    redeliveries: VecDeque<Delivery>,
    /// Redelivered events read but not acknowledged, and since when.
    redelivered_pending: BTreeMap<Position, (Delivery, Instant)>,
    /// Positions of redelivered events (their own sequence).
    next_redelivery: u64,
}

impl MemoryBus {
    /// A bus keeping at most `retention` events.
    pub fn new(retention: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            published: Notify::new(),
            retention: retention.max(1),
            generation: uuid::Uuid::now_v7().simple().to_string(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn append(&self, event: &ChangeEvent, origin: Option<Origin>) -> Position {
        let mut state = self.lock();
        state.next_sequence += 1;
        let position = Position {
            millis: 0,
            sequence: state.next_sequence,
        };
        state.events.push_back(Delivery {
            position,
            event: event.clone(),
            origin,
            redelivered: false,
        });
        while state.events.len() > self.retention {
            if let Some(trimmed) = state.events.pop_front() {
                state.trimmed = Some(trimmed.position);
            }
        }
        drop(state);
        self.published.notify_waiters();
        position
    }

    async fn wait_for<T>(
        &self,
        wait: Duration,
        mut attempt: impl FnMut(&Self) -> Vec<T>,
    ) -> Vec<T> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.published.notified();
            let found = attempt(self);
            if !found.is_empty() || tokio::time::Instant::now() >= deadline {
                return found;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }
}

impl State {
    fn after(&self, after: Option<Position>, max: usize) -> Vec<Delivery> {
        self.events
            .iter()
            .filter(|delivery| after.is_none_or(|after| delivery.position > after))
            .take(max)
            .cloned()
            .collect()
    }
}

#[async_trait::async_trait]
impl EventBus for MemoryBus {
    async fn publish(&self, event: &ChangeEvent) -> Result<Position> {
        Ok(self.append(event, None))
    }

    async fn publish_replay(&self, event: &ChangeEvent, origin: &Origin) -> Result<Position> {
        Ok(self.append(event, Some(origin.clone())))
    }

    async fn generation(&self) -> Result<String> {
        Ok(self.generation.clone())
    }

    async fn read(
        &self,
        after: Option<Position>,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        Ok(self
            .wait_for(wait, |bus| bus.lock().after(after, max))
            .await)
    }

    async fn newest(&self) -> Result<Position> {
        Ok(self
            .lock()
            .events
            .back()
            .map(|d| d.position)
            .unwrap_or_default())
    }

    async fn check_retained(&self, after: Position) -> Result<()> {
        match self.lock().trimmed {
            Some(trimmed) if trimmed > after => Err(Error::OutOfRange(format!(
                "cursor {after} is older than the retained events; resubscribe with from_oldest and resynchronise"
            ))),
            _ => Ok(()),
        }
    }

    async fn read_group(
        &self,
        group: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        Ok(self
            .wait_for(wait, |bus| {
                let mut state = bus.lock();
                let delivered = state.groups.get(group).map(|g| g.delivered);
                let logged = state.after(delivered, max);
                let group = state.groups.entry(group.to_string()).or_default();
                let mut found = Vec::new();
                while found.len() < max
                    && let Some(redelivery) = group.redeliveries.pop_front()
                {
                    group
                        .redelivered_pending
                        .insert(redelivery.position, (redelivery.clone(), Instant::now()));
                    found.push(redelivery);
                }
                for delivery in &logged {
                    group.delivered = delivery.position;
                    group
                        .pending
                        .insert(delivery.position, (consumer.to_string(), Instant::now()));
                }
                found.extend(logged);
                found
            })
            .await)
    }

    async fn claim_stale(
        &self,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>> {
        let mut state = self.lock();
        let stale: Vec<Position> = match state.groups.get(group) {
            Some(group) => group
                .pending
                .iter()
                .filter(|(_, (_, since))| since.elapsed() >= min_idle)
                .map(|(position, _)| *position)
                .take(max)
                .collect(),
            None => return Ok(Vec::new()),
        };
        let mut found: Vec<Delivery> = state
            .events
            .iter()
            .filter(|delivery| stale.contains(&delivery.position))
            .cloned()
            .collect();
        if let Some(group) = state.groups.get_mut(group) {
            for position in &stale {
                group
                    .pending
                    .insert(*position, (consumer.to_string(), Instant::now()));
            }
            for (delivery, since) in group.redelivered_pending.values_mut() {
                if since.elapsed() >= min_idle && found.len() < max {
                    *since = Instant::now();
                    found.insert(0, delivery.clone());
                }
            }
        }
        Ok(found)
    }

    async fn ack(&self, group: &str, positions: &[Position]) -> Result<()> {
        if let Some(group) = self.lock().groups.get_mut(group) {
            for position in positions {
                group.pending.remove(position);
            }
        }
        Ok(())
    }

    async fn gaps(&self) -> Result<Vec<Gap>> {
        let state = self.lock();
        let (Some(trimmed), Some(oldest)) = (state.trimmed, state.events.front()) else {
            return Ok(Vec::new());
        };
        Ok(state
            .groups
            .iter()
            .filter_map(|(name, group)| {
                // An unacknowledged event that was trimmed is lost too.
                let after = match group.pending.keys().next() {
                    Some(first) if *first <= trimmed => Position {
                        millis: 0,
                        sequence: first.sequence.saturating_sub(1),
                    }
                    .min(group.delivered),
                    _ => group.delivered,
                };
                (after < trimmed).then(|| Gap {
                    group: name.clone(),
                    after,
                    before: oldest.position,
                    missed: Some(trimmed.sequence - after.sequence),
                })
            })
            .collect())
    }

    async fn redeliver(&self, group: &str, event: &ChangeEvent, origin: &Origin) -> Result<()> {
        let mut state = self.lock();
        let group = state.groups.entry(group.to_string()).or_default();
        group.next_redelivery += 1;
        group.redeliveries.push_back(Delivery {
            position: Position {
                millis: 0,
                sequence: group.next_redelivery,
            },
            event: event.clone(),
            origin: Some(origin.clone()),
            redelivered: true,
        });
        drop(state);
        self.published.notify_waiters();
        Ok(())
    }

    async fn ack_redelivered(&self, group: &str, positions: &[Position]) -> Result<()> {
        if let Some(group) = self.lock().groups.get_mut(group) {
            for position in positions {
                group.redelivered_pending.remove(position);
            }
        }
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn forget(&self, profile_ids: &[String], own_group: &str) -> Result<bool> {
        let mut state = self.lock();
        let Some(newest) = state
            .events
            .iter()
            .filter(|delivery| profile_ids.contains(&delivery.event.profile_id))
            .map(|delivery| delivery.position)
            .max()
        else {
            return Ok(true);
        };
        let handled = state
            .groups
            .iter()
            .filter(|(name, _)| name.as_str() != own_group)
            .all(|(_, group)| {
                group.delivered >= newest && group.pending.keys().all(|p| *p > newest)
            });
        if !handled {
            return Ok(false);
        }
        state
            .events
            .retain(|delivery| !profile_ids.contains(&delivery.event.profile_id));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(number: u32) -> ChangeEvent {
        ChangeEvent {
            event_id: format!("event-{number}"),
            topic: "profile.created".into(),
            ..ChangeEvent::default()
        }
    }

    fn ids(deliveries: &[Delivery]) -> Vec<(String, bool)> {
        deliveries
            .iter()
            .map(|delivery| (delivery.event.event_id.clone(), delivery.redelivered))
            .collect()
    }

    #[tokio::test]
    async fn a_group_the_trimming_passed_is_found_and_reads_its_redeliveries_first() {
        let bus = MemoryBus::new(3);
        bus.publish(&event(1)).await.unwrap();
        let read = bus
            .read_group("slow", "a", 10, Duration::ZERO)
            .await
            .unwrap();
        bus.ack("slow", &[read[0].position]).await.unwrap();
        assert_eq!(bus.gaps().await.unwrap(), Vec::new());
        for number in 2..=6 {
            bus.publish(&event(number)).await.unwrap();
        }
        // Events 2 and 3 were trimmed before the group read them.
        let gaps = bus.gaps().await.unwrap();
        assert_eq!(gaps.len(), 1);
        assert_eq!(
            (
                gaps[0].group.as_str(),
                gaps[0].after.sequence,
                gaps[0].before.sequence
            ),
            ("slow", 1, 4)
        );
        assert_eq!(gaps[0].missed, Some(2));
        for number in [2, 3] {
            let origin = Origin {
                generation: bus.generation().await.unwrap(),
                position: Position {
                    millis: 0,
                    sequence: u64::from(number),
                },
            };
            bus.redeliver("slow", &event(number), &origin)
                .await
                .unwrap();
        }
        // Another group never sees the copies.
        let other = bus
            .read_group("other", "b", 10, Duration::ZERO)
            .await
            .unwrap();
        assert!(other.iter().all(|delivery| !delivery.redelivered));
        let read = bus
            .read_group("slow", "a", 10, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(
            ids(&read),
            vec![
                ("event-2".into(), true),
                ("event-3".into(), true),
                ("event-4".into(), false),
                ("event-5".into(), false),
                ("event-6".into(), false),
            ]
        );
        let (copies, logged): (Vec<_>, Vec<_>) =
            read.iter().partition(|delivery| delivery.redelivered);
        let positions = |deliveries: &[&Delivery]| -> Vec<Position> {
            deliveries
                .iter()
                .map(|delivery| delivery.position)
                .collect()
        };
        bus.ack_redelivered("slow", &positions(&copies))
            .await
            .unwrap();
        bus.ack("slow", &positions(&logged)).await.unwrap();
        assert_eq!(bus.gaps().await.unwrap(), Vec::new());
        let stale = bus
            .claim_stale("slow", "a", Duration::ZERO, 10)
            .await
            .unwrap();
        assert!(
            stale.is_empty(),
            "acknowledged copies are not handed out again"
        );
    }
}

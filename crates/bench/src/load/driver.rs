//! Driving a service: closed loop (a fixed number of calls in flight over a
//! fixed number of connections, each answered call followed by the next) to
//! find its throughput, and open loop (calls started on a schedule whatever
//! happened to earlier ones) to read its latency at a given rate without
//! coordinated omission.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};

use super::report::Measurement;

/// One call the driver asks a scenario to make.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    /// Which connection to use (0 .. connections).
    pub connection: usize,
    /// A number unique within the phase.
    pub sequence: u64,
}

/// The shape of a closed-loop phase.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Separate HTTP/2 connections.
    pub connections: usize,
    /// Calls in flight on each connection.
    pub in_flight: usize,
    /// How long to measure.
    pub duration: Duration,
    /// Stop after this many calls instead, when set.
    pub count: Option<u64>,
    /// Calls made before measuring starts (connections, caches, JIT of the
    /// database's plans), not counted.
    pub warmup: Duration,
}

impl Shape {
    /// The load in words, for the table.
    pub fn describe(&self) -> String {
        format!("{} conn × {} in flight", self.connections, self.in_flight)
    }
}

/// `connections` separate HTTP/2 connections to `address`.
pub async fn connect(address: &str, connections: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        channels.push(
            Endpoint::from_shared(address.to_string())?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    Ok(channels)
}

/// Runs `call` in a closed loop shaped by `shape`; each call returns the
/// units of work it did.
pub async fn closed_loop<F, Fut>(shape: Shape, call: F) -> Measurement
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<u64>> + Send + 'static,
{
    let call = Arc::new(call);
    let sequence = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let measuring_from = started + shape.warmup;
    let deadline = measuring_from + shape.duration;
    let workers = shape.connections.max(1) * shape.in_flight.max(1);
    let mut handles = Vec::with_capacity(workers);
    for worker in 0..workers {
        let (call, sequence) = (call.clone(), sequence.clone());
        let connection = worker % shape.connections.max(1);
        handles.push(tokio::spawn(async move {
            let mut measured = Measurement::new();
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                let counted = now >= measuring_from;
                let n = sequence.fetch_add(1, Ordering::Relaxed);
                if let Some(count) = shape.count
                    && n >= count
                {
                    break;
                }
                let outcome = call(Call {
                    connection,
                    sequence: n,
                })
                .await;
                if !counted {
                    continue;
                }
                match outcome {
                    Ok(items) => measured.success(now.elapsed(), items),
                    Err(error) => measured.failure(format!("{error:#}")),
                }
            }
            measured
        }));
    }
    let mut total = Measurement::new();
    for handle in handles {
        if let Ok(measured) = handle.await {
            total.absorb(&measured);
        }
    }
    total.elapsed = Instant::now().saturating_duration_since(measuring_from);
    total
}

/// Starts `call` `rate` times a second for `duration` (after `warmup` at the
/// same rate, not counted); latency is counted from each call's scheduled
/// start, so a service that falls behind shows it.
pub async fn open_loop<F, Fut>(
    rate: u64,
    duration: Duration,
    warmup: Duration,
    call: F,
) -> Measurement
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<u64>> + Send + 'static,
{
    let call = Arc::new(call);
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let started = Instant::now();
    let measuring_from = started + warmup;
    let total_calls = ((warmup + duration).as_secs_f64() * rate as f64) as u64;
    let (sender, mut receiver) =
        tokio::sync::mpsc::unbounded_channel::<(bool, Duration, anyhow::Result<u64>)>();
    let collector = tokio::spawn(async move {
        let mut measured = Measurement::new();
        while let Some((counted, latency, outcome)) = receiver.recv().await {
            if !counted {
                continue;
            }
            match outcome {
                Ok(items) => measured.success(latency, items),
                Err(error) => measured.failure(format!("{error:#}")),
            }
        }
        measured
    });
    for n in 0..total_calls {
        let due = started + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let (call, sender) = (call.clone(), sender.clone());
        tokio::spawn(async move {
            let outcome = call(Call {
                connection: n as usize,
                sequence: n,
            })
            .await;
            let _ = sender.send((due >= measuring_from, due.elapsed(), outcome));
        });
    }
    drop(sender);
    let mut measured = collector.await.unwrap_or_default();
    measured.elapsed = duration;
    measured
}

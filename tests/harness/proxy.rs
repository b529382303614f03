//! A TCP proxy in user space between a service and one of its stores, so
//! that a test can inject the faults of a real deployment without touching
//! the machine's shared PostgreSQL or Redis (this kernel has no `tc netem`):
//!
//! - [`FaultProxy::cut`]: the store goes away. Open connections are closed
//!   and the port refuses new ones, as when the store's process is stopped.
//! - [`FaultProxy::restore`]: the store is back on the same address.
//! - [`FaultProxy::set_latency`]: every chunk of bytes, in each direction,
//!   arrives that much later (a delay, not a bandwidth limit, like netem's).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

/// A proxy from a local port to `upstream`, with faults switched by the test.
pub struct FaultProxy {
    /// Where clients connect (give this to the service instead of the store's address).
    pub address: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    latency_ms: AtomicU64,
    connections: Mutex<Vec<AbortHandle>>,
    accepted: AtomicU64,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` on a free local port.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|error| panic!("the proxy cannot listen: {error}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("{error}"));
        let shared = Arc::new(Shared {
            latency_ms: AtomicU64::new(0),
            connections: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
        });
        let acceptor = tokio::spawn(accept(listener, upstream, shared.clone()));
        Self {
            address,
            upstream,
            shared,
            acceptor: Mutex::new(Some(acceptor)),
        }
    }

    /// A proxy in front of the store at `url` (`redis://host:port/…`,
    /// `postgres://user@host:port/db`), and `url` rewritten to go through it.
    pub async fn in_front_of(url: &str) -> (Self, String) {
        let (scheme, rest) = url
            .split_once("://")
            .unwrap_or_else(|| panic!("{url} has no scheme"));
        let (user, rest) = match rest.rsplit_once('@') {
            Some((user, rest)) => (format!("{user}@"), rest),
            None => (String::new(), rest),
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let upstream = tokio::net::lookup_host(authority)
            .await
            .ok()
            .and_then(|mut found| found.find(SocketAddr::is_ipv4))
            .unwrap_or_else(|| panic!("cannot resolve {authority}"));
        let proxy = Self::start(upstream).await;
        let through = format!("{scheme}://{user}{}{tail}", proxy.address);
        (proxy, through)
    }

    /// Closes every open connection and refuses new ones until [`Self::restore`].
    pub fn cut(&self) {
        if let Some(acceptor) = self
            .acceptor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        {
            acceptor.abort();
        }
        for connection in self
            .shared
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .drain(..)
        {
            connection.abort();
        }
    }

    /// Accepts connections on the same address again.
    pub async fn restore(&self) {
        let mut attempts = 0;
        let listener = loop {
            match TcpListener::bind(self.address).await {
                Ok(listener) => break listener,
                Err(error) if attempts < 50 => {
                    attempts += 1;
                    tracing::debug!(%error, "the proxy's port is not free yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("the proxy cannot listen on {} again: {error}", self.address),
            }
        };
        let acceptor = tokio::spawn(accept(listener, self.upstream, self.shared.clone()));
        *self
            .acceptor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(acceptor);
    }

    /// Adds `latency` to every chunk of bytes in each direction, from now on.
    pub fn set_latency(&self, latency: Duration) {
        self.shared
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let latency = shared.clone();
        let connection = tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(
                pipe(client_read, server_write, latency.clone()),
                pipe(server_read, client_write, latency),
            );
        });
        let mut connections = shared
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        connections.retain(|handle| !handle.is_finished());
        connections.push(connection.abort_handle());
    }
}

/// Copies `from` to `to`, each chunk held back by the current latency.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, shared: Arc<Shared>) {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(1024);
    let reader = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            let due =
                Instant::now() + Duration::from_millis(shared.latency_ms.load(Ordering::SeqCst));
            if sender.send((due, buffer[..read].to_vec())).await.is_err() {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = receiver.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

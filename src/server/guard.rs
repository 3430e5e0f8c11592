//! Connection limits: the open-connection cap (with eviction of the least
//! active connection when full) and write timeouts on every connection.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Sleep;

use super::{WRITE_STALL_TIMEOUT, WRITE_TIMEOUT};

/// How often the "connection limit reached" warning may be logged.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// At most this many connections are being closed by the limit at once.
const EVICT_BATCH: usize = 8;

/// One open connection, as the limit sees it.
pub struct ConnState {
    id: u64,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last byte read or written (or accept).
    last_progress: AtomicU64,
    /// Requests of this connection inside the handler right now.
    busy: AtomicUsize,
    /// Chosen to be closed (its descriptor is still open until it drops).
    evicting: AtomicBool,
    kill: Notify,
    conns: Arc<Conns>,
}

impl ConnState {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_progress.store(ms, Ordering::Relaxed);
    }

    /// Mark a request as being handled until the guard drops (such a
    /// connection is never evicted).
    pub fn busy(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.touch();
        BusyGuard(self.clone())
    }

    /// Resolves when the connection limit chose this connection to close.
    pub async fn evicted(&self) {
        self.kill.notified().await;
    }
}

impl Drop for ConnState {
    fn drop(&mut self) {
        self.conns
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        self.conns.freed.notify_waiters();
    }
}

pub struct BusyGuard(Arc<ConnState>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

/// The open connections (weak references: a connection leaves the table when
/// its last handle drops, that is when its descriptor is closed).
pub struct Conns {
    max: usize,
    epoch: Instant,
    next_id: AtomicU64,
    map: Mutex<HashMap<u64, std::sync::Weak<ConnState>>>,
    freed: Notify,
    evicted: AtomicU64,
    waits: AtomicU64,
    last_log: Mutex<Option<Instant>>,
}

impl Conns {
    pub fn new(max: usize) -> Self {
        Conns {
            max: max.max(1),
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            map: Mutex::new(HashMap::new()),
            freed: Notify::new(),
            evicted: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            last_log: Mutex::new(None),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn open(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Connections closed to make room.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Times a new connection had to wait because every connection was busy.
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// Before taking a connection off the listen backlog: true if there is
    /// room. At the limit, the connection that made no progress for the
    /// longest time and has no request in the handler (a slowloris or
    /// slow-reader connection, or an idle keep-alive one) is told to close,
    /// and false is returned: wait for [`Conns::freed`] and ask again. New
    /// connections wait in the kernel's backlog meanwhile, holding no descriptor.
    pub fn make_room(&self) -> bool {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() < self.max {
            return true;
        }
        let live: Vec<Arc<ConnState>> = map.values().filter_map(|w| w.upgrade()).collect();
        drop(map);
        // Close a few at once (the backlog may hold many new connections), never
        // more than EVICT_BATCH in flight.
        let closing = live
            .iter()
            .filter(|c| c.evicting.load(Ordering::Acquire))
            .count();
        let want = EVICT_BATCH
            .min(self.max.div_ceil(8))
            .saturating_sub(closing);
        if want == 0 {
            return false;
        }
        // Snapshot the progress first: it changes under our feet, and a sort key
        // that changes during the sort is not a total order.
        let mut idle: Vec<(u64, &Arc<ConnState>)> = live
            .iter()
            .filter(|c| c.busy.load(Ordering::Acquire) == 0 && !c.evicting.load(Ordering::Acquire))
            .map(|c| (c.last_progress.load(Ordering::Relaxed), c))
            .collect();
        idle.sort_unstable_by_key(|(progress, _)| *progress);
        if idle.is_empty() {
            if closing == 0 {
                self.waits.fetch_add(1, Ordering::Relaxed);
                self.log_full(false);
            }
            return false;
        }
        for (_, c) in idle.into_iter().take(want) {
            c.evicting.store(true, Ordering::Release);
            c.kill.notify_one();
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        self.log_full(true);
        false
    }

    /// A future that resolves when a connection closes; create it (and
    /// `enable` it) before [`Conns::make_room`] so that no close is missed.
    pub fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }

    /// Register a connection just accepted.
    pub fn admit(self: &Arc<Self>) -> Arc<ConnState> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            id,
            epoch: self.epoch,
            last_progress: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            evicting: AtomicBool::new(false),
            kill: Notify::new(),
            conns: self.clone(),
        });
        state.touch();
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::downgrade(&state));
        state
    }

    fn log_full(&self, evicted: bool) {
        let mut last = self.last_log.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!(
            max = self.max,
            evicted = self.evicted(),
            "connection limit reached: {}; raise --web.max-connections if these are legitimate clients (see homelab_monitor_http_connections_evicted_total)",
            if evicted {
                "closing the least active connection to make room"
            } else {
                "every connection is in a request, new ones wait"
            }
        );
    }
}

/// A stream with write timeouts that records progress for the connection limit.
pub struct Guarded<I> {
    io: I,
    state: Arc<ConnState>,
    /// No byte accepted by the kernel since this deadline was armed.
    stall: Option<Pin<Box<Sleep>>>,
    /// The current response burst (first write to completed flush) must end by then.
    burst: Option<Pin<Box<Sleep>>>,
}

impl<I> Guarded<I> {
    pub fn new(io: I, state: Arc<ConnState>) -> Self {
        Guarded {
            io,
            state,
            stall: None,
            burst: None,
        }
    }

    /// Poll the write deadlines (arming them if needed); an error once one passed.
    fn check_deadlines(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let burst = self
            .burst
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
        if burst.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "response not written within the write timeout",
            ));
        }
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL_TIMEOUT)));
        if stall.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading (write stalled)",
            ));
        }
        Ok(())
    }
}

use std::future::Future;

impl<I: AsyncRead + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.touch();
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.state.touch();
                    self.stall = None;
                }
                if self.burst.is_none() {
                    self.burst = Some(Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.check_deadlines(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.state.touch();
                    self.stall = None;
                }
                if self.burst.is_none() {
                    self.burst = Some(Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.check_deadlines(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                // Everything handed to the kernel: the burst is over.
                self.burst = None;
                self.stall = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.check_deadlines(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_shutdown(cx) {
            Poll::Pending => match self.check_deadlines(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_the_limit_the_least_active_idle_connections_are_closed() {
        let conns = Arc::new(Conns::new(3));
        let a = conns.admit();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let b = conns.admit();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let c = conns.admit();
        // `a` is the least active but in a request: never closed; `b` goes.
        let busy = a.busy();
        c.touch();
        assert!(!conns.make_room());
        assert_eq!(conns.evicted(), 1);
        tokio::time::timeout(Duration::from_secs(5), b.evicted())
            .await
            .expect("b was told to close");
        assert!(!a.evicting.load(Ordering::Acquire));
        // Its slot frees only when it is really gone.
        assert!(!conns.make_room(), "b is still open");
        drop(b);
        assert!(conns.make_room());
        assert_eq!(conns.open(), 2);
        // Every connection busy: nobody is closed, new ones wait.
        let d = conns.admit();
        let (_b1, _b2) = (c.busy(), d.busy());
        assert!(!conns.make_room());
        assert_eq!(conns.evicted(), 1);
        assert_eq!(conns.waits(), 1);
        drop(busy);
    }
}

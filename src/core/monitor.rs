//! The extension point: every monitor implements [`Monitor`].
//!
//! A monitor knows nothing of HTTP, the CLI or other monitors. It turns the
//! files/endpoints it watches into a [`Snapshot`] of plain values. The registry
//! wraps each monitor in a single-flight TTL cache and a timeout.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::core::snapshot::Snapshot;

/// Context handed to every collection.
#[derive(Debug, Clone, Copy)]
pub struct CollectContext {
    /// "Now" from the injected clock: use it for ages and expiry, never `SystemTime::now()`.
    pub now: SystemTime,
}

/// A failure of a whole collection (per-target failures live inside the snapshot).
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("collection did not finish within {0:?}")]
    Timeout(Duration),
    #[error("collection task failed: {0}")]
    Panicked(String),
    #[error("{0}")]
    Failed(String),
}

impl MonitorError {
    /// Short, bounded label value for error metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            MonitorError::Timeout(_) => "timeout",
            MonitorError::Panicked(_) => "panic",
            MonitorError::Failed(_) => "failed",
        }
    }
}

/// When a monitor is re-read, retried and given up on: the shared schedule
/// fields of every monitor's config block (`monitor_config!`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    /// How long a collection result is served from cache (`check_interval`).
    pub check_interval: Duration,
    /// How soon to retry when the last collection had failing targets (the
    /// registry caps it at `check_interval`).
    pub retry_interval: Duration,
    /// How long a scrape waits for a collection before serving the last good snapshot.
    pub timeout: Duration,
}

/// One monitor: a named collector with its own re-check period.
#[async_trait]
pub trait Monitor: Send + Sync + 'static {
    /// Estimated bytes the monitor keeps between collections besides its
    /// snapshot (per-target memory: parsed documents, digests, labels), for
    /// `homelab_monitor_retained_bytes`. Called once per collection.
    fn retained_bytes(&self) -> usize {
        0
    }

    /// Stable name, used as the `monitor` label (`terraform_state`, ...).
    fn name(&self) -> &'static str;

    /// Its re-check period, retry interval and timeout (from its config block).
    fn cadence(&self) -> Cadence;

    /// How long a collection result is served from cache (`check_interval`).
    fn check_interval(&self) -> Duration {
        self.cadence().check_interval
    }

    /// How soon to retry when the last collection had failing targets (the
    /// registry caps it at [`Monitor::check_interval`]).
    fn retry_interval(&self) -> Duration {
        self.cadence().retry_interval
    }

    /// How long a scrape waits for a collection before serving the last good snapshot.
    fn timeout(&self) -> Duration {
        self.cadence().timeout
    }

    /// Human description of what is watched, for `--status` and logs.
    fn describe(&self) -> String;

    /// Read every target and build a snapshot. Must not panic on bad input:
    /// per-target errors go into the snapshot (as `*_up 0` and a target status).
    async fn collect(&self, ctx: CollectContext) -> Result<Snapshot, MonitorError>;

    /// Collect until no target read is left running: for one-shot callers
    /// and tests that want every target's values (a scrape never does this).
    /// Each read is bounded by its deadline, and so is this loop.
    async fn collect_complete(&self, ctx: CollectContext) -> Result<Snapshot, MonitorError> {
        let until = std::time::Instant::now() + self.timeout();
        loop {
            let s = self.collect(ctx).await?;
            if s.pending == 0 || std::time::Instant::now() >= until {
                return Ok(s);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

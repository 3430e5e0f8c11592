//! Health checks: the seed's "Health Check Framework".
//!
//! Two ways in:
//! - config: `health_checks:` in `monitoring-config.yaml` ([`config`]), run by
//!   [`HealthMonitor`] on every scrape (each check cached for its `interval`);
//! - library: a [`HealthChecker`] with the seed's shape, `register(name, check)`
//!   and `run_all()`.
//!
//! ```no_run
//! use async_trait::async_trait;
//! use homelab_monitor::monitors::health::{Check, CheckContext, CheckError, HealthChecker};
//!
//! /// A custom check: a few lines.
//! struct Storage;
//!
//! #[async_trait]
//! impl Check for Storage {
//!     fn kind(&self) -> &'static str { "storage" }
//!     async fn run(&self, _ctx: &CheckContext) -> Result<String, CheckError> {
//!         let free = 42; // ask the NAS ...
//!         if free > 10 { Ok(format!("{free}% free")) } else { Err(CheckError::Failed("disk full".into())) }
//!     }
//! }
//!
//! # async fn demo() {
//! let mut checker = HealthChecker::new();
//! checker.register("storage", Storage);
//! checker.register("network", homelab_monitor::monitors::health::checks::TcpCheck::new(
//!     &homelab_monitor::monitors::health::config::TcpCheckConfig { address: "127.0.0.1:22".into() },
//! ).unwrap());
//! for r in checker.run_all().await {
//!     println!("{} ({}): {} in {:?}: {}", r.name, r.kind, if r.success { "ok" } else { "FAILED" }, r.duration, r.message);
//! }
//! # }
//! ```

pub mod checks;
pub mod config;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

use crate::core::monitor::{Cadence, CollectContext, Monitor, MonitorError};
use crate::core::snapshot::{Fact, Health, MetricDef, Snapshot, SnapshotBuilder, TargetStatus};

use self::config::{HealthCheckConfig, HealthChecksConfig};

pub const SUCCESS: MetricDef = MetricDef::gauge(
    "health_check_success",
    "1 if the health check's last run succeeded, 0 if it failed or timed out.",
);
pub const DURATION: MetricDef = MetricDef::gauge(
    "health_check_duration_seconds",
    "Wall time of the health check's last run.",
);
pub const LAST_RUN: MetricDef = MetricDef::gauge(
    "health_check_last_run_timestamp_seconds",
    "When the health check last ran (Unix time); checks run at most once per interval.",
);

/// Why a check failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckError {
    /// The check is misconfigured (bad URL, unreadable CA file...).
    #[error("configuration: {0}")]
    Config(String),
    /// The checked thing is unhealthy or unreachable.
    #[error("{0}")]
    Failed(String),
    /// The run took longer than the check's timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Handed to every run.
#[derive(Debug, Clone, Copy)]
pub struct CheckContext {
    /// "Now" from the injected clock (for ages).
    pub now: SystemTime,
}

/// One kind of health check. Implement it for a custom check.
#[async_trait]
pub trait Check: Send + Sync + 'static {
    /// The `type` label (`http`, `tcp`, ... or your own).
    fn kind(&self) -> &'static str;
    /// Run once: a short human summary on success. Never put secrets in either.
    async fn run(&self, ctx: &CheckContext) -> Result<String, CheckError>;
}

/// The result of one run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CheckResult {
    pub name: String,
    pub kind: &'static str,
    pub success: bool,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    /// The summary on success, the reason on failure.
    pub message: String,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

struct Registered {
    name: String,
    check: Arc<dyn Check>,
    timeout: Duration,
}

/// A set of named checks run together (concurrently, each under its timeout).
#[derive(Default)]
pub struct HealthChecker {
    checks: Vec<Registered>,
}

/// Timeout of checks registered with [`HealthChecker::register`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl HealthChecker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a check under `name` with the default 10s timeout.
    pub fn register(&mut self, name: impl Into<String>, check: impl Check) -> &mut Self {
        self.register_with_timeout(name, check, DEFAULT_TIMEOUT)
    }

    /// Register a check with its own timeout.
    pub fn register_with_timeout(
        &mut self,
        name: impl Into<String>,
        check: impl Check,
        timeout: Duration,
    ) -> &mut Self {
        self.checks.push(Registered {
            name: name.into(),
            check: Arc::new(check),
            timeout,
        });
        self
    }

    /// Names in registration order.
    pub fn names(&self) -> Vec<&str> {
        self.checks.iter().map(|c| c.name.as_str()).collect()
    }

    /// Run every check now (system clock).
    pub async fn run_all(&self) -> Vec<CheckResult> {
        self.run_all_at(SystemTime::now()).await
    }

    /// Run every check with "now" = `now`; results in registration order.
    /// At most [`MAX_CONCURRENT_CHECKS`] run at once.
    pub async fn run_all_at(&self, now: SystemTime) -> Vec<CheckResult> {
        let ctx = CheckContext { now };
        run_bounded(self.checks.iter().collect(), ctx).await
    }
}

/// At most this many checks run at once (each may hold a socket or a child
/// process): thousands of checks neither exhaust the descriptor table (false
/// "Too many open files" failures, a server that cannot accept) nor pin it
/// against a stalling port. Each check's timeout starts when it starts.
pub const MAX_CONCURRENT_CHECKS: usize = 64;

/// Run `checks`, at most [`MAX_CONCURRENT_CHECKS`] at once; results in order.
async fn run_bounded(checks: Vec<&Registered>, ctx: CheckContext) -> Vec<CheckResult> {
    use futures::StreamExt;
    // Futures do nothing until polled: `buffered` starts at most N at a time.
    let runs: Vec<_> = checks.into_iter().map(|c| run_one(c, ctx)).collect();
    futures::stream::iter(runs)
        .buffered(MAX_CONCURRENT_CHECKS)
        .collect()
        .await
}

async fn run_one(c: &Registered, ctx: CheckContext) -> CheckResult {
    let started = Instant::now();
    let check = c.check.clone();
    // Its own task: a panicking custom check becomes a failed result.
    let task = tokio::spawn(async move { check.run(&ctx).await });
    let abort = task.abort_handle();
    let result = match tokio::time::timeout(c.timeout, task).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(CheckError::Failed(format!("check panicked: {e}"))),
        Err(_) => {
            abort.abort();
            Err(CheckError::Timeout(c.timeout))
        }
    };
    let (success, message) = match result {
        Ok(m) => (true, m),
        Err(e) => (false, e.to_string()),
    };
    CheckResult {
        name: c.name.clone(),
        kind: c.check.kind(),
        success,
        duration: started.elapsed(),
        message,
    }
}

/// Build a built-in check from its config entry; `base` resolves relative paths.
pub fn build_check(c: &HealthCheckConfig, base: &Path) -> Result<Arc<dyn Check>, CheckError> {
    if let Some(h) = &c.http {
        return Ok(Arc::new(checks::HttpCheck::new(h, base)?));
    }
    if let Some(t) = &c.tcp {
        return Ok(Arc::new(checks::TcpCheck::new(t)?));
    }
    if let Some(d) = &c.dns {
        return Ok(Arc::new(checks::DnsCheck::new(d)));
    }
    if let Some(d) = &c.disk {
        return Ok(Arc::new(checks::DiskCheck::new(d, base)));
    }
    if let Some(f) = &c.file_age {
        return Ok(Arc::new(checks::FileAgeCheck::new(f, base)));
    }
    if let Some(cmd) = &c.command {
        return Ok(Arc::new(checks::CommandCheck::new(cmd, base, c.timeout.0)));
    }
    Err(CheckError::Config(
        "needs one of http, tcp, dns, disk, file_age, command".into(),
    ))
}

/// A configured check that could not be built (e.g. unreadable CA file): it
/// fails every run with the same message, so it shows up as a failing check.
struct Broken {
    kind: &'static str,
    error: CheckError,
}

#[async_trait]
impl Check for Broken {
    fn kind(&self) -> &'static str {
        self.kind
    }
    async fn run(&self, _ctx: &CheckContext) -> Result<String, CheckError> {
        Err(self.error.clone())
    }
}

struct Scheduled {
    reg: Registered,
    interval: Duration,
}

/// The monitor behind `health_checks:`: runs each check at most once per its
/// `interval` and exports `health_check_success` / `health_check_duration_seconds`.
pub struct HealthMonitor {
    checks: Arc<Vec<Scheduled>>,
    targets: crate::core::targets::Targets<(), CheckRead>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl HealthMonitor {
    pub fn new(cfg: &HealthChecksConfig, base: &Path, interval_override: Option<Duration>) -> Self {
        let checks = cfg
            .checks
            .iter()
            .map(|c| {
                let check = build_check(c, base).unwrap_or_else(|error| {
                    Arc::new(Broken {
                        kind: c.kinds().first().copied().unwrap_or("unknown"),
                        error,
                    })
                });
                Scheduled {
                    reg: Registered {
                        name: c.name.clone(),
                        check,
                        timeout: c.timeout.0,
                    },
                    interval: interval_override.unwrap_or(c.interval.0),
                }
            })
            .collect();
        HealthMonitor {
            checks: Arc::new(checks),
            targets: crate::core::targets::Targets::new(),
            permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_CHECKS)),
        }
    }
}

/// Snapshot of a set of results (also used by custom checkers that export).
pub fn snapshot(results: &[(CheckResult, SystemTime)]) -> Snapshot {
    let mut b = SnapshotBuilder::new();
    b.declare(&SUCCESS).declare(&DURATION).declare(&LAST_RUN);
    for (r, at) in results {
        let labels = vec![("check", r.name.clone()), ("type", r.kind.to_string())];
        b.gauge_owned(&SUCCESS, labels.clone(), if r.success { 1.0 } else { 0.0 });
        b.gauge_owned(&DURATION, labels.clone(), r.duration.as_secs_f64());
        let ts = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        b.gauge_owned(&LAST_RUN, labels, ts);
        b.target(TargetStatus {
            target: format!("{} ({})", r.name, r.kind),
            health: if r.success {
                Health::Ok
            } else {
                Health::Findings
            },
            summary: if r.success {
                format!("ok: {}", r.message)
            } else {
                "failing".into()
            },
            error: (!r.success).then(|| r.message.clone()),
            stale: false,
            facts: vec![Fact::Check {
                item: r.name.clone(),
                kind: r.kind.to_string(),
                success: r.success,
                duration_seconds: r.duration.as_secs_f64(),
            }]
            .into(),
        });
    }
    b.build()
}

#[async_trait]
impl Monitor for HealthMonitor {
    fn name(&self) -> &'static str {
        "health_checks"
    }

    /// The shortest check interval (each check keeps its own schedule);
    /// retried at that interval; the timeout covers every wave of checks.
    fn cadence(&self) -> Cadence {
        let check_interval = self
            .checks
            .iter()
            .map(|c| c.interval)
            .min()
            .unwrap_or(Duration::from_secs(60));
        // Checks run in waves of MAX_CONCURRENT_CHECKS.
        let waves = self.checks.len().div_ceil(MAX_CONCURRENT_CHECKS).max(1);
        let timeout = self
            .checks
            .iter()
            .map(|c| c.reg.timeout)
            .max()
            .unwrap_or(DEFAULT_TIMEOUT)
            .saturating_mul(u32::try_from(waves).unwrap_or(u32::MAX))
            + Duration::from_secs(5);
        Cadence {
            check_interval,
            retry_interval: check_interval,
            timeout,
        }
    }

    fn describe(&self) -> String {
        let names: Vec<&str> = self.checks.iter().map(|c| c.reg.name.as_str()).collect();
        format!("{} health check(s): {}", names.len(), names.join(", "))
    }

    async fn collect(&self, ctx: CollectContext) -> Result<Snapshot, MonitorError> {
        // The monitors' scheduler: each check is a target with its own
        // interval and deadline; a slow check never delays the others.
        let deadline = self.timeout();
        // Issue 19: this replica's checks (by name); the others are another's.
        let shard = crate::core::shard::current();
        let items: Vec<(String, usize, crate::core::targets::Schedule)> = self
            .checks
            .iter()
            .enumerate()
            .filter(|(_, c)| shard.owns(&c.reg.name))
            .map(|(i, c)| {
                let schedule = crate::core::targets::Schedule {
                    check_interval: c.interval,
                    retry_interval: c.interval,
                    deadline,
                    wait: crate::core::targets::PATIENCE,
                };
                (c.reg.name.clone(), i, schedule)
            })
            .collect();
        let checks = self.checks.clone();
        let permits = self.permits.clone();
        let cctx = CheckContext { now: ctx.now };
        let reads = self
            .targets
            .collect_async_each(
                crate::core::targets::PATIENCE,
                ctx.now,
                items,
                move |i, ()| {
                    let (checks, permits) = (checks.clone(), permits.clone());
                    async move {
                        // At most MAX_CONCURRENT_CHECKS at once; each check's
                        // timeout starts when it starts.
                        let _permit = permits.acquire_owned().await.ok();
                        (CheckRead(run_one(&checks[i].reg, cctx).await), ())
                    }
                },
            )
            .await;
        let pending = reads.iter().filter(|r| r.pending).count();
        let results: Vec<(CheckResult, SystemTime)> = reads
            .into_iter()
            .filter(|r| !r.placeholder)
            .map(|r| (r.value.0, r.read_at))
            .collect();
        let mut snap = snapshot(&results);
        // One last-read series per check read by this replica: also what
        // homelab_monitor_shard_targets counts (issue 19).
        let mut fresh = SnapshotBuilder::new();
        for (r, at) in &results {
            crate::core::targets::emit_freshness(&mut fresh, "health_checks", &r.name, *at, false);
        }
        snap.families.extend(fresh.build().families);
        snap.pending = pending;
        Ok(snap)
    }
}

/// One check's result as kept between runs.
#[derive(Debug, Clone)]
struct CheckRead(CheckResult);

impl crate::core::targets::TargetValue for CheckRead {
    fn healthy(&self) -> bool {
        self.0.success
    }

    fn timed_out(last: Option<&Self>, label: &str, waited: Duration) -> Self {
        CheckRead(CheckResult {
            name: label.to_string(),
            kind: last.map(|l| l.0.kind).unwrap_or("check"),
            success: false,
            duration: waited,
            message: CheckError::Timeout(waited).to_string(),
        })
    }

    fn pending(label: &str) -> Self {
        CheckRead(CheckResult {
            name: label.to_string(),
            kind: "check",
            success: false,
            duration: Duration::ZERO,
            message: "first run still running".into(),
        })
    }
}

/// The monitor for a config block, or `None` when disabled or empty.
pub fn monitor(
    cfg: &HealthChecksConfig,
    base: &Path,
    interval_override: Option<Duration>,
) -> Option<Arc<dyn Monitor>> {
    if !cfg.enabled || cfg.checks.is_empty() {
        return None;
    }
    Some(Arc::new(HealthMonitor::new(cfg, base, interval_override)))
}

//! ZFS scrub monitor: when each pool was last scrubbed, with how many errors,
//! and its state, from `zpool status` output a cron job writes to a file.
//!
//! The exporter never runs `zpool` (no root, no `/dev/zfs` in its container);
//! a job on the host writes the text, atomically:
//!
//! ```sh
//! */10 * * * * zpool status > /var/lib/homelab-monitor/zpool-status.txt.tmp && mv /var/lib/homelab-monitor/zpool-status.txt.tmp /var/lib/homelab-monitor/zpool-status.txt
//! ```
//!
//! ```yaml
//! custom_monitors:
//!   zfs_scrub:
//!     status_files: ["/var/lib/homelab-monitor/zpool-status.txt"]
//!     max_scrub_age: "35d"
//! ```
//!
//! Each file is one target on the per-target schedule ([`crate::targets`]);
//! [`status::parse`] is a pure parser. The `scan:` line shows only the latest
//! scan, so while a scrub runs (or after a resilver) the last finished scrub
//! seen in an earlier read of that file is exported.

pub mod config;
pub mod status;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::clock::unix_seconds;
use crate::monitor::{CollectContext, Monitor, MonitorError};
use crate::monitors::kind::{BuildContext, ConfigIssue, MonitorKind};
use crate::snapshot::{Health, MetricDef, Snapshot, SnapshotBuilder, TargetStatus};

pub use self::config::ZfsConfig;
use self::status::{PoolStatus, Scan};

pub const FILE_UP: MetricDef = MetricDef::gauge("zfs_status_file_up", "1 if the zpool status file was read and parsed on the last check, 0 if not (then no pool series come from it).");
pub const FILE_TS: MetricDef = MetricDef::gauge("zfs_status_file_timestamp_seconds", "When the zpool status file was last written (its mtime): the cron job's freshness.");
pub const HEALTH: MetricDef = MetricDef::gauge("zfs_pool_health", "1 for the pool's current state (online, degraded, faulted, offline, removed, unavail, suspended), 0 for the others.");
pub const SCRUB_LAST: MetricDef = MetricDef::gauge("zfs_pool_scrub_last_timestamp_seconds", "When the pool's last finished scrub ended; 0 if it was never scrubbed (so age alerts fire).");
pub const SCRUB_ERRORS: MetricDef = MetricDef::gauge("zfs_pool_scrub_errors", "Errors the pool's last finished scrub found.");
pub const SCRUB_RUNNING: MetricDef = MetricDef::gauge("zfs_pool_scrub_in_progress", "1 while a scrub of the pool is running or paused.");
pub const SCRUB_MAX_AGE: MetricDef = MetricDef::gauge("zfs_pool_scrub_max_age_seconds", "The configured max_scrub_age: an older last scrub is a finding.");

const METRICS: [&MetricDef; 7] = [
    &FILE_UP,
    &FILE_TS,
    &HEALTH,
    &SCRUB_LAST,
    &SCRUB_ERRORS,
    &SCRUB_RUNNING,
    &SCRUB_MAX_AGE,
];

/// States `zpool status` prints, as `state` label values.
const STATES: [&str; 7] = [
    "online",
    "degraded",
    "faulted",
    "offline",
    "removed",
    "unavail",
    "suspended",
];

/// Largest status file read (`zpool status` of a big pool is a few KiB).
const MAX_FILE_SIZE: u64 = 4 << 20;

/// Registration of the ZFS scrub monitor (`custom_monitors.zfs_scrub`).
pub struct ZfsKind;

impl MonitorKind for ZfsKind {
    const KEY: &'static str = "zfs_scrub";
    type Config = ZfsConfig;

    fn validate(cfg: &ZfsConfig) -> Result<(), ConfigIssue> {
        config::validate(cfg)
    }

    fn build(cfg: ZfsConfig, ctx: &BuildContext<'_>) -> Arc<dyn Monitor> {
        Arc::new(ZfsMonitor::new(cfg, ctx.base_dir.to_path_buf()))
    }
}

/// One pool as exported: its status and the last finished scrub known.
#[derive(Debug, Clone, PartialEq)]
struct PoolView {
    status: PoolStatus,
    /// (end, errors) of the last finished scrub: this read's, or an earlier
    /// read's while the scan line shows something else.
    last_scrub: Option<(f64, u64)>,
}

/// One read of one file.
#[derive(Debug, Clone)]
struct FileRead {
    pools: Result<Vec<PoolView>, String>,
    mtime: Option<f64>,
}

impl crate::targets::TargetValue for FileRead {
    fn healthy(&self) -> bool {
        self.pools.is_ok()
    }

    fn timed_out(_last: Option<&Self>, label: &str, waited: Duration) -> Self {
        FileRead {
            pools: Err(format!("reading {label} did not finish within {waited:.1?}")),
            mtime: None,
        }
    }
}

/// Kept per file between reads: the last finished scrub of each pool.
#[derive(Default)]
struct Memory {
    last_scrub: HashMap<String, (f64, u64)>,
}

fn read_file(path: &Path, label: &str, tz: &jiff::tz::TimeZone, mem: &mut Memory) -> FileRead {
    use std::io::Read;
    let mut mtime = None;
    let text = std::fs::File::open(path)
        .and_then(|f| {
            mtime = f.metadata().ok().and_then(|m| m.modified().ok()).map(unix_seconds);
            let mut text = String::new();
            f.take(MAX_FILE_SIZE + 1).read_to_string(&mut text)?;
            Ok(text)
        })
        .map_err(|e| format!("cannot read {label}: {e}"));
    let pools = text.and_then(|text| {
        if text.len() as u64 > MAX_FILE_SIZE {
            return Err(format!("{label} is larger than {MAX_FILE_SIZE} bytes: not zpool status output"));
        }
        status::parse(&text, tz).map_err(|e| format!("{label}: {e}"))
    });
    let pools = pools.map(|pools| {
        pools
            .into_iter()
            .map(|status| {
                if let Scan::Finished { end, errors } = status.scan {
                    mem.last_scrub.insert(status.name.clone(), (end, errors));
                }
                let last_scrub = match status.scan {
                    Scan::Never => None,
                    _ => mem.last_scrub.get(&status.name).copied(),
                };
                PoolView { status, last_scrub }
            })
            .collect()
    });
    FileRead { pools, mtime }
}

/// The ZFS scrub monitor.
pub struct ZfsMonitor {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ZfsConfig,
    base: PathBuf,
    tz: jiff::tz::TimeZone,
    files: crate::targets::Targets<Memory, FileRead>,
}

impl ZfsMonitor {
    /// `base`: the folder `status_files` are relative to (the config file's folder).
    pub fn new(cfg: ZfsConfig, base: PathBuf) -> Self {
        let tz = cfg
            .timezone
            .as_deref()
            .and_then(|z| jiff::tz::TimeZone::get(z.trim()).ok())
            .unwrap_or_else(jiff::tz::TimeZone::system);
        ZfsMonitor {
            inner: Arc::new(Inner {
                cfg,
                base,
                tz,
                files: crate::targets::Targets::new(),
            }),
        }
    }
}

impl Inner {
    async fn collect(self: Arc<Self>, now: SystemTime) -> Snapshot {
        let schedule = crate::targets::Schedule {
            check_interval: self.cfg.check_interval.0,
            retry_interval: self.cfg.retry_interval.0,
            deadline: self.cfg.timeout.0.mul_f64(0.9),
        };
        let items: Vec<(String, String)> = self
            .cfg
            .status_files
            .iter()
            .map(|f| (f.clone(), f.clone()))
            .collect();
        let reader = self.clone();
        let reads = self
            .files
            .collect(schedule, now, items, move |file, mem| {
                read_file(&reader.base.join(&file), &file, &reader.tz, mem)
            })
            .await;
        let now_s = unix_seconds(now);
        let max_age = self.cfg.max_scrub_age.0.as_secs_f64();
        let mut b = SnapshotBuilder::new();
        for def in METRICS {
            b.declare(def);
        }
        let mut fresh = SnapshotBuilder::new();
        let mut seen: HashMap<String, &str> = HashMap::new();
        for (file, r) in self.cfg.status_files.iter().zip(&reads) {
            let label = [("file", file.as_str())];
            if let Some(t) = r.value.mtime {
                b.gauge(&FILE_TS, &label, t);
            }
            crate::targets::emit_freshness(&mut fresh, "zfs_scrub", file, r.read_at, false);
            let pools = match &r.value.pools {
                Ok(p) => p,
                Err(e) => {
                    b.gauge(&FILE_UP, &label, 0.0);
                    b.target(TargetStatus {
                        target: file.clone(),
                        health: Health::Error,
                        summary: "zpool status file cannot be read".into(),
                        error: Some(e.clone()),
                        stale: false,
                    });
                    continue;
                }
            };
            b.gauge(&FILE_UP, &label, 1.0);
            let mut findings = Vec::new();
            let mut error = None;
            for p in pools {
                let name = p.status.name.as_str();
                if let Some(other) = seen.insert(name.to_string(), file) {
                    error = Some(format!(
                        "pool {name} is also in {other}: each pool must be in one file"
                    ));
                    continue;
                }
                findings.extend(emit_pool(&mut b, p, max_age, now_s));
            }
            let summary = format!("{} pools", pools.len());
            let health = match (&error, findings.is_empty()) {
                (Some(_), _) => Health::Error,
                (None, true) => Health::Ok,
                (None, false) => Health::Findings,
            };
            let summary = if findings.is_empty() {
                summary
            } else {
                format!("{summary}: {}", findings.join(", "))
            };
            b.target(TargetStatus {
                target: file.clone(),
                health,
                summary,
                error,
                stale: false,
            });
        }
        let mut snap = b.build();
        snap.families.extend(fresh.build().families);
        snap
    }
}

/// A pool's series; returns its findings.
fn emit_pool(b: &mut SnapshotBuilder, p: &PoolView, max_age: f64, now: f64) -> Vec<String> {
    let name = p.status.name.as_str();
    let pool = [("pool", name)];
    let state = p.status.state.to_ascii_lowercase();
    for s in STATES {
        let v = if s == state { 1.0 } else { 0.0 };
        b.gauge(&HEALTH, &[("pool", name), ("state", s)], v);
    }
    let running = matches!(p.status.scan, Scan::InProgress { .. });
    b.gauge(&SCRUB_RUNNING, &pool, if running { 1.0 } else { 0.0 });
    b.gauge(&SCRUB_MAX_AGE, &pool, max_age);
    let mut findings = Vec::new();
    if state != "online" {
        findings.push(format!("{name} is {}", p.status.state));
    }
    match (p.last_scrub, &p.status.scan) {
        (Some((end, errors)), _) => {
            b.gauge(&SCRUB_LAST, &pool, end);
            b.gauge(&SCRUB_ERRORS, &pool, errors as f64);
            if errors > 0 {
                findings.push(format!("{name}: last scrub found {errors} errors"));
            }
            if now - end > max_age && !running {
                findings.push(format!("{name}: last scrub is older than max_scrub_age"));
            }
        }
        (None, Scan::Never) => {
            b.gauge(&SCRUB_LAST, &pool, 0.0);
            findings.push(format!("{name} was never scrubbed"));
        }
        // Running, canceled or resilvered, and no finished scrub seen yet:
        // when the last one ended is unknown, so it is not exported.
        (None, _) if running => {}
        (None, _) => findings.push(format!("{name}: last finished scrub unknown")),
    }
    findings
}

#[async_trait]
impl Monitor for ZfsMonitor {
    fn name(&self) -> &'static str {
        "zfs_scrub"
    }

    fn check_interval(&self) -> Duration {
        self.inner.cfg.check_interval.0
    }

    fn retry_interval(&self) -> Duration {
        self.inner.cfg.retry_interval.0
    }

    fn timeout(&self) -> Duration {
        self.inner.cfg.timeout.0
    }

    fn describe(&self) -> String {
        format!(
            "zfs scrub: {} (under {})",
            self.inner.cfg.status_files.join(", "),
            self.inner.base.display()
        )
    }

    async fn collect(&self, ctx: CollectContext) -> Result<Snapshot, MonitorError> {
        Ok(self.inner.clone().collect(ctx.now).await)
    }
}

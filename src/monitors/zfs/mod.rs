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
//! Each file is one target on the per-target schedule ([`crate::core::targets`]);
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

use crate::core::clock::unix_seconds;
use crate::core::monitor::{Cadence, CollectContext, Monitor, MonitorError};
use crate::monitors::kind::{BuildContext, ConfigIssue, MonitorKind};
use crate::core::snapshot::{Fact, Health, MetricDef, Snapshot, SnapshotBuilder, TargetStatus};

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

impl crate::core::targets::TargetValue for FileRead {
    fn healthy(&self) -> bool {
        self.pools.is_ok()
    }

    fn timed_out(_last: Option<&Self>, label: &str, waited: Duration) -> Self {
        FileRead {
            pools: Err(format!("reading {label} did not finish within {waited:.1?}")),
            mtime: None,
        }
    }

    fn pending(_label: &str) -> Self {
        FileRead {
            pools: Ok(Vec::new()),
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
    // Regular files only (a FIFO must not hold a read thread), checked on the descriptor.
    let text = crate::core::safe_open::open(path)
        .and_then(|f| {
            mtime = f.metadata().ok().and_then(|m| m.modified().ok()).map(unix_seconds);
            let mut bytes = Vec::new();
            f.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes)?;
            Ok(bytes)
        })
        .map_err(|e| format!("cannot read {label}: {e}"));
    let pools = text.and_then(|bytes| {
        if bytes.len() as u64 > MAX_FILE_SIZE {
            return Err(format!(
                "{label} is larger than {MAX_FILE_SIZE} bytes: not zpool status output"
            ));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("{label} is not text: not zpool status output"))?;
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
    files: crate::core::targets::Targets<Memory, FileRead>,
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
                files: crate::core::targets::Targets::new(),
            }),
        }
    }
}

/// The status files `shard` reads and exports: sharded by the path as configured.
pub fn owned_files(files: &[String], shard: crate::core::shard::Shard) -> Vec<&String> {
    crate::core::shard::owned(shard, files, |f| f.as_str())
}

impl Inner {
    async fn collect(self: Arc<Self>, now: SystemTime) -> Snapshot {
        let schedule = crate::core::targets::Schedule::for_monitor(
            self.cfg.check_interval.0,
            self.cfg.retry_interval.0,
            self.cfg.timeout.0,
        );
        // Issue 19: this replica's status files (by their path as configured).
        let files = owned_files(&self.cfg.status_files, crate::core::shard::current());
        let items: Vec<(String, String)> = files
            .iter()
            .map(|f| ((*f).clone(), (*f).clone()))
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
        let mut pending = 0;
        for (file, r) in files.iter().copied().zip(&reads) {
            pending += usize::from(r.pending);
            if r.placeholder {
                b.target(TargetStatus {
                    target: file.clone(),
                    health: Health::Unchecked,
                    summary: "first read still running".into(),
                    error: None,
                    stale: false,
                    facts: Vec::new().into(),
                });
                continue;
            }
            let label = [("file", file.as_str())];
            if let Some(t) = r.value.mtime {
                b.gauge(&FILE_TS, &label, t);
            }
            crate::core::targets::emit_freshness(&mut fresh, "zfs_scrub", file, r.read_at, false);
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
                        facts: Vec::new().into(),
                    });
                    continue;
                }
            };
            b.gauge(&FILE_UP, &label, 1.0);
            let mut findings = Vec::new();
            let mut facts = Vec::new();
            let mut error = None;
            for p in pools {
                let name = p.status.name.as_str();
                if let Some(other) = seen.insert(name.to_string(), file) {
                    error = Some(format!(
                        "pool {name} is also in {other}: each pool must be in one file"
                    ));
                    continue;
                }
                let (f, pool_facts) = emit_pool(&mut b, p, max_age, now_s);
                findings.extend(f);
                facts.extend(pool_facts);
            }
            let summary = match pools.len() {
                1 => "1 pool".to_string(),
                n => format!("{n} pools"),
            };
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
                facts: facts.into(),
            });
        }
        let mut snap = b.build();
        snap.families.extend(fresh.build().families);
        snap.pending = pending;
        snap
    }
}

/// A pool's series; returns its findings and the facts the CLI and the status
/// page show (scrub freshness, findings other than the scrub's age).
fn emit_pool(
    b: &mut SnapshotBuilder,
    p: &PoolView,
    max_age: f64,
    now: f64,
) -> (Vec<String>, Vec<Fact>) {
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
    let mut facts = Vec::new();
    let finding = |detail: String| Fact::Finding {
        kind: "zfs pool".into(),
        subject: name.to_string(),
        detail,
        counted: true,
    };
    if state != "online" {
        findings.push(format!("{name} is {}", p.status.state));
        facts.push(finding(format!("the pool is {}", p.status.state)));
    }
    // A running scrub is not late: its age is checked again when it ends.
    let fresh = |last: Option<f64>| Fact::Freshness {
        item: format!("pool {name} scrub"),
        last_success: last.map(|t| t.floor() as i64),
        max_age_seconds: (!running).then_some(max_age as i64),
    };
    match (p.last_scrub, &p.status.scan) {
        (Some((end, errors)), _) => {
            b.gauge(&SCRUB_LAST, &pool, end);
            b.gauge(&SCRUB_ERRORS, &pool, errors as f64);
            facts.push(fresh(Some(end)));
            if errors > 0 {
                findings.push(format!("{name}: last scrub found {errors} errors"));
                facts.push(finding(format!("the last scrub found {errors} errors")));
            }
            if now - end > max_age && !running {
                findings.push(format!("{name}: last scrub is older than max_scrub_age"));
            }
        }
        (None, Scan::Never) => {
            b.gauge(&SCRUB_LAST, &pool, 0.0);
            findings.push(format!("{name} was never scrubbed"));
            facts.push(fresh(None));
        }
        // Running, canceled or resilvered, and no finished scrub seen yet:
        // when the last one ended is unknown, so it is not exported.
        (None, _) if running => {}
        (None, _) => {
            findings.push(format!("{name}: last finished scrub unknown"));
            facts.push(finding("when the last finished scrub ended is unknown".into()));
        }
    }
    (findings, facts)
}

#[async_trait]
impl Monitor for ZfsMonitor {
    fn name(&self) -> &'static str {
        "zfs_scrub"
    }

    fn cadence(&self) -> Cadence {
        self.inner.cfg.cadence()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::parse;

    /// Issue 19: two shards of one config read disjoint sets of status files
    /// whose union is every file.
    #[test]
    fn shards_partition_the_status_files() {
        use crate::core::shard::Shard;
        let files: Vec<String> = (0..24).map(|i| format!("/var/lib/zfs/host-{i:02}.txt")).collect();
        let own = |s: Shard| -> Vec<String> { owned_files(&files, s).into_iter().cloned().collect() };
        assert_eq!(own(Shard::default()), files);
        let (a, b) = (own(Shard::new(0, 2).unwrap()), own(Shard::new(1, 2).unwrap()));
        assert!(!a.is_empty() && !b.is_empty(), "{a:?} {b:?}");
        assert!(a.iter().all(|f| !b.contains(f)), "{a:?} {b:?}");
        let mut union = [a, b].concat();
        union.sort();
        assert_eq!(union, files);
    }

    const TANK: &str = "  pool: tank\n state: ONLINE\n  scan: scrub repaired 0B in 00:12:34 with 0 errors on Sun Nov  8 00:36:35 2026\nconfig:\n\n\tNAME        STATE     READ WRITE CKSUM\n\ttank        ONLINE       0     0     0\n\t  mirror-0  ONLINE       0     0     0\n\t    sda     ONLINE       0     0     0\n\t    sdb     ONLINE       0     0     0\n\nerrors: No known data errors\n";
    const TANK_SCRUBBING: &str = "  pool: tank\n state: ONLINE\n  scan: scrub in progress since Sun Dec  6 00:24:01 2026\n\t1.23T scanned at 1.02G/s, 456G issued at 380M/s, 2.50T total\n\t0B repaired, 17.83% done, 01:34:12 to go\nconfig:\n\n\tNAME        STATE     READ WRITE CKSUM\n\ttank        ONLINE       0     0     0\n\nerrors: No known data errors\n";
    const BACKUP_DEGRADED: &str = "  pool: backup\n state: DEGRADED\nstatus: One or more devices could not be used because the label is missing or\n\tinvalid.\n  scan: none requested\nconfig:\n\n\tNAME      STATE     READ WRITE CKSUM\n\tbackup    DEGRADED     0     0     0\n\t  sdc     UNAVAIL      0     0     0\n\nerrors: No known data errors\n";

    fn ts(s: &str) -> f64 {
        s.parse::<jiff::Timestamp>().unwrap().as_second() as f64
    }

    #[test]
    fn config_loads_with_defaults_and_errors_name_file_line_and_key() {
        let f = parse(
            "custom_monitors:\n  zfs_scrub:\n    status_files: [zpool-status.txt]\n    timezone: UTC\n",
            Path::new("cfg.yaml"),
        )
        .unwrap();
        let z = f.custom_monitors.zfs_scrub.unwrap();
        assert!(z.enabled);
        assert_eq!(z.status_files, vec!["zpool-status.txt".to_string()]);
        assert_eq!(z.check_interval.0, Duration::from_secs(300));
        assert_eq!(z.retry_interval.0, Duration::from_secs(15));
        assert_eq!(z.max_scrub_age.0, Duration::from_secs(35 * 86400));
        // The shared schedule fields are refused or accepted like any monitor's.
        let e = parse(
            "custom_monitors:\n  zfs_scrub:\n    status_files: [a]\n    max_scrub_ag: 30d\n",
            Path::new("cfg.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("cfg.yaml, line 4"), "{e}");
        assert!(e.contains("custom_monitors.zfs_scrub"), "{e}");
        assert!(e.contains("did you mean `max_scrub_age`?"), "{e}");
        let e = parse(
            "custom_monitors:\n  zfs_scrub:\n    status_files: [a]\n    check_interval: 0s\n",
            Path::new("cfg.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("key `custom_monitors.zfs_scrub.check_interval`")
                && e.contains("line 4"),
            "{e}"
        );
        let e = parse(
            "custom_monitors:\n  zfs_scrub:\n    status_files: [a]\n    timezone: Mars/Base\n",
            Path::new("cfg.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown time zone") && e.contains("line 4"), "{e}");
    }

    #[tokio::test]
    async fn exports_scrub_age_errors_and_state_per_pool() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nas.txt"), TANK).unwrap();
        std::fs::write(dir.path().join("backup.txt"), BACKUP_DEGRADED).unwrap();
        std::fs::write(dir.path().join("garbage.txt"), "Segmentation fault\n").unwrap();
        let cfg = parse(
            "custom_monitors:\n  zfs_scrub:\n    status_files: [nas.txt, backup.txt, garbage.txt, missing.txt]\n    timezone: UTC\n    max_scrub_age: 7d\n",
            Path::new("cfg.yaml"),
        )
        .unwrap()
        .custom_monitors
        .zfs_scrub
        .unwrap();
        let m = ZfsMonitor::new(cfg, dir.path().to_path_buf());
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(ts("2026-11-10T00:00:00Z") as u64);
        let snap = m.collect_complete(CollectContext { now }).await.unwrap();
        let v = |name: &str, labels: &[(&str, &str)]| snap.value(name, labels);
        let tank = [("pool", "tank")];
        assert_eq!(
            v("zfs_pool_scrub_last_timestamp_seconds", &tank),
            Some(ts("2026-11-08T00:36:35Z"))
        );
        assert_eq!(v("zfs_pool_scrub_errors", &tank), Some(0.0));
        assert_eq!(v("zfs_pool_scrub_in_progress", &tank), Some(0.0));
        assert_eq!(v("zfs_pool_scrub_max_age_seconds", &tank), Some(7.0 * 86400.0));
        assert_eq!(v("zfs_pool_health", &[("pool", "tank"), ("state", "online")]), Some(1.0));
        assert_eq!(v("zfs_pool_health", &[("pool", "tank"), ("state", "degraded")]), Some(0.0));
        // Never scrubbed: 0, so an age alert fires; degraded is not online.
        let backup = [("pool", "backup")];
        assert_eq!(v("zfs_pool_scrub_last_timestamp_seconds", &backup), Some(0.0));
        assert_eq!(v("zfs_pool_health", &[("pool", "backup"), ("state", "online")]), Some(0.0));
        assert_eq!(v("zfs_pool_health", &[("pool", "backup"), ("state", "degraded")]), Some(1.0));
        // Unreadable or unparseable files are down, never an empty clean.
        assert_eq!(v("zfs_status_file_up", &[("file", "nas.txt")]), Some(1.0));
        assert_eq!(v("zfs_status_file_up", &[("file", "garbage.txt")]), Some(0.0));
        assert_eq!(v("zfs_status_file_up", &[("file", "missing.txt")]), Some(0.0));
        assert!(v("zfs_status_file_timestamp_seconds", &[("file", "nas.txt")]).is_some());
        let health: Vec<(&str, Health)> = snap
            .targets
            .iter()
            .map(|t| (t.target.as_str(), t.health))
            .collect();
        assert_eq!(
            health,
            vec![
                ("nas.txt", Health::Ok),
                ("backup.txt", Health::Findings),
                ("garbage.txt", Health::Error),
                ("missing.txt", Health::Error),
            ]
        );
        assert_eq!(snap.targets[0].summary, "1 pool");
        assert!(snap.targets[1].summary.contains("backup was never scrubbed"), "{:?}", snap.targets[1]);

        // Its facts reach `--status` and the status page with no code for
        // this monitor outside this folder.
        let entries = [("zfs_scrub", &snap, false)];
        let r = crate::cli::report::snapshot_report(&entries, now, crate::cli::report::Layout::Overview);
        let text = r.render(crate::cli::report::ReportFormat::Table);
        assert!(text.contains("Freshness (oldest first)"), "{text}");
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no {needle} in {text}"))
                .to_string()
        };
        // Never scrubbed: late, listed first; tank's scrub 47h old: ok.
        assert!(line("pool backup scrub").contains("never") && line("pool backup scrub").ends_with("late"), "{text}");
        assert!(line("pool tank scrub").contains("47h 23m") && line("pool tank scrub").ends_with("ok"), "{text}");
        assert!(text.find("pool backup scrub") < text.find("pool tank scrub"), "{text}");
        assert!(line("the pool is DEGRADED").contains("backup.txt"), "{text}");
        // Findings: backup.txt's never-scrubbed pool and its state; errors: two files.
        assert_eq!((r.findings, r.errors, r.exit_code()), (2, 2, 1), "{text}");
        let p = crate::server::status_page::panels(&entries, now);
        let items: Vec<(&str, bool)> = p.freshness.iter().map(|f| (f.item.as_str(), f.late)).collect();
        assert_eq!(items, [("pool backup scrub", true), ("pool tank scrub", false)]);
        assert!(p.freshness.iter().all(|f| f.monitor == "zfs_scrub"));
        assert_eq!(p.findings.len(), 1, "{:?}", p.findings);
        assert_eq!(p.findings[0].subject, "backup");
    }

    // A FIFO (or any non-regular file) is an error at once, never a read
    // thread blocked until a writer shows up.
    #[test]
    fn a_fifo_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo.txt");
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("SKIP a_fifo_is_an_error_not_a_hang: mkfifo is not available");
            return;
        }
        let r = read_file(&path, "fifo.txt", &jiff::tz::TimeZone::UTC, &mut Memory::default());
        let e = r.pools.unwrap_err();
        assert!(e.starts_with("cannot read fifo.txt"), "{e}");
    }

    // `scan:` shows only the latest scan: while a scrub runs, the last
    // finished one seen in this file is kept.
    #[test]
    fn a_running_scrub_keeps_the_last_finished_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nas.txt");
        let mut mem = Memory::default();
        let tz = jiff::tz::TimeZone::UTC;
        std::fs::write(&path, TANK_SCRUBBING).unwrap();
        let first = read_file(&path, "nas.txt", &tz, &mut mem).pools.unwrap();
        assert_eq!(first[0].last_scrub, None);
        std::fs::write(&path, TANK).unwrap();
        read_file(&path, "nas.txt", &tz, &mut mem).pools.unwrap();
        std::fs::write(&path, TANK_SCRUBBING).unwrap();
        let again = read_file(&path, "nas.txt", &tz, &mut mem).pools.unwrap();
        assert_eq!(again[0].last_scrub, Some((ts("2026-11-08T00:36:35Z"), 0)));
        let mut b = SnapshotBuilder::new();
        let now = ts("2026-12-06T01:00:00Z");
        let (findings, facts) = emit_pool(&mut b, &again[0], 86400.0 * 35.0, now);
        assert!(findings.is_empty(), "{findings:?}");
        // Older than max_scrub_age, but running: not late.
        assert!(facts.iter().all(|f| !f.is_finding(now as i64)), "{facts:?}");
        let snap = b.build();
        assert_eq!(snap.value("zfs_pool_scrub_in_progress", &[("pool", "tank")]), Some(1.0));
    }
}

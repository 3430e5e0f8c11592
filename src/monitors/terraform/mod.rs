//! Terraform / OpenTofu state monitor.
//!
//! Per state file: parse (streamed, values never kept), the drift report
//! beside it, the approved baseline beside it; metrics per `state_file`.
//! Files are re-checked on every collection and re-read only when their
//! stamp (size, mtime, inode) changed. A failed read keeps the last good
//! values (marked stale) and is retried after `retry_interval`.

pub mod analysis;
pub mod config;
pub mod digest;
pub mod drift_runner;
pub mod instances;
pub mod json_stream;
pub mod memory;
pub mod plan;
pub mod policy;
pub mod remote;
pub mod facts;
pub mod source;
pub mod state;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;

use crate::core::clock::unix_seconds;
use crate::monitors::kind::{BuildContext, ConfigIssue, MonitorKind};
use crate::monitors::Overrides;

pub use self::config::TerraformConfig;
use crate::core::monitor::{Cadence, CollectContext, Monitor, MonitorError};
use crate::core::snapshot::{Health, MetricDef, Snapshot, SnapshotBuilder, TargetStatus};

use analysis::{analyse_with_policies, Analysis, TargetMemory, TargetSources};
use plan::Action;
use source::{discover, sibling_path, LocalFile, LocalTarget, StateSource};

pub const UP: MetricDef = MetricDef::gauge("terraform_state_up", "1 if the state file was read and parsed on the last check, 0 if not (then the other series are from the last good read).");
pub const STALE: MetricDef = MetricDef::gauge("terraform_state_stale", "1 if the values exported for this state come from an earlier read because the last read failed.");
pub const ERROR_INFO: MetricDef = MetricDef::gauge("terraform_state_error_info", "A current error reading this target; component is state, drift_report, baseline or discovery; always 1.");
pub const DRIFT: MetricDef = MetricDef::gauge("terraform_state_drift", "Resource instances drifted (changed outside Terraform) per the latest drift report; 0 means the report found none.");
pub const DRIFT_REPORT_TS: MetricDef = MetricDef::gauge(
    "terraform_state_drift_report_timestamp_seconds",
    "When the drift report was written (its timestamp field, else its file modification time).",
);
pub const DRIFT_REPORT_UP: MetricDef = MetricDef::gauge("terraform_state_drift_report_up", "1 if the drift report beside the state was read and is a plan, 0 if it exists but cannot be used.");
pub const PENDING: MetricDef = MetricDef::gauge(
    "terraform_state_pending_changes",
    "Planned changes in the drift report, by action (create, update, delete, replace, forget, move, import).",
);
pub const PENDING_OUTPUTS: MetricDef = MetricDef::gauge(
    "terraform_state_pending_output_changes",
    "Root module outputs the drift report changes (created, updated or deleted).",
);
pub const DRIFT_REPORT_CHECKS: MetricDef = MetricDef::gauge(
    "terraform_state_drift_report_checks",
    "Checks in the drift report (check blocks, conditions) by status (pass, fail, error, unknown).",
);
pub const DRIFT_REPORT_COMPLETE: MetricDef = MetricDef::gauge(
    "terraform_state_drift_report_complete",
    "0 if the drift report's plan does not cover the whole configuration (made with -target, or with deferred changes), else 1.",
);
pub const TARGETS: MetricDef = MetricDef::gauge(
    "terraform_state_targets",
    "State targets found (files discovered or configured, remote states); 0 means nothing is monitored.",
);
pub const UNAPPROVED: MetricDef = MetricDef::gauge(
    "terraform_state_unapproved_changes",
    "Resource instances added, removed or changed against the approved baseline.",
);
pub const BASELINE_UP: MetricDef = MetricDef::gauge("terraform_state_baseline_up", "1 if the baseline beside the state was read and matches its lineage, 0 if it exists but cannot be used.");
pub const SERIAL: MetricDef = MetricDef::gauge(
    "terraform_state_serial",
    "The state's serial (incremented by Terraform on every write).",
);
pub const INFO: MetricDef = MetricDef::gauge(
    "terraform_state_info",
    "State identity: lineage and the Terraform/OpenTofu version that wrote it; always 1.",
);
pub const LAST_MODIFIED: MetricDef = MetricDef::gauge(
    "terraform_state_last_modified_timestamp_seconds",
    "Modification time of the state file.",
);
pub const SIZE: MetricDef =
    MetricDef::gauge("terraform_state_size_bytes", "Size of the state file.");
pub const INSTANCES: MetricDef = MetricDef::gauge(
    "terraform_state_resource_instances",
    "Resource instances (current objects) by mode and type.",
);
pub const TAINTED: MetricDef = MetricDef::gauge(
    "terraform_state_tainted_instances",
    "Resource instances marked tainted (will be replaced on the next apply).",
);
pub const DEPOSED: MetricDef = MetricDef::gauge(
    "terraform_state_deposed_instances",
    "Deposed objects left behind by an interrupted create_before_destroy replacement.",
);
pub const OUTPUTS: MetricDef = MetricDef::gauge(
    "terraform_state_outputs",
    "Root module outputs by sensitivity (counts only, never values).",
);
pub const CHECKS: MetricDef = MetricDef::gauge(
    "terraform_state_check_results",
    "check_results objects by status (pass, fail, error, unknown).",
);
pub const ENCRYPTED: MetricDef = MetricDef::gauge(
    "terraform_state_encrypted",
    "1 for an OpenTofu encrypted state (only its envelope can be read), else 0.",
);

pub const LOCKED: MetricDef = MetricDef::gauge(
    "terraform_state_locked",
    "1 if the remote state is locked (a run holds it, or a crashed run left the lock), 0 if not; only for backends that show locks (S3 lock files, HCP workspaces).",
);
pub const LOCKED_SINCE: MetricDef = MetricDef::gauge(
    "terraform_state_locked_since_timestamp_seconds",
    "When the current lock was taken, where the backend tells (the S3 lock file's LastModified).",
);

/// The Terraform state monitor.
pub struct TerraformMonitor {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: TerraformConfig,
    base: PathBuf,
    /// Local state files: each with its own memory, freshness and deadline.
    /// The last analysis is shared (`Arc`) with the snapshot that serves it
    /// (its facts are built from it on demand): a collection never copies it.
    local: crate::core::targets::Targets<TargetMemory, Arc<Analysis>>,
    /// Remote entries (backends, working directories): each one target of
    /// the schedule, with its own memory.
    remote_reads: crate::core::targets::Targets<remote::EntryMemory, RemoteRead>,
    /// The local targets found by the last finished discovery.
    /// (Compact: see [`source::KeptTarget`].)
    discovered: Mutex<Box<[source::KeptTarget]>>,
    /// Rego policies (issue 8); `None` when none are configured.
    policies: Option<Arc<policy::PolicySet>>,
    /// The last collection found no target (logged once per change).
    found_nothing: std::sync::atomic::AtomicBool,
    /// The environment of the remote sources: `None` reads the process's
    /// anew at each collection (rotated tokens are picked up); tests inject one.
    env: Option<Arc<crate::remote::Env>>,
}

/// Registration of the Terraform monitor (`custom_monitors.terraform_state`).
pub struct TerraformKind;

impl MonitorKind for TerraformKind {
    const KEY: &'static str = "terraform_state";
    type Config = TerraformConfig;

    fn validate(cfg: &TerraformConfig) -> Result<(), ConfigIssue> {
        config::validate(cfg)
    }

    fn check_files(cfg: &TerraformConfig, base_dir: &std::path::Path) -> Result<(), ConfigIssue> {
        config::check_files(cfg, base_dir)
    }

    /// `--state-dir`/`--state-file` replace the targets (and enable the monitor).
    fn effective(cfg: Option<&TerraformConfig>, ov: &Overrides) -> Option<TerraformConfig> {
        let mut tf = cfg.cloned();
        if !ov.state_dirs.is_empty() || !ov.state_files.is_empty() {
            let mut t = tf.unwrap_or_default();
            t.enabled = true;
            t.state_dirs = ov
                .state_dirs
                .iter()
                .cloned()
                .map(crate::core::config::values::GlobPattern)
                .collect();
            t.state_files = ov
                .state_files
                .iter()
                .cloned()
                .map(crate::core::config::values::GlobPattern)
                .collect();
            // A folder given with --state-dir may be a Terraform working directory
            // whose .terraform/terraform.tfstate records a remote backend (zero-config).
            t.working_dirs = ov.state_dirs.clone();
            tf = Some(t);
        }
        tf
    }

    fn build(cfg: TerraformConfig, ctx: &BuildContext<'_>) -> Arc<dyn Monitor> {
        let ov = ctx.overrides;
        // Paths given on the command line are relative to the working directory.
        let base = if ov.state_files.is_empty() && ov.state_dirs.is_empty() {
            ctx.base_dir.to_path_buf()
        } else {
            PathBuf::from(".")
        };
        Arc::new(TerraformMonitor::new(cfg, base))
    }
}

impl TerraformMonitor {
    /// `base`: the folder relative paths are resolved against (the config file's folder).
    pub fn new(cfg: TerraformConfig, base: PathBuf) -> Self {
        Self::with_env(cfg, base, None)
    }

    /// Like [`TerraformMonitor::new`], the remote sources reading `env`
    /// instead of the process environment (`None`: the process's, read at
    /// each collection).
    pub fn with_env(cfg: TerraformConfig, base: PathBuf, env: Option<crate::remote::Env>) -> Self {
        TerraformMonitor {
            inner: Arc::new(Inner {
                policies: (!cfg.policies.is_empty()).then(|| {
                    Arc::new(
                        policy::PolicySet::new(
                            cfg.policies.clone(),
                            base.clone(),
                            cfg.policy_timeout.0,
                        )
                        .with_max_input(cfg.policy_max_input_size.0),
                    )
                }),
                cfg,
                base,
                local: crate::core::targets::Targets::new(),
                remote_reads: crate::core::targets::Targets::new(),
                discovered: Mutex::new(Box::default()),
                found_nothing: std::sync::atomic::AtomicBool::new(false),
                env: env.map(Arc::new),
            }),
        }
    }

    /// Discover the targets, read the local ones that are due (each on the
    /// bounded read pool, with a deadline), then the remote ones.
    /// Unless `complete`, reads still running after the schedule's patience
    /// are left to land in a later collection (counted in `pending`).
    async fn analyse_all(
        &self,
        now: std::time::SystemTime,
        complete: bool,
    ) -> Result<Collected, MonitorError> {
        let inner = self.inner.clone();
        let timeout = inner.cfg.timeout.0;
        let schedule = crate::core::targets::Schedule::for_monitor(
            inner.cfg.check_interval.0,
            inner.cfg.retry_interval.0,
            timeout,
        );
        let schedule = if complete {
            schedule.complete()
        } else {
            schedule
        };
        let mut problems = Vec::new();
        let mut problem_labels = Vec::new();
        let found = {
            let walker = inner.clone();
            let walk = tokio::task::spawn_blocking(move || {
                let files: Vec<String> =
                    walker.cfg.state_files.iter().map(|g| g.0.clone()).collect();
                let dirs: Vec<String> = walker.cfg.state_dirs.iter().map(|g| g.0.clone()).collect();
                let found = discover(&walker.base, &files, &dirs);
                let kept: Box<[source::KeptTarget]> = found
                    .targets
                    .iter()
                    .map(|t| source::KeptTarget::new(&walker.base, t))
                    .collect();
                (found, kept)
            });
            match tokio::time::timeout(schedule.deadline, walk).await {
                Ok(Ok((found, kept))) => {
                    *inner.discovered.lock().unwrap_or_else(|e| e.into_inner()) = kept;
                    Some(found)
                }
                Ok(Err(e)) => return Err(MonitorError::Panicked(e.to_string())),
                Err(_) => {
                    // A hung mount: keep the targets found last time.
                    problems.push(analysis::TargetError {
                        component: "discovery",
                        reason: "timeout",
                        message: format!(
                            "discovery of state files did not finish within {:?} (a hung or slow mount?); the targets found last time are kept",
                            schedule.deadline
                        ),
                    });
                    problem_labels.push("discovery".to_string());
                    None
                }
            }
        };
        let targets = match found {
            Some(found) => {
                for p in found.problems {
                    tracing::warn!(monitor = "terraform_state", target = %p.label, reason = p.reason, "{}", p.message);
                    problem_labels.push(p.label.clone());
                    problems.push(analysis::TargetError {
                        component: "discovery",
                        reason: p.reason,
                        message: p.message,
                    });
                }
                found.targets
            }
            None => inner
                .discovered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|k| k.target(&inner.base))
                .collect(),
        };
        let max = inner.cfg.max_file_size.0;
        // Discovery saw every file; this replica reads only its shard's (by label).
        let items: Vec<(String, LocalTarget)> = targets
            .into_iter()
            .filter(|t| crate::core::shard::owns(&t.label))
            .map(|t| (t.label.clone(), t))
            .collect();
        let reader = inner.clone();
        let reads = inner
            .local
            .collect(schedule, now, items, move |t, mem| {
                Self::one(&reader, &t, mem, max)
            })
            .await;
        let mut out: Vec<Arc<Analysis>> = Vec::with_capacity(reads.len());
        let mut read_at = Vec::with_capacity(reads.len());
        let mut pending = Vec::new();
        for r in reads {
            if r.pending {
                pending.push(r.value.label.to_string());
            }
            if r.placeholder {
                continue;
            }
            if r.fresh {
                log_analysis(&r.value);
            }
            read_at.push((r.value.label.clone(), r.read_at, r.value.stale));
            out.push(r.value);
        }
        if remote::is_configured(&inner.cfg) {
            // Each configured entry (a backend, a working directory) is one
            // target of the schedule: its own due time, retry and deadline
            // (the backend's budget ends first), a hung one never started
            // twice, and a failing backend retried alone.
            let remote_schedule = crate::core::targets::Schedule {
                deadline: timeout.mul_f64(0.95),
                wait: schedule.wait.min(timeout.mul_f64(0.95)),
                ..schedule
            };
            if let Some((label, problem)) = remote::reports_dir_problem(&inner.cfg, &inner.base) {
                tracing::warn!(monitor = "terraform_state", target = %label, "{}", problem.message);
                problem_labels.push(label);
                problems.push(problem);
            }
            let cfg = Arc::new(inner.cfg.clone());
            let base = Arc::new(inner.base.clone());
            let policies = inner.policies.clone();
            // One snapshot of the environment per collection.
            let env = inner
                .env
                .clone()
                .unwrap_or_else(|| Arc::new(crate::remote::Env::process()));
            let entries = Arc::new(tokio::sync::Semaphore::new(remote::ENTRY_CONCURRENCY));
            let reads = inner
                .remote_reads
                .collect_async(
                    remote_schedule,
                    now,
                    remote::EntryRef::all(&inner.cfg),
                    move |which, memory| {
                        let (cfg, base, policies, env) =
                            (cfg.clone(), base.clone(), policies.clone(), env.clone());
                        let entries = entries.clone();
                        async move {
                            // At most ENTRY_CONCURRENCY entries at once; the
                            // states are parsed on the blocking pool.
                            let _permit = entries.acquire_owned().await.ok();
                            let deadline = crate::remote::deadline_for(timeout);
                            let (read, memory) =
                                remote::read_entry(cfg, base, which, memory, deadline, policies, env)
                                    .await;
                            (RemoteRead(read), memory)
                        }
                    },
                )
                .await;
            for r in reads {
                if r.pending {
                    pending.push("remote states".to_string());
                }
                let c = r.value.0;
                for a in &c.analyses {
                    if r.fresh {
                        log_analysis(a);
                    }
                    read_at.push((a.label.clone(), r.read_at, a.stale));
                }
                out.extend(c.analyses);
                problems.extend(c.problems);
                problem_labels.extend(c.problem_labels);
            }
        }
        let nothing = out.is_empty() && problems.is_empty();
        let was = inner
            .found_nothing
            .swap(nothing, std::sync::atomic::Ordering::Relaxed);
        if nothing && !was {
            tracing::warn!(
                monitor = "terraform_state",
                "{}",
                nothing_found_message(&inner.cfg, &inner.base)
            );
        }
        Ok(Collected {
            analyses: out,
            problems,
            problem_labels,
            read_at,
            pending,
        })
    }

    /// Where the local targets' memory goes, by category (the fleet
    /// benchmark; see [`memory`]).
    pub fn memory_breakdown(&self) -> memory::MemoryBreakdown {
        let discovered = self.inner.discovered.lock().unwrap_or_else(|e| e.into_inner());
        memory::breakdown(&self.inner.local, &discovered)
    }

    /// Analyse one target with its drift report and baseline.
    fn one(inner: &Inner, t: &LocalTarget, mem: &mut TargetMemory, max: u64) -> Arc<Analysis> {
        let state = LocalFile {
            label: t.label.clone(),
            path: t.path.clone(),
            max_size: max,
        };
        let sibling = |template: &str| {
            let path = sibling_path(&t.path, template);
            LocalFile {
                label: relabel(&t.label, &path),
                path,
                max_size: max,
            }
        };
        let drift = sibling(&inner.cfg.drift_report);
        let baseline = inner.cfg.baseline.as_deref().map(sibling);
        let mut a = analyse_with_policies(
            TargetSources {
                state: &state,
                drift: Some(&drift as &dyn StateSource),
                baseline: baseline.as_ref().map(|b| b as &dyn StateSource),
            },
            mem,
            inner.policies.as_deref(),
        );
        a.drift_run = drift_runner::status::read_beside(&drift.path).map(Box::new);
        Arc::new(a)
    }
}

/// One read of one remote entry (all the states it holds).
#[derive(Debug, Clone)]
struct RemoteRead(remote::Collected);

impl crate::core::targets::TargetValue for RemoteRead {
    fn healthy(&self) -> bool {
        self.0.problems.is_empty() && self.0.analyses.iter().all(|a| a.errors.is_empty())
    }

    fn timed_out(last: Option<&Self>, _label: &str, waited: Duration) -> Self {
        let mut c = last.map(|l| l.0.clone()).unwrap_or_default();
        for a in &mut c.analyses {
            *a = Arc::new(crate::core::targets::TargetValue::timed_out(
                Some(&**a),
                &a.label.clone(),
                waited,
            ));
        }
        c.problems.push(analysis::TargetError {
            component: "discovery",
            reason: "timeout",
            message: format!(
                "reading the remote states did not finish within {waited:.1?} (a backend that stopped answering?); their last values are served, marked stale"
            ),
        });
        c.problem_labels.push("remote".into());
        RemoteRead(c)
    }

    fn pending(_label: &str) -> Self {
        RemoteRead(remote::Collected::default())
    }
}

/// One collection's results.
struct Collected {
    analyses: Vec<Arc<Analysis>>,
    problems: Vec<analysis::TargetError>,
    problem_labels: Vec<String>,
    /// (state_file, when it was read, served stale) per target.
    read_at: Vec<(Arc<str>, std::time::SystemTime, bool)>,
    /// Targets whose read was still running when the collection ended.
    pending: Vec<String>,
}

/// Label of a sibling file: the state's label with its file name replaced.
fn relabel(state_label: &str, sibling: &std::path::Path) -> String {
    let name = sibling
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    match state_label.rfind('/') {
        Some(i) => format!("{}/{}", &state_label[..i], name),
        None => name,
    }
}

const EVENT_LIST_CAP: usize = 100;

fn capped(v: &[String]) -> Vec<String> {
    let mut out: Vec<String> = v.iter().take(EVENT_LIST_CAP).cloned().collect();
    if v.len() > EVENT_LIST_CAP {
        out.push(format!("... {} more", v.len() - EVENT_LIST_CAP));
    }
    out
}

/// One structured log event per detected change: addresses and attribute
/// paths, serial and lineage; never values.
/// Log a fresh read's errors and change event.
fn log_analysis(a: &Analysis) {
    for e in &a.errors {
        tracing::warn!(monitor = "terraform_state", state_file = %a.label, component = e.component, reason = e.reason, "{}", e.message);
    }
    if let Some(ch) = &a.changed_since_last {
        log_change_event(a, ch);
    }
}

fn log_change_event(a: &Analysis, ch: &analysis::Changes) {
    let Some(st) = &a.state else { return };
    let changed: Vec<String> = ch
        .changed
        .iter()
        .map(|(addr, paths)| format!("{addr} ({})", paths.join(", ")))
        .collect();
    let added = serde_json::to_string(&capped(&ch.added)).unwrap_or_default();
    let removed = serde_json::to_string(&capped(&ch.removed)).unwrap_or_default();
    let changed = serde_json::to_string(&capped(&changed)).unwrap_or_default();
    tracing::info!(
        // = crate::core::telemetry::CHANGE_TARGET; added/removed/changed are
        // its LIST_FIELDS (JSON arrays in JSON logs).
        target: "homelab_monitor::change",
        event = "terraform_state_changed",
        state_file = %a.label,
        serial = st.serial.unwrap_or(0),
        previous_serial = a.previous_serial.unwrap_or(0),
        lineage = st.lineage.as_deref().unwrap_or(""),
        added_count = ch.added.len(),
        removed_count = ch.removed.len(),
        changed_count = ch.changed.len(),
        added = %added,
        removed = %removed,
        changed = %changed,
        "terraform state changed"
    );
}

fn bool_f(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Build the snapshot from analyses.
pub fn snapshot(
    analyses: &[Arc<Analysis>],
    problems: &[analysis::TargetError],
    problem_labels: &[String],
) -> Snapshot {
    let mut b = SnapshotBuilder::new();
    for def in [&UP, &DRIFT] {
        b.declare(def);
    }
    b.gauge(&TARGETS, &[], (analyses.len() + problems.len()) as f64);
    for a in analyses {
        b.share_label(&a.label);
        let l = &*a.label;
        let sf = [("state_file", l)];
        b.gauge(&UP, &sf, bool_f(a.up));
        b.gauge(&STALE, &sf, bool_f(a.stale));
        for e in &a.errors {
            b.gauge(
                &ERROR_INFO,
                &[
                    ("state_file", l),
                    ("component", e.component),
                    ("reason", e.reason),
                ],
                1.0,
            );
        }
        if let Some(n) = a.remote_bytes {
            b.gauge(&remote::BYTES, &sf, n as f64);
        }
        if let Some(lock) = &a.lock {
            b.gauge(&LOCKED, &sf, bool_f(lock.locked));
            if let Some(since) = lock.since.filter(|_| lock.locked) {
                b.gauge(&LOCKED_SINCE, &sf, crate::core::clock::unix_seconds(since));
            }
        }
        if let Some(st) = &a.state {
            b.gauge(&ENCRYPTED, &sf, bool_f(st.encrypted));
            if let Some(serial) = st.serial {
                b.gauge(&SERIAL, &sf, serial as f64);
            }
            b.gauge(
                &INFO,
                &[
                    ("state_file", l),
                    ("lineage", st.lineage.as_deref().unwrap_or("")),
                    (
                        "terraform_version",
                        st.terraform_version.as_deref().unwrap_or(""),
                    ),
                ],
                1.0,
            );
            if let Some(stamp) = a.state_stamp {
                if let Some(m) = stamp.modified {
                    b.gauge(&LAST_MODIFIED, &sf, unix_seconds(m));
                }
                b.gauge(&SIZE, &sf, stamp.size as f64);
            }
            if !st.encrypted {
                for ((mode, rtype), n) in &st.resource_counts {
                    b.gauge(
                        &INSTANCES,
                        &[("state_file", l), ("mode", mode), ("type", rtype)],
                        *n as f64,
                    );
                }
                b.gauge(&TAINTED, &sf, st.tainted().count() as f64);
                b.gauge(&DEPOSED, &sf, st.deposed.len() as f64);
                let sensitive = st.outputs.sensitive;
                b.gauge(
                    &OUTPUTS,
                    &[("state_file", l), ("sensitive", "false")],
                    (st.outputs.total - sensitive) as f64,
                );
                b.gauge(
                    &OUTPUTS,
                    &[("state_file", l), ("sensitive", "true")],
                    sensitive as f64,
                );
                let counts = st.check_counts();
                for status in ["pass", "fail", "error", "unknown"] {
                    b.gauge(
                        &CHECKS,
                        &[("state_file", l), ("status", status)],
                        *counts.get(status).unwrap_or(&0) as f64,
                    );
                }
            }
        }
        if let Some(up) = a.drift_up {
            b.gauge(&DRIFT_REPORT_UP, &sf, bool_f(up));
        }
        if let Some(p) = &a.drift {
            b.gauge(&DRIFT, &sf, p.drift.len() as f64);
            if let Some(t) = a.drift_time {
                b.gauge(&DRIFT_REPORT_TS, &sf, unix_seconds(t));
            }
            for act in Action::ALL {
                b.gauge(
                    &PENDING,
                    &[("state_file", l), ("action", act.as_str())],
                    a.pending(act) as f64,
                );
            }
            b.gauge(&PENDING_OUTPUTS, &sf, p.output_changes.len() as f64);
            b.gauge(&DRIFT_REPORT_COMPLETE, &sf, bool_f(!p.incomplete));
            let counts = p.check_counts();
            for status in ["pass", "fail", "error", "unknown"] {
                b.gauge(
                    &DRIFT_REPORT_CHECKS,
                    &[("state_file", l), ("status", status)],
                    *counts.get(status).unwrap_or(&0) as f64,
                );
            }
        }
        if let Some(run) = &a.drift_run {
            drift_runner::status::emit(&mut b, l, run);
        }
        if let Some(up) = a.baseline_up {
            b.gauge(&BASELINE_UP, &sf, bool_f(up));
        }
        if let Some(u) = &a.unapproved {
            b.gauge(&UNAPPROVED, &sf, u.total() as f64);
        }
        if let Some(p) = &a.policy {
            policy_series(&mut b, l, p);
        }
        b.target(target_status(a));
    }
    for (p, label) in problems.iter().zip(problem_labels) {
        b.gauge(
            &ERROR_INFO,
            &[
                ("state_file", label),
                ("component", p.component),
                ("reason", p.reason),
            ],
            1.0,
        );
        b.target(TargetStatus {
            target: label.clone(),
            health: Health::Error,
            summary: "cannot search".into(),
            error: Some(p.message.clone()),
            stale: false,
            facts: vec![crate::core::snapshot::Fact::Problem {
                component: p.component.to_string(),
                message: p.message.clone(),
            }]
            .into(),
        });
    }
    b.build()
}

/// Policy series of one state: every severity of every policy (0 included).
fn policy_series(b: &mut SnapshotBuilder, l: &str, p: &policy::PolicyOutcome) {
    for r in &p.results {
        let lp = [("state_file", l), ("policy", r.policy.as_str())];
        b.gauge(&policy::EVALUATION_SUCCESS, &lp, bool_f(r.ok));
        if r.ok {
            for sev in policy::SEVERITIES {
                let n = r.violations.iter().filter(|v| v.severity == sev).count();
                b.gauge(
                    &policy::VIOLATIONS,
                    &[("state_file", l), ("policy", &r.policy), ("severity", sev)],
                    n as f64,
                );
            }
        }
    }
}

fn target_status(a: &Arc<Analysis>) -> TargetStatus {
    let mut parts = Vec::new();
    if let Some(st) = &a.state {
        if st.encrypted {
            parts.push(format!(
                "not checked: encrypted (OpenTofu) state, only its envelope is readable, serial {}",
                st.serial
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "?".into())
            ));
        } else {
            parts.push(format!(
                "serial {}, {} instances",
                st.serial.unwrap_or(0),
                st.instance_count()
            ));
            let t = st.tainted().count();
            if t > 0 {
                parts.push(format!("{t} tainted"));
            }
            if !st.deposed.is_empty() {
                parts.push(format!("{} deposed", st.deposed.len()));
            }
            let f = st.failed_checks().count();
            if f > 0 {
                parts.push(format!("{f} failed checks"));
            }
        }
    }
    match &a.drift {
        Some(p) => {
            parts.push(format!(
                "drift {}, pending {}",
                p.drift.len(),
                p.pending.len()
            ));
            if !p.output_changes.is_empty() {
                parts.push(format!("{} output change(s)", p.output_changes.len()));
            }
            let f = p.failed_checks().count();
            if f > 0 {
                parts.push(format!("{f} failed checks in the drift report"));
            }
            if p.incomplete {
                parts.push("the drift report covers only part of the configuration".into());
            }
        }
        None if a.drift_up.is_none() => parts.push("no drift report".into()),
        None => {}
    }
    if let Some(u) = &a.unapproved {
        parts.push(format!("unapproved {}", u.total()));
    }
    if let Some(lock) = a.lock.filter(|l| l.locked) {
        match lock
            .since
            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        {
            Some(age) => parts.push(format!(
                "locked for {}",
                crate::cli::report::human_duration(Duration::from_secs(age.as_secs() / 60 * 60))
            )),
            None => parts.push("locked".into()),
        }
    }
    if let Some(p) = &a.policy {
        parts.push(format!(
            "policy violations {} ({} deny), {} policies failed",
            p.violations(),
            p.denies(),
            p.failed()
        ));
    }
    let run_failed = a.drift_run.as_deref().and_then(drift_runner::status::failure_summary);
    if let Some(f) = &run_failed {
        parts.push(f.clone());
    }
    let health = if !a.errors.is_empty() || run_failed.is_some() {
        Health::Error
    } else if a.unchecked() {
        Health::Unchecked
    } else if a.findings() > 0 {
        Health::Findings
    } else {
        Health::Ok
    };
    TargetStatus {
        target: a.label.to_string(),
        health,
        summary: parts.join(", "),
        error: (!a.errors.is_empty()).then(|| {
            a.errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        }),
        stale: a.stale,
        // Built when `--status` or the status page asks (from the analysis
        // the target keeps anyway), not kept built for every target.
        facts: crate::core::snapshot::Facts::lazy(a.clone()),
    }
}

impl crate::core::snapshot::FactSource for Analysis {
    fn facts(&self) -> Vec<crate::core::snapshot::Fact> {
        facts::facts(self)
    }
}

#[async_trait]
impl Monitor for TerraformMonitor {
    fn name(&self) -> &'static str {
        "terraform_state"
    }

    fn cadence(&self) -> Cadence {
        self.inner.cfg.cadence()
    }

    /// Per-target memory: the last parse of each local target (state,
    /// drift report, baseline, policy results) and its last analysis, the
    /// remote entries' last analyses, and the discovered targets' labels and paths.
    fn retained_bytes(&self) -> usize {
        let local = self.inner.local.retained_bytes(|mem, last| {
            mem.map_or(0, TargetMemory::estimated_bytes)
                + last.map_or(0, |a| a.estimated_bytes(mem.is_none()))
        });
        let remote = self.inner.remote_reads.retained_bytes(|_, last| {
            last.map_or(0, |r| {
                r.0.analyses.iter().map(|a| a.estimated_bytes(true)).sum::<usize>()
            })
        });
        let discovered = self
            .inner
            .discovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|t| std::mem::size_of::<source::KeptTarget>() + t.heap_bytes())
            .sum::<usize>();
        local + remote + discovered
    }

    fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .inner
            .cfg
            .state_files
            .iter()
            .map(|g| g.0.clone())
            .collect();
        parts.extend(
            self.inner
                .cfg
                .state_dirs
                .iter()
                .map(|g| format!("{}/ (recursive)", g.0.trim_end_matches('/'))),
        );
        format!(
            "terraform state: {} (under {})",
            parts.join(", "),
            self.inner.base.display()
        )
    }

    async fn collect(&self, ctx: CollectContext) -> Result<Snapshot, MonitorError> {
        let c = self.analyse_all(ctx.now, false).await?;
        let mut snap = snapshot(&c.analyses, &c.problems, &c.problem_labels);
        snap.pending = c.pending.len();
        for label in &c.pending {
            if !c.analyses.iter().any(|a| *a.label == **label) {
                snap.targets.push(TargetStatus {
                    target: label.clone(),
                    health: Health::Unchecked,
                    summary: "first read still running".into(),
                    error: None,
                    stale: false,
                    facts: Vec::new().into(),
                });
            }
        }
        if c.analyses.is_empty() && c.problems.is_empty() && c.pending.is_empty() {
            snap.targets
                .push(nothing_found_status(&self.inner.cfg, &self.inner.base));
        }
        let mut b = SnapshotBuilder::new();
        for (label, at, stale) in &c.read_at {
            b.share_label(label);
            crate::core::targets::emit_freshness(&mut b, "terraform_state", label, *at, *stale);
        }
        snap.families.extend(b.build().families);
        Ok(snap)
    }
}

/// What was searched, for "nothing found" messages.
fn searched(cfg: &TerraformConfig) -> String {
    let mut parts: Vec<String> = cfg.state_files.iter().map(|g| g.0.clone()).collect();
    parts.extend(
        cfg.state_dirs
            .iter()
            .map(|g| format!("{}/", g.0.trim_end_matches('/'))),
    );
    // `--state-dir` also sets working_dirs to the same folders: name them once.
    parts.extend(
        cfg.working_dirs
            .iter()
            .filter(|d| {
                !cfg.state_dirs
                    .iter()
                    .any(|s| s.0.trim_end_matches('/') == d.trim_end_matches('/'))
            })
            .map(|d| format!("{d} (backend)")),
    );
    if parts.is_empty() {
        "(no state_files or state_dirs)".into()
    } else {
        parts.join(", ")
    }
}

/// Nothing monitored is not "ok": say what was searched and what to do.
fn nothing_found_message(cfg: &TerraformConfig, base: &std::path::Path) -> String {
    format!(
        "no Terraform/OpenTofu state found in {} (under {}): nothing is monitored; check the paths (state files end in .tfstate), that the folder is mounted, and that the exporter's user can read it",
        searched(cfg),
        base.display()
    )
}

/// The `--status` / status page entry when discovery found nothing.
fn nothing_found_status(cfg: &TerraformConfig, base: &std::path::Path) -> TargetStatus {
    TargetStatus {
        target: searched(cfg),
        health: Health::Findings,
        summary: nothing_found_message(cfg, base),
        error: None,
        stale: false,
        facts: Vec::new().into(),
    }
}

/// Seconds since the epoch of a stamp's mtime (reports).
pub(crate) fn mtime_secs(a: &Analysis) -> Option<u64> {
    a.state_stamp
        .and_then(|s| s.modified)
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// The local targets keep their last analysis shared (see [`Inner::local`]).
impl crate::core::targets::TargetValue for Arc<Analysis> {
    fn healthy(&self) -> bool {
        crate::core::targets::TargetValue::healthy(&**self)
    }

    fn timed_out(last: Option<&Self>, label: &str, waited: Duration) -> Self {
        Arc::new(crate::core::targets::TargetValue::timed_out(
            last.map(|a| &**a),
            label,
            waited,
        ))
    }

    fn pending(label: &str) -> Self {
        Arc::new(<Analysis as crate::core::targets::TargetValue>::pending(label))
    }
}

impl crate::core::targets::TargetValue for Analysis {
    fn healthy(&self) -> bool {
        self.errors.is_empty()
    }

    fn timed_out(last: Option<&Self>, label: &str, waited: Duration) -> Self {
        let error = analysis::TargetError {
            component: "state",
            reason: "timeout",
            message: format!(
                "{label}: the read did not finish within {waited:.1?} (a hung mount or a blocked file?); serving the last good values"
            ),
        };
        match last {
            Some(a) => Analysis {
                up: false,
                stale: a.state.is_some(),
                errors: vec![error],
                changed_since_last: None,
                ..a.clone()
            },
            None => Analysis {
                errors: vec![error],
                ..<Self as crate::core::targets::TargetValue>::pending(label)
            },
        }
    }

    fn pending(label: &str) -> Self {
        Analysis {
            label: label.into(),
            state: None,
            state_stamp: None,
            up: false,
            stale: false,
            drift: None,
            drift_time: None,
            drift_up: None,
            unapproved: None,
            baseline_up: None,
            errors: Vec::new(),
            changed_since_last: None,
            previous_serial: None,
            policy: None,
            lock: None,
            remote_bytes: None,
            drift_run: None,
        }
    }
}

#[cfg(test)]
mod memory_tests {
    use super::*;
    use crate::core::clock::SystemClock;
    use crate::core::registry::Registry;

    fn write_state(dir: &std::path::Path, i: usize) {
        let d = dir.join(format!("ws{i}"));
        std::fs::create_dir_all(&d).unwrap();
        let resources: Vec<String> = (0..4)
            .map(|r| {
                format!(
                    r#"{{"mode": "managed", "type": "aws_instance", "name": "r{r}", "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]", "instances": [{{"schema_version": 1, "attributes": {{"id": "i-{i}-{r}", "ami": "ami-1", "tags": {{"Name": "n"}}}}}}]}}"#
                )
            })
            .collect();
        std::fs::write(
            d.join("terraform.tfstate"),
            format!(
                r#"{{"version": 4, "terraform_version": "1.9.8", "serial": 1, "lineage": "l-{i}", "outputs": {{}}, "resources": [{}]}}"#,
                resources.join(",")
            ),
        )
        .unwrap();
    }

    fn retained(reg: &Registry, outcomes: &[Arc<crate::core::registry::Outcome>]) -> f64 {
        reg.self_metrics(outcomes)
            .value(
                "homelab_monitor_retained_bytes",
                &[("monitor", "terraform_state")],
            )
            .expect("retained_bytes for the terraform monitor")
    }

    /// Three small states in a temporary folder, and a registry of a
    /// Terraform monitor discovering them.
    fn registry_of_three_states() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..3 {
            write_state(dir.path(), i);
        }
        let cfg = TerraformConfig {
            state_dirs: vec![crate::core::config::values::GlobPattern(".".into())],
            ..Default::default()
        };
        let monitor: Arc<dyn Monitor> = Arc::new(TerraformMonitor::new(cfg, dir.path().into()));
        (dir, Registry::new(vec![monitor], Arc::new(SystemClock)))
    }

    /// Issue 21: a target's facts are built when an edge asks, from the
    /// analysis the target keeps anyway; the served snapshot never keeps them
    /// built, and a re-collection that serves targets from memory shares
    /// their analyses instead of copying them.
    #[tokio::test]
    async fn facts_are_built_on_demand_and_unchanged_targets_are_shared() {
        let (_dir, reg) = registry_of_three_states();
        let o = reg.gather().await;
        let snap = &o[0].snapshot;
        assert_eq!(snap.targets.len(), 3);
        assert!(
            snap.targets.iter().all(|t| t.facts.is_lazy() && !t.facts.is_built()),
            "facts kept built in the snapshot: {:?}",
            snap.targets
        );
        let bytes = snap.estimated_bytes();
        // The status page (and /api/v1/status) shows them, from copies.
        let page = crate::server::status_page::build(&reg, &o, std::time::SystemTime::now());
        let shown = &page.monitors[0].targets;
        assert_eq!(shown.len(), 3);
        for t in shown {
            assert!(!t.facts.is_lazy());
            assert!(
                t.facts.iter().any(|f| matches!(f,
                    crate::core::snapshot::Fact::Detail { field, value: crate::core::snapshot::Value::Int(4) }
                        if field == "instances")),
                "{:?}",
                t.facts
            );
            assert!(t.facts.iter().any(|f| matches!(f,
                crate::core::snapshot::Fact::Count { group, item, count: 4 }
                    if group == "resources" && item == "managed aws_instance")));
        }
        assert!(
            snap.targets.iter().all(|t| !t.facts.is_built()),
            "the page left the served snapshot's facts built"
        );
        assert_eq!(snap.estimated_bytes(), bytes);
        // What the page shows is what the analysis says, in its order.
        let json = serde_json::to_value(&page.monitors[0].targets[0]).unwrap();
        let lazy = serde_json::to_value(&snap.targets[0]).unwrap();
        assert_eq!(json, lazy);
        assert!(json["facts"].as_array().is_some_and(|f| f.len() > 5), "{json}");
        // A re-collection with nothing due serves the same analyses (shared, not copied).
        reg.expire();
        let again = reg.gather().await;
        assert!(!Arc::ptr_eq(&again[0], &o[0]), "a new collection ran");
        for (new, old) in again[0].snapshot.targets.iter().zip(&snap.targets) {
            assert_eq!(new.target, old.target);
            assert!(new.facts.shares_source(&old.facts), "{} was copied", new.target);
        }
    }

    #[tokio::test]
    async fn retained_bytes_grow_with_targets_and_shrink_when_they_vanish() {
        let (dir, reg) = registry_of_three_states();
        let o = reg.gather().await;
        assert_eq!(o[0].snapshot.targets.len(), 3);
        let three = retained(&reg, &o);
        assert!(three > 0.0);
        for i in 3..30 {
            write_state(dir.path(), i);
        }
        reg.expire();
        let o = reg.gather().await;
        assert_eq!(o[0].snapshot.targets.len(), 30);
        let thirty = retained(&reg, &o);
        // Each state keeps at least its label, addresses and digests, and its
        // series and status in the snapshot.
        assert!(
            thirty > three + 27.0 * 1000.0,
            "3 states: {three} bytes, 30 states: {thirty} bytes"
        );
        for i in 2..30 {
            std::fs::remove_dir_all(dir.path().join(format!("ws{i}"))).unwrap();
        }
        reg.expire();
        let o = reg.gather().await;
        assert_eq!(o[0].snapshot.targets.len(), 2);
        let two = retained(&reg, &o);
        assert!(two < three, "3 states: {three} bytes, 2 states: {two} bytes");
        // The encoded part is cached once scraped; gzip once asked for.
        let m = |reg: &Registry, e: &str| {
            reg.self_metrics(&o)
                .value("homelab_monitor_exposition_cache_bytes", &[("encoding", e)])
                .unwrap()
        };
        assert_eq!(m(&reg, "identity"), 0.0);
        let wait = Duration::from_secs(5);
        let format = crate::core::encoder::Format::Classic;
        let body = reg.scrape(format, wait, None).await.unwrap();
        // The monitors' part, without the per-scrape self metrics; no slack.
        let text = m(&reg, "identity");
        assert!(
            text > 0.0 && text < body.len() as f64,
            "{text} of {}",
            body.len()
        );
        assert!(body.contains("terraform_state_up{state_file=\"ws1/terraform.tfstate\"}"));
        assert_eq!(m(&reg, "gzip"), 0.0);
        reg.scrape_encoded(format, wait, None, crate::core::compress::Encoding::Gzip)
            .await
            .unwrap();
        assert!(m(&reg, "gzip") > 0.0);
        // After the next collection, a scraper that only asks for gzip
        // (Prometheus) leaves only the compressed part in memory.
        reg.expire();
        reg.gather().await;
        let z = reg
            .scrape_encoded(format, wait, None, crate::core::compress::Encoding::Gzip)
            .await
            .unwrap();
        assert_eq!(m(&reg, "identity"), 0.0);
        assert!(m(&reg, "gzip") > 0.0);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&z.read_all().unwrap()[..]), &mut text)
            .unwrap();
        assert!(text.contains("terraform_state_up{state_file=\"ws1/terraform.tfstate\"} 1"));
    }
}

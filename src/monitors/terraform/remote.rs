//! Remote states of the Terraform monitor: each configured entry (a backend
//! of [`crate::remote`], or a working directory's recorded backend) is one
//! target of the monitor's schedule. Its states are fetched through the
//! remote-state layer and each fetched body is parsed on the blocking pool by
//! the same analysis as local files, through [`StateSource`], so last-good
//! values, stale marking and change events work unchanged. Entries and their
//! states are read side by side with bounded concurrency (`buffered` streams).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use crate::core::config::TerraformConfig;
use crate::remote::client::Budget;
use crate::remote::{build, spec_label, working_dir_backend, Env, Fetch, RemoteError, StateBackend, Target};

pub use crate::remote::LockState;
use super::analysis::{analyse_with_policies, Analysis, TargetError, TargetMemory, TargetSources};
use super::policy::PolicySet;
use super::source::{sibling_path, LocalFile, SourceError, Stamp, StateSource};

/// What is remembered about one remote state between collections.
#[derive(Debug, Default)]
struct SourceMemory {
    version: Option<String>,
    stamp: Option<Stamp>,
    bytes_total: u64,
    analysis: TargetMemory,
}

/// What is remembered about one entry.
#[derive(Debug, Default)]
pub struct EntryMemory {
    targets: Vec<Target>,
    sources: HashMap<String, SourceMemory>,
}


/// Backend entries collected at the same time.
pub const ENTRY_CONCURRENCY: usize = 16;

pub const BYTES: crate::core::snapshot::MetricDef = crate::core::snapshot::MetricDef::counter(
    "terraform_state_remote_bytes",
    "Bytes of remote state received from the backend since the exporter started (an unchanged state costs 0: requests are conditional).",
);

/// The output of one collection of remote sources.
#[derive(Debug, Default, Clone)]
pub struct Collected {
    /// Shared with the snapshot that serves them (their facts are built
    /// from them on demand): a collection never copies them.
    pub analyses: Vec<std::sync::Arc<Analysis>>,
    pub problems: Vec<TargetError>,
    pub problem_labels: Vec<String>,
}

/// Where the drift report and baseline of a remote state are looked for:
/// local files under `remote.reports_dir`, in a folder named after the
/// state's label (see [`reports_folder`]).
#[derive(Debug, Clone)]
struct Sidecars {
    dir: PathBuf,
    drift_report: String,
    baseline: Option<String>,
    max_size: u64,
}

impl Sidecars {
    fn of(cfg: &TerraformConfig, base: &Path) -> Option<Self> {
        cfg.remote.reports_dir.as_ref().map(|d| Sidecars {
            dir: base.join(d),
            drift_report: cfg.drift_report.clone(),
            baseline: cfg.baseline.clone(),
            max_size: cfg.max_file_size.0,
        })
    }

    /// The drift report and baseline files of the remote state `label`.
    fn files(&self, label: &str) -> (LocalFile, Option<LocalFile>) {
        let local = |template: &str| {
            let (label, path) = sidecar_file(&self.dir, label, template);
            LocalFile {
                label,
                path,
                max_size: self.max_size,
            }
        };
        (
            local(&self.drift_report),
            self.baseline.as_deref().map(local),
        )
    }
}

/// Where the file `template` (`drift_report` or `baseline`, with `{stem}` /
/// `{file}` as beside local states) of the remote state `label` lives under
/// `reports_dir`: (its name for messages, its path). The exporter reads there
/// and `homelab-monitor drift` writes there.
pub fn sidecar_file(reports_dir: &Path, label: &str, template: &str) -> (String, PathBuf) {
    let folder = reports_folder(label);
    // The state's last label component plays the state file's name, so that
    // `{stem}` / `{file}` work as beside local states.
    let file = folder.rsplit('/').next().unwrap_or("state").to_string();
    let virtual_state = reports_dir.join(&folder).join(file);
    let path = sibling_path(&virtual_state, template);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    (format!("{folder}/{name}"), path)
}

/// The folder (relative to `remote.reports_dir`) that holds the drift report
/// and baseline of the remote state `label`: the label with `://` turned into
/// `/`, e.g. `s3://tfstate/env:/prod/app.tfstate` -> `s3/tfstate/env:/prod/app.tfstate`.
/// Components are sanitised so that a remote name can never leave the folder
/// (`..`, `.`, empty and unusual characters become `_`).
pub fn reports_folder(label: &str) -> String {
    let (scheme, rest) = label.split_once("://").unwrap_or(("remote", label));
    std::iter::once(scheme)
        .chain(rest.split('/'))
        .map(|c| {
            let c: String = c
                .chars()
                .map(|ch| {
                    if ch.is_ascii_alphanumeric() || "._:@=+,-".contains(ch) {
                        ch
                    } else {
                        '_'
                    }
                })
                .collect();
            if c.is_empty() || c == "." || c == ".." {
                "_".to_string()
            } else {
                c
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Read one remote state's analysis with its local drift report and baseline
/// (when `remote.reports_dir` is set) and its policies.
/// Blocking: parses the state and reads local files.
fn analyse_remote(src: &Fetched, sm: &mut SourceMemory, ctx: &Ctx) -> Analysis {
    let files = ctx.sidecars.as_ref().map(|s| s.files(&src.label));
    let drift = files.as_ref().map(|(d, _)| d as &dyn StateSource);
    let baseline = files
        .as_ref()
        .and_then(|(_, b)| b.as_ref())
        .map(|b| b as &dyn StateSource);
    let mut a = analyse_with_policies(
        TargetSources {
            state: src,
            drift,
            baseline,
        },
        &mut sm.analysis,
        ctx.policies.as_deref(),
    );
    a.drift_run = files
        .as_ref()
        .and_then(|(d, _)| super::drift_runner::status::read_beside(&d.path))
        .map(Box::new);
    a
}

/// What every state of a collection shares.
#[derive(Clone)]
struct Ctx {
    budget: Budget,
    sidecars: Option<Arc<Sidecars>>,
    policies: Option<Arc<PolicySet>>,
}

enum Entry {
    Ready(String, Box<dyn StateBackend>),
    Failed(String, String, RemoteError),
}

/// One configured remote entry: `backends[i]` or `working_dirs[i]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryRef {
    Backend(usize),
    WorkingDir(usize),
}

impl EntryRef {
    /// Every configured entry with its key, in configuration order.
    pub fn all(cfg: &TerraformConfig) -> Vec<(String, EntryRef)> {
        let backends = (0..cfg.backends.len()).map(|i| (format!("backends[{i}]"), EntryRef::Backend(i)));
        let dirs = (0..cfg.working_dirs.len())
            .map(|i| (format!("working_dirs[{i}]"), EntryRef::WorkingDir(i)));
        backends.chain(dirs).collect()
    }

    /// Build this entry (blocking: secret files, working directory records,
    /// the AWS credential chain); `None`: a working directory with no backend.
    fn build(self, cfg: &TerraformConfig, base: &Path, budget: &Budget, env: &Env) -> Option<Entry> {
        match self {
            EntryRef::Backend(i) => {
                let spec = cfg.backends.get(i)?;
                let key = format!("backends[{i}]");
                Some(match build(spec, base, cfg.remote.request_timeout.0, budget, env) {
                    Ok(b) => Entry::Ready(key, b),
                    Err(e) => Entry::Failed(key, spec_label(spec, i), e),
                })
            }
            EntryRef::WorkingDir(i) => {
                let dir = cfg.working_dirs.get(i)?;
                let key = format!("working_dirs[{i}]");
                match working_dir_backend(&base.join(dir), base, cfg.remote.request_timeout.0, budget, env) {
                    Ok(Some(b)) => Some(Entry::Ready(key, b)),
                    Ok(None) => None,
                    Err(e) => {
                        let label = e.label.clone();
                        Some(Entry::Failed(key, label, e))
                    }
                }
            }
        }
    }
}

/// Read one remote entry now (build it, discover its states, fetch and
/// analyse them), with its memory; bounded by `deadline`. Each entry is one
/// target of the monitor's schedule, so a failing backend is retried alone.
/// `env`: the environment variables of this collection (credentials, TLS roots).
pub async fn read_entry(
    cfg: Arc<TerraformConfig>,
    base: Arc<PathBuf>,
    which: EntryRef,
    mem: EntryMemory,
    deadline: Instant,
    policies: Option<Arc<PolicySet>>,
    env: Arc<Env>,
) -> (Collected, EntryMemory) {
    let budget = Budget {
        deadline,
        request_timeout: cfg.remote.request_timeout.0,
        retries: cfg.remote.retries,
        max_size: cfg.max_file_size.0,
    };
    let built = {
        let (cfg, base) = (cfg.clone(), base.clone());
        tokio::task::spawn_blocking(move || which.build(&cfg, &base, &budget, &env)).await
    };
    let entry = match built {
        Ok(Some(e)) => e,
        Ok(None) => return (Collected::default(), mem),
        Err(e) => {
            tracing::error!(monitor = "terraform_state", "building a remote backend failed: {e}");
            let mut out = Collected::default();
            out.problems.push(TargetError {
                component: "discovery",
                reason: "internal",
                message: "building a remote backend failed (see the log)".into(),
            });
            out.problem_labels.push("remote".into());
            return (out, mem);
        }
    };
    let ctx = Ctx {
        budget,
        sidecars: Sidecars::of(&cfg, &base).map(Arc::new),
        policies,
    };
    let (_, mem, mut out) = collect_entry(entry, mem, ctx, cfg.remote.concurrency.max(1)).await;
    out.analyses.sort_by(|a, b| a.label.cmp(&b.label));
    out.analyses.dedup_by(|a, b| a.label == b.label);
    (out, mem)
}

/// `remote.reports_dir` is configured but not a readable directory.
pub fn reports_dir_problem(cfg: &TerraformConfig, base: &Path) -> Option<(String, TargetError)> {
    let (s, d) = (Sidecars::of(cfg, base)?, cfg.remote.reports_dir.as_ref()?);
    if s.dir.is_dir() {
        return None;
    }
    let message = format!(
        "remote.reports_dir {d} is not a readable directory: create it or fix the path (drift reports and baselines of remote states are looked for there)"
    );
    Some((
        d.clone(),
        TargetError {
            component: "discovery",
            reason: "not_found",
            message,
        },
    ))
}

/// True if anything remote is configured.
pub fn is_configured(cfg: &TerraformConfig) -> bool {
    !cfg.backends.is_empty() || !cfg.working_dirs.is_empty()
}

/// Collect one entry: discovery, then its states with bounded concurrency.
/// Gives back the entry's key and memory with what was read.
async fn collect_entry(
    entry: Entry,
    mut mem: EntryMemory,
    ctx: Ctx,
    concurrency: usize,
) -> (String, EntryMemory, Collected) {
    let mut out = Collected::default();
    let (key, backend, failure) = match entry {
        Entry::Ready(key, b) => match b.discover(&ctx.budget).await {
            Ok(targets) => {
                // The backend listed every state; this replica reads only its shard's (by label).
                mem.targets = targets.into_iter().filter(|t| crate::core::shard::owns(&t.label)).collect();
                (key, Some(b), None)
            }
            Err(e) => {
                let label = b.label().to_string();
                (key, None, Some((label, e)))
            }
        },
        Entry::Failed(key, label, e) => (key, None, Some((label, e))),
    };
    if let Some((label, e)) = &failure {
        tracing::warn!(monitor = "terraform_state", target = %label, reason = e.reason, "{}", e);
        // The states listed last time, less those another shard owns now (the
        // total follows the StatefulSet at run time, issue 19).
        mem.targets.retain(|t| crate::core::shard::owns(&t.label));
        if mem.targets.is_empty() {
            out.problems.push(TargetError {
                component: "discovery",
                reason: e.reason,
                message: e.to_string(),
            });
            out.problem_labels.push(label.clone());
            return (key, mem, out);
        }
    }
    // Take each target's memory out (states no longer discovered are forgotten).
    let targets = std::mem::take(&mut mem.targets);
    let work: Vec<(Target, SourceMemory)> = targets
        .iter()
        .map(|t| (t.clone(), mem.sources.remove(&t.label).unwrap_or_default()))
        .collect();
    mem.sources.clear();
    mem.targets = targets;
    let (backend, failure, ctx) = (backend.as_deref(), failure.as_ref(), &ctx);
    let results: Vec<(Target, SourceMemory, Option<Analysis>)> = futures::stream::iter(work)
        .map(|(t, sm)| async move {
            match (backend, failure) {
                (Some(b), _) => one(b, t, sm, ctx).await,
                // Discovery failed: the states found before keep their last
                // good values, marked stale.
                (None, Some((_, e))) => {
                    let src = Fetched {
                        label: t.label.clone(),
                        result: Err(e.clone().relabel(&t.label)),
                    };
                    let (sm, a) = analyse_blocking(src, sm, t.lock, ctx).await;
                    (t, sm, a)
                }
                (None, None) => (t, sm, None),
            }
        })
        .buffered(concurrency)
        .collect()
        .await;
    for (t, sm, a) in results {
        if let Some(a) = a {
            out.analyses.push(std::sync::Arc::new(a));
        }
        mem.sources.insert(t.label, sm);
    }
    (key, mem, out)
}

/// Fetch one remote state, then analyse it on the blocking pool. `None`:
/// the backend has no state there yet.
async fn one(
    backend: &dyn StateBackend,
    t: Target,
    mut sm: SourceMemory,
    ctx: &Ctx,
) -> (Target, SourceMemory, Option<Analysis>) {
    // Ask for "unchanged" only if the analysis still holds the parse of that version.
    let known = match (&sm.version, sm.stamp, sm.analysis.state.as_ref()) {
        (Some(v), Some(s), Some(c)) if c.stamp == s => Some(v.clone()),
        _ => None,
    };
    let mut transferred = 0u64;
    let fetched = backend
        .fetch(&t, known.as_deref(), &ctx.budget, &mut transferred)
        .await;
    sm.bytes_total = sm.bytes_total.saturating_add(transferred);
    let result = match fetched {
        Ok(Fetch::NoState) => {
            tracing::debug!(monitor = "terraform_state", state_file = %t.label, "no state at this location yet");
            return (t, sm, None);
        }
        Ok(Fetch::NotModified) => match sm.stamp {
            Some(s) => Ok((s, None)),
            None => Err(RemoteError::new(
                &t.label,
                "protocol",
                "not-modified answer to an unconditional request",
            )),
        },
        Ok(Fetch::Body {
            bytes,
            version,
            modified,
        }) => check_json(&t.label, &bytes).map(|()| {
            let mut h = std::hash::DefaultHasher::new();
            match &version {
                Some(v) => v.hash(&mut h),
                None => bytes.hash(&mut h),
            }
            let stamp = Stamp {
                size: bytes.len() as u64,
                modified,
                inode: h.finish(),
            };
            sm.version = version;
            sm.stamp = Some(stamp);
            (stamp, Some(bytes))
        }),
        Err(e) => Err(e),
    };
    let src = Fetched {
        label: t.label.clone(),
        result,
    };
    let (sm, a) = analyse_blocking(src, sm, t.lock, ctx).await;
    (t, sm, a)
}

/// Analyse one fetched state on the blocking pool (parse, local drift report
/// and baseline, policies).
async fn analyse_blocking(
    src: Fetched,
    mut sm: SourceMemory,
    lock: Option<LockState>,
    ctx: &Ctx,
) -> (SourceMemory, Option<Analysis>) {
    let ctx = ctx.clone();
    let label = src.label.clone();
    let analysed = tokio::task::spawn_blocking(move || {
        let mut a = analyse_remote(&src, &mut sm, &ctx);
        a.lock = lock;
        a.remote_bytes = Some(sm.bytes_total);
        (sm, a)
    })
    .await;
    match analysed {
        Ok((sm, a)) => (sm, Some(a)),
        Err(e) => {
            tracing::error!(monitor = "terraform_state", state_file = %label, "the analysis failed: {e}");
            (SourceMemory::default(), None)
        }
    }
}

/// A state document must be a JSON object: catch HTML login pages and proxies' error pages.
fn check_json(label: &str, bytes: &[u8]) -> Result<(), RemoteError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        Some(b'<') => Err(RemoteError::new(
            label,
            "not_json",
            "the answer is HTML, not a state (a login page or a proxy error?)",
        )),
        Some(_) => Err(RemoteError::new(
            label,
            "not_json",
            "the answer is not a JSON state",
        )),
        None => Err(RemoteError::new(label, "not_json", "the answer is empty")),
    }
}

/// The outcome of a fetch, seen by the analysis as a source.
struct Fetched {
    label: String,
    result: Result<(Stamp, Option<Vec<u8>>), RemoteError>,
}

impl StateSource for Fetched {
    fn label(&self) -> &str {
        &self.label
    }

    fn stamp(&self) -> Result<Stamp, SourceError> {
        match &self.result {
            Ok((s, _)) => Ok(*s),
            Err(e) => Err(source_error(e.clone())),
        }
    }

    fn open(&self) -> Result<(Box<dyn Read + Send>, Stamp), SourceError> {
        match &self.result {
            Ok((s, Some(bytes))) => Ok((Box::new(std::io::Cursor::new(bytes.clone())), *s)),
            Ok((_, None)) => Err(source_error(RemoteError::new(
                &self.label,
                "protocol",
                "unchanged, but the earlier copy is gone",
            ))),
            Err(e) => Err(source_error(e.clone())),
        }
    }
}

/// A remote failure as the analysis sees a source failure.
fn source_error(e: RemoteError) -> SourceError {
    SourceError::Remote {
        label: e.label,
        reason: e.reason,
        message: e.message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_not_json() {
        assert_eq!(check_json("x", b"  <html>").unwrap_err().reason, "not_json");
        assert_eq!(check_json("x", b"").unwrap_err().reason, "not_json");
        assert!(check_json("x", b"\n{\"version\":4}").is_ok());
    }

    #[test]
    fn reports_folders_are_readable_and_stay_inside() {
        assert_eq!(
            reports_folder("s3://tfstate/env:/prod/app/terraform.tfstate"),
            "s3/tfstate/env:/prod/app/terraform.tfstate"
        );
        assert_eq!(
            reports_folder("pg://db.lan:5432/tf/default"),
            "pg/db.lan:5432/tf/default"
        );
        assert_eq!(
            reports_folder("https://gitlab.lan/api/v4/projects/42/terraform/state/prod"),
            "https/gitlab.lan/api/v4/projects/42/terraform/state/prod"
        );
        // A hostile object key cannot climb out of reports_dir.
        let f = reports_folder("s3://b/../../etc/passwd");
        assert_eq!(f, "s3/b/_/_/etc/passwd");
        assert!(!f.split('/').any(|c| c == ".." || c == "." || c.is_empty()));
        assert_eq!(reports_folder("s3://b//a b"), "s3/b/_/a_b");
        let s = Sidecars {
            dir: PathBuf::from("/r"),
            drift_report: "{stem}.drift.json".into(),
            baseline: Some("baseline.tfstate".into()),
            max_size: 1,
        };
        let (d, b) = s.files("s3://b/app/terraform.tfstate");
        assert_eq!(
            d.path,
            PathBuf::from("/r/s3/b/app/terraform.tfstate/terraform.drift.json")
        );
        assert_eq!(
            b.map(|b| b.path),
            Some(PathBuf::from(
                "/r/s3/b/app/terraform.tfstate/baseline.tfstate"
            ))
        );
    }

}

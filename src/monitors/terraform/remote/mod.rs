//! Remote Terraform state: HTTP (GitLab/Gitea), S3-compatible, PostgreSQL
//! (`pg` backend), HCP Terraform, and backends recorded in a working
//! directory's `.terraform/terraform.tfstate` (zero-config).
//!
//! Each configured entry becomes a [`Backend`]: `discover` lists its states
//! (targets), `fetch` reads one state, conditionally (ETag, md5, state version
//! id) so that an unchanged state is not downloaded again. A fetched body is
//! handed to the same analysis as local files through [`StateSource`], so
//! last-good values, stale marking and change events work unchanged.
//!
//! Labels (`state_file`) are stable and readable, never hold credentials:
//! `http://host/path`, `s3://bucket/key`, `pg://host:port/db/workspace`,
//! `hcp://org/workspace` (see docs/remote-state.md).

pub mod aws_credentials;
pub mod client;
mod gitlab;
mod hcp;
mod http;
mod pg;
mod pg_tls;
mod s3;
mod sigv4;
mod workdir;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{RemoteBackend, TerraformConfig};

pub use super::analysis::LockState;
use super::analysis::{analyse, Analysis, TargetError, TargetMemory, TargetSources};
use super::policy::{self, PolicySet};
use super::source::{sibling_path, LocalFile, SourceError, Stamp, StateSource};
use client::Budget;

/// A failure of one remote source, with a bounded `reason` label.
/// The message names the source; it never holds a URL query, a header value,
/// a credential or state content.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{label}: {message}")]
pub struct RemoteError {
    pub label: String,
    pub reason: &'static str,
    pub message: String,
    /// Worth retrying (connection problems, timeouts, 5xx).
    pub retryable: bool,
}

impl RemoteError {
    pub fn new(label: &str, reason: &'static str, message: impl Into<String>) -> Self {
        RemoteError {
            label: label.to_string(),
            reason,
            message: message.into(),
            retryable: false,
        }
    }

    fn relabel(mut self, label: &str) -> Self {
        self.label = label.to_string();
        self
    }

    fn into_source(self) -> SourceError {
        SourceError::Remote {
            label: self.label,
            reason: self.reason,
            message: self.message,
        }
    }
}

/// One state found by discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The `state_file` label.
    pub label: String,
    /// Backend-specific identity (object key, workspace name or id).
    pub id: String,
    /// Lock state, when the backend's listing shows it.
    pub lock: Option<LockState>,
}

/// Result of a fetch.
#[derive(Debug)]
pub enum Fetch {
    /// New content, with a version token (ETag, md5, state version id) when known.
    Body {
        bytes: Vec<u8>,
        version: Option<String>,
        modified: Option<SystemTime>,
    },
    /// The version passed as `known` is still current: nothing was downloaded.
    NotModified,
    /// The backend has no state at this location yet (HTTP 204, no current version).
    NoState,
}

impl Fetch {
    /// The answer to a conditional GET of a state (`If-None-Match: known`):
    /// 200 a state, 204 no state yet, 304 unchanged, anything else an error.
    /// Counts the body in `transferred`.
    pub(crate) fn from_response(
        label: &str,
        r: client::Response,
        known: Option<&str>,
        transferred: &mut u64,
    ) -> Result<Fetch, RemoteError> {
        *transferred += r.body.len() as u64;
        match r.status {
            200 => Ok(Fetch::Body {
                modified: r.last_modified.as_deref().and_then(http_date),
                version: r.etag,
                bytes: r.body,
            }),
            204 => Ok(Fetch::NoState),
            304 if known.is_some() => Ok(Fetch::NotModified),
            s => Err(client::status_error(label, s)),
        }
    }
}

/// A remote backend entry.
pub trait Backend: Send + Sync {
    /// Label of the entry itself (for discovery errors).
    fn label(&self) -> &str;
    /// List the states of this entry.
    fn discover(&self, budget: &Budget) -> Result<Vec<Target>, RemoteError>;
    /// Read one state; `known` is the version token of the copy already parsed.
    /// `transferred` counts bytes received for this state.
    fn fetch(
        &self,
        target: &Target,
        known: Option<&str>,
        budget: &Budget,
        transferred: &mut u64,
    ) -> Result<Fetch, RemoteError>;
}

/// Build the backend of one configured entry (secrets are read here, every collection,
/// so rotated tokens are picked up).
fn build(
    spec: &RemoteBackend,
    base: &Path,
    cfg: &TerraformConfig,
    budget: &Budget,
) -> Result<Box<dyn Backend>, RemoteError> {
    let timeout = cfg.remote.request_timeout.0;
    match spec {
        RemoteBackend::Http(h) => {
            http::HttpBackend::from_config(h, base, timeout).map(|b| Box::new(b) as _)
        }
        RemoteBackend::S3(s) => {
            s3::S3Backend::from_config(s, base, timeout, budget).map(|b| Box::new(b) as _)
        }
        RemoteBackend::Pg(p) => {
            pg::PgBackend::from_config(p, base, timeout).map(|b| Box::new(b) as _)
        }
        RemoteBackend::Hcp(h) => {
            hcp::HcpBackend::from_config(h, base, timeout).map(|b| Box::new(b) as _)
        }
        RemoteBackend::Gitlab(g) => {
            gitlab::GitlabBackend::from_config(g, base, timeout).map(|b| Box::new(b) as _)
        }
    }
}

/// A label for an entry that could not be built (no secret needed to compute it).
fn spec_label(spec: &RemoteBackend, i: usize) -> String {
    match spec {
        RemoteBackend::Http(h) => http::label_of(&h.address),
        RemoteBackend::S3(s) => format!(
            "s3://{}/{}",
            s.bucket,
            s.key.as_deref().or(s.prefix.as_deref()).unwrap_or("")
        ),
        RemoteBackend::Pg(_) => format!("pg://backends[{i}]"),
        RemoteBackend::Hcp(h) => hcp::org_label(&h.address, &h.organization),
        RemoteBackend::Gitlab(g) => gitlab::entry_label(&g.url, &g.project),
    }
}

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
struct EntryMemory {
    targets: Vec<Target>,
    sources: HashMap<String, SourceMemory>,
}

/// Every remote entry of a monitor, with its memory.
#[derive(Debug, Default)]
pub struct RemoteSet {
    memory: Mutex<HashMap<String, EntryMemory>>,
}

/// Backend entries collected at the same time.
const ENTRY_THREADS: usize = 16;

pub const BYTES: crate::snapshot::MetricDef = crate::snapshot::MetricDef::counter(
    "terraform_state_remote_bytes",
    "Bytes of remote state received from the backend since the exporter started (an unchanged state costs 0: requests are conditional).",
);

/// The output of one collection of remote sources.
#[derive(Debug, Default, Clone)]
pub struct Collected {
    pub analyses: Vec<Analysis>,
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
        let folder = reports_folder(label);
        // The state's last label component plays the state file's name, so that
        // `{stem}` / `{file}` work as beside local states.
        let file = folder.rsplit('/').next().unwrap_or("state").to_string();
        let virtual_state = self.dir.join(&folder).join(file);
        let local = |template: &str| {
            let path = sibling_path(&virtual_state, template);
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            LocalFile {
                label: format!("{folder}/{name}"),
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
fn analyse_remote(src: &Fetched, sm: &mut SourceMemory, ctx: &Ctx<'_>) -> Analysis {
    let files = ctx.sidecars.map(|s| s.files(&src.label));
    let drift = files.as_ref().map(|(d, _)| d as &dyn StateSource);
    let baseline = files
        .as_ref()
        .and_then(|(_, b)| b.as_ref())
        .map(|b| b as &dyn StateSource);
    let mut a = analyse(
        TargetSources {
            state: src,
            drift,
            baseline,
        },
        &mut sm.analysis,
    );
    if let (Some(set), Some(false)) = (ctx.policies, a.state.as_ref().map(|s| s.encrypted)) {
        a.policy = policy::evaluate_target(set, src, drift, &mut sm.analysis.policy);
    }
    a
}

/// What every state of a collection shares.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    budget: &'a Budget,
    sidecars: Option<&'a Sidecars>,
    policies: Option<&'a PolicySet>,
}

enum Entry {
    Ready(String, Box<dyn Backend>),
    Failed(String, String, RemoteError),
}

impl RemoteSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// True if nothing remote is configured.
    pub fn is_configured(cfg: &TerraformConfig) -> bool {
        !cfg.backends.is_empty() || !cfg.working_dirs.is_empty()
    }

    /// Discover and read every remote state (blocking; bounded by `deadline`).
    pub fn collect(
        &self,
        cfg: &TerraformConfig,
        base: &Path,
        deadline: Instant,
        policies: Option<&PolicySet>,
    ) -> Collected {
        let budget = Budget {
            deadline,
            request_timeout: cfg.remote.request_timeout.0,
            retries: cfg.remote.retries,
            max_size: cfg.max_file_size.0,
        };
        let mut entries = Vec::new();
        let mut out = Collected::default();
        for (i, spec) in cfg.backends.iter().enumerate() {
            let key = format!("backends[{i}]");
            match build(spec, base, cfg, &budget) {
                Ok(b) => entries.push(Entry::Ready(key, b)),
                Err(e) => entries.push(Entry::Failed(key, spec_label(spec, i), e)),
            }
        }
        for (i, dir) in cfg.working_dirs.iter().enumerate() {
            let key = format!("working_dirs[{i}]");
            let path: PathBuf = base.join(dir);
            match workdir::backend_of(&path, base, cfg.remote.request_timeout.0, &budget) {
                Ok(Some(b)) => entries.push(Entry::Ready(key, b)),
                Ok(None) => {}
                Err(e) => {
                    let label = e.label.clone();
                    entries.push(Entry::Failed(key, label, e))
                }
            }
        }
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let mut work: Vec<(Entry, EntryMemory)> = entries
            .into_iter()
            .map(|e| {
                let k = match &e {
                    Entry::Ready(k, _) | Entry::Failed(k, _, _) => k.clone(),
                };
                let m = memory.remove(&k).unwrap_or_default();
                (e, m)
            })
            .collect();
        memory.clear();
        let concurrency = cfg.remote.concurrency.max(1);
        let sidecars = Sidecars::of(cfg, base);
        if let (Some(s), Some(d)) = (&sidecars, &cfg.remote.reports_dir) {
            if !s.dir.is_dir() {
                let message = format!(
                    "remote.reports_dir {d} is not a readable directory: create it or fix the path (drift reports and baselines of remote states are looked for there)"
                );
                tracing::warn!(monitor = "terraform_state", target = %d, "{message}");
                out.problems.push(TargetError {
                    component: "discovery",
                    reason: "not_found",
                    message,
                });
                out.problem_labels.push(d.clone());
            }
        }
        let ctx = Ctx {
            budget: &budget,
            sidecars: sidecars.as_ref(),
            policies,
        };
        // Entries run side by side, at most ENTRY_THREADS at once (a config
        // with hundreds of http entries must not start hundreds of threads);
        // each worker takes the next entry when it is done with one.
        let workers = work.len().clamp(1, ENTRY_THREADS);
        let queue = Mutex::new(work.iter_mut());
        let results: Vec<Collected> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let queue = &queue;
                    scope.spawn(move || {
                        let mut done = Vec::new();
                        loop {
                            let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                            let Some((e, m)) = next else { break };
                            done.push(collect_entry(e, m, ctx, concurrency));
                        }
                        done
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for r in results {
            out.analyses.extend(r.analyses);
            out.problems.extend(r.problems);
            out.problem_labels.extend(r.problem_labels);
        }
        for (e, m) in work {
            let k = match e {
                Entry::Ready(k, _) | Entry::Failed(k, _, _) => k,
            };
            memory.insert(k, m);
        }
        out.analyses.sort_by(|a, b| a.label.cmp(&b.label));
        out.analyses.dedup_by(|a, b| a.label == b.label);
        out
    }
}

/// Collect one entry: discovery, then its states with bounded concurrency.
fn collect_entry(
    entry: &Entry,
    mem: &mut EntryMemory,
    ctx: Ctx<'_>,
    concurrency: usize,
) -> Collected {
    let mut out = Collected::default();
    let (backend, failure) = match entry {
        Entry::Ready(_, b) => match b.discover(ctx.budget) {
            Ok(targets) => {
                mem.targets = targets;
                (Some(b), None)
            }
            Err(e) => (None, Some((b.label().to_string(), e))),
        },
        Entry::Failed(_, label, e) => (None, Some((label.clone(), e.clone()))),
    };
    if let Some((label, e)) = failure {
        tracing::warn!(monitor = "terraform_state", target = %label, reason = e.reason, "{}", e);
        if mem.targets.is_empty() {
            out.problems.push(TargetError {
                component: "discovery",
                reason: e.reason,
                message: e.to_string(),
            });
            out.problem_labels.push(label);
            return out;
        }
        // Keep the states found before: their last good values stay, marked stale.
        for t in &mem.targets {
            let sm = mem.sources.entry(t.label.clone()).or_default();
            let src = Fetched {
                label: t.label.clone(),
                result: Err(e.clone().relabel(&t.label)),
            };
            let mut a = analyse_remote(&src, sm, &ctx);
            a.lock = t.lock;
            a.remote_bytes = Some(sm.bytes_total);
            out.analyses.push(a);
        }
        return out;
    }
    let Some(backend) = backend else { return out };
    // Take each target's memory out (states no longer discovered are forgotten).
    let mut work: Vec<(&Target, SourceMemory)> = mem
        .targets
        .iter()
        .map(|t| (t, mem.sources.remove(&t.label).unwrap_or_default()))
        .collect();
    mem.sources.clear();
    let threads = concurrency.min(work.len()).max(1);
    let per = work.len().div_ceil(threads).max(1);
    let results: Vec<Option<Analysis>> = std::thread::scope(|scope| {
        let handles: Vec<_> = work
            .chunks_mut(per)
            .map(|chunk| {
                let backend = &**backend;
                scope.spawn(move || {
                    chunk
                        .iter_mut()
                        .map(|(t, sm)| one(backend, t, sm, &ctx))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    for ((t, sm), a) in work.into_iter().zip(results) {
        if let Some(a) = a {
            out.analyses.push(a);
        }
        mem.sources.insert(t.label.clone(), sm);
    }
    out
}

/// Fetch and analyse one remote state. `None`: the backend has no state there yet.
fn one(
    backend: &dyn Backend,
    t: &Target,
    sm: &mut SourceMemory,
    ctx: &Ctx<'_>,
) -> Option<Analysis> {
    let budget = ctx.budget;
    // Ask for "unchanged" only if the analysis still holds the parse of that version.
    let known = match (&sm.version, sm.stamp, sm.analysis.state.as_ref()) {
        (Some(v), Some(s), Some(c)) if c.stamp == s => Some(v.clone()),
        _ => None,
    };
    let mut transferred = 0u64;
    let fetched = backend.fetch(t, known.as_deref(), budget, &mut transferred);
    sm.bytes_total = sm.bytes_total.saturating_add(transferred);
    let result = match fetched {
        Ok(Fetch::NoState) => {
            tracing::debug!(monitor = "terraform_state", state_file = %t.label, "no state at this location yet");
            return None;
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
    let mut a = analyse_remote(&src, sm, ctx);
    a.lock = t.lock;
    a.remote_bytes = Some(sm.bytes_total);
    Some(a)
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
            Err(e) => Err(e.clone().into_source()),
        }
    }

    fn open(&self) -> Result<(Box<dyn Read + Send>, Stamp), SourceError> {
        match &self.result {
            Ok((s, Some(bytes))) => Ok((Box::new(std::io::Cursor::new(bytes.clone())), *s)),
            Ok((_, None)) => Err(RemoteError::new(
                &self.label,
                "protocol",
                "unchanged, but the earlier copy is gone",
            )
            .into_source()),
            Err(e) => Err(e.clone().into_source()),
        }
    }
}

/// `host[:port]` of a URL (no port when it is the scheme's default), for
/// labels, the `Host` that SigV4 signs, and Terraform's credential names.
pub(crate) fn host_port(u: &url::Url) -> String {
    let host = u.host_str().unwrap_or("");
    match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// `host[:port]` of an address that may not parse (then empty).
pub(crate) fn host_port_of(address: &str) -> String {
    url::Url::parse(address)
        .map(|u| host_port(&u))
        .unwrap_or_default()
}

/// Parse an HTTP date (`Last-Modified`).
pub(crate) fn http_date(s: &str) -> Option<SystemTime> {
    let z = jiff::fmt::rfc2822::parse(s).ok()?;
    system_time(z.timestamp())
}

/// Parse an RFC 3339 time.
pub(crate) fn rfc3339(s: &str) -> Option<SystemTime> {
    system_time(s.parse::<jiff::Timestamp>().ok()?)
}

fn system_time(t: jiff::Timestamp) -> Option<SystemTime> {
    let secs = u64::try_from(t.as_second()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// The deadline of a collection that must finish within `timeout`.
pub fn deadline_for(timeout: Duration) -> Instant {
    Instant::now() + timeout.mul_f64(0.9)
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

    #[test]
    fn dates() {
        assert!(http_date("Wed, 21 Oct 2015 07:28:00 GMT").is_some());
        assert!(rfc3339("2024-01-02T03:04:05.000Z").is_some());
    }
}

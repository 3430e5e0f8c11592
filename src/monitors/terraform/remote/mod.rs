//! Remote Terraform state: HTTP (GitLab/Gitea), S3-compatible, PostgreSQL
//! (`pg` backend), HCP Terraform, and backends recorded in a working
//! directory's `.terraform/terraform.tfstate` (zero-config).
//!
//! Each configured entry becomes a [`StateBackend`]: `discover` lists its
//! states (targets), `fetch` reads one state, conditionally (ETag, md5, state
//! version id) so that an unchanged state is not downloaded again. Backends
//! are async (`reqwest`, `tokio-postgres`); entries and their states are read
//! side by side with bounded concurrency (`buffered` streams, no threads of
//! their own), and each fetched body is parsed on the blocking pool by the
//! same analysis as local files, through [`StateSource`], so last-good values,
//! stale marking and change events work unchanged.
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

use crate::net::tls;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;

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

/// A remote backend entry: where states are listed and read.
#[async_trait::async_trait]
pub trait StateBackend: Send + Sync {
    /// Label of the entry itself (for discovery errors).
    fn label(&self) -> &str;
    /// List the states of this entry.
    async fn discover(&self, budget: &Budget) -> Result<Vec<Target>, RemoteError>;
    /// Read one state; `known` is the version token of the copy already parsed.
    /// `transferred` counts bytes received for this state.
    async fn fetch(
        &self,
        target: &Target,
        known: Option<&str>,
        budget: &Budget,
        transferred: &mut u64,
    ) -> Result<Fetch, RemoteError>;
}

/// Build the backend of one configured entry (secrets are read here, every collection,
/// so rotated tokens are picked up). Blocking: files, the credential chain.
fn build(
    spec: &RemoteBackend,
    base: &Path,
    cfg: &TerraformConfig,
    budget: &Budget,
) -> Result<Box<dyn StateBackend>, RemoteError> {
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
pub struct EntryMemory {
    targets: Vec<Target>,
    sources: HashMap<String, SourceMemory>,
}


/// Backend entries collected at the same time.
pub const ENTRY_CONCURRENCY: usize = 16;

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
/// Blocking: parses the state and reads local files.
fn analyse_remote(src: &Fetched, sm: &mut SourceMemory, ctx: &Ctx) -> Analysis {
    let files = ctx.sidecars.as_ref().map(|s| s.files(&src.label));
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
    a.drift_run = files
        .as_ref()
        .and_then(|(d, _)| super::drift_runner::status::read_beside(&d.path));
    if let (Some(set), Some(false)) = (&ctx.policies, a.state.as_ref().map(|s| s.encrypted)) {
        a.policy = policy::evaluate_target(set, src, drift, &mut sm.analysis.policy);
    }
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
    fn build(self, cfg: &TerraformConfig, base: &Path, budget: &Budget) -> Option<Entry> {
        match self {
            EntryRef::Backend(i) => {
                let spec = cfg.backends.get(i)?;
                let key = format!("backends[{i}]");
                Some(match build(spec, base, cfg, budget) {
                    Ok(b) => Entry::Ready(key, b),
                    Err(e) => Entry::Failed(key, spec_label(spec, i), e),
                })
            }
            EntryRef::WorkingDir(i) => {
                let dir = cfg.working_dirs.get(i)?;
                let key = format!("working_dirs[{i}]");
                match workdir::backend_of(&base.join(dir), base, cfg.remote.request_timeout.0, budget) {
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
pub async fn read_entry(
    cfg: Arc<TerraformConfig>,
    base: Arc<PathBuf>,
    which: EntryRef,
    mem: EntryMemory,
    deadline: Instant,
    policies: Option<Arc<PolicySet>>,
) -> (Collected, EntryMemory) {
    let budget = Budget {
        deadline,
        request_timeout: cfg.remote.request_timeout.0,
        retries: cfg.remote.retries,
        max_size: cfg.max_file_size.0,
    };
    let built = {
        let (cfg, base) = (cfg.clone(), base.clone());
        tokio::task::spawn_blocking(move || which.build(&cfg, &base, &budget)).await
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
                mem.targets = targets;
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
            out.analyses.push(a);
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

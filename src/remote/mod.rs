//! Remote-state sources: HTTP (GitLab/Gitea), S3-compatible, PostgreSQL
//! (`pg` backend), HCP Terraform, and backends recorded in a working
//! directory's `.terraform/terraform.tfstate` (zero-config).
//!
//! Each configured entry becomes a [`StateBackend`]: `discover` lists its
//! states (targets), `fetch` reads one state, conditionally (ETag, md5, state
//! version id) so that an unchanged state is not downloaded again. Backends
//! are async (`reqwest`, `tokio-postgres`) and know nothing of Terraform's
//! state format: the Terraform monitor (`monitors/terraform/remote.rs`) reads
//! entries through this layer and parses what it fetches.
//!
//! Labels (`state_file`) are stable and readable, never hold credentials:
//! `http://host/path`, `s3://bucket/key`, `pg://host:port/db/workspace`,
//! `hcp://org/workspace` (see docs/remote-state.md).

pub mod aws_credentials;
pub mod client;
pub mod config;
pub mod env;
mod gitlab;
mod hcp;
mod http;
mod pg;
mod pg_tls;
mod s3;
mod sigv4;
mod workdir;

use crate::net::tls;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use client::Budget;
use config::RemoteBackend;
pub use env::Env;
pub use workdir::backend_of as working_dir_backend;
pub use workdir::state_label_of as working_dir_state_label;

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

    pub fn relabel(mut self, label: &str) -> Self {
        self.label = label.to_string();
        self
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

/// Whether a state is locked, where the backend shows it (S3 lock files of
/// `use_lockfile`, HCP workspaces); `since` when the backend tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockState {
    pub locked: bool,
    pub since: Option<SystemTime>,
}

/// Build the backend of one configured entry (secrets are read here, every collection,
/// so rotated tokens are picked up). Blocking: files, the credential chain.
/// `env`: the environment variables to read (a snapshot of the process's
/// taken for this collection, or a test's map).
pub fn build(
    spec: &RemoteBackend,
    base: &Path,
    timeout: Duration,
    budget: &Budget,
    env: &Env,
) -> Result<Box<dyn StateBackend>, RemoteError> {
    match spec {
        RemoteBackend::Http(h) => {
            http::HttpBackend::from_config(h, base, timeout, env).map(|b| Box::new(b) as _)
        }
        RemoteBackend::S3(s) => {
            s3::S3Backend::from_config(s, base, timeout, budget, env).map(|b| Box::new(b) as _)
        }
        RemoteBackend::Pg(p) => {
            pg::PgBackend::from_config(p, base, timeout, env).map(|b| Box::new(b) as _)
        }
        RemoteBackend::Hcp(h) => {
            hcp::HcpBackend::from_config(h, base, timeout, env).map(|b| Box::new(b) as _)
        }
        RemoteBackend::Gitlab(g) => {
            gitlab::GitlabBackend::from_config(g, base, timeout, env).map(|b| Box::new(b) as _)
        }
    }
}

/// A label for an entry that could not be built (no secret needed to compute it).
pub fn spec_label(spec: &RemoteBackend, i: usize) -> String {
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
    fn dates() {
        assert!(http_date("Wed, 21 Oct 2015 07:28:00 GMT").is_some());
        assert!(rfc3339("2024-01-02T03:04:05.000Z").is_some());
    }
}

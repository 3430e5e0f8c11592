//! `custom_monitors.terraform_state`: the Terraform monitor's config block,
//! its defaults and checks (remote backends included).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::config::values::monitor_config;
use crate::config::values::{ByteSize, GlobPattern, HumanDuration};
use crate::monitors::kind::ConfigIssue;

monitor_config! {
    /// `custom_monitors.terraform_state`.
    pub struct TerraformConfig {
        default check_interval: Duration::from_secs(300);
        /// Globs of state files, relative to the config file's folder.
        #[serde(default)]
        pub state_files: Vec<GlobPattern>,
        /// Folders searched recursively for `*.tfstate` (`.terraform/` skipped).
        #[serde(default)]
        pub state_dirs: Vec<GlobPattern>,
        /// File name of the drift report beside each state (`{stem}` = state file name without `.tfstate`).
        #[serde(default = "TerraformConfig::default_drift_report")]
        pub drift_report: String,
        /// File name of the approved copy beside each state; optional.
        #[serde(default)]
        pub baseline: Option<String>,
        /// Largest file read (state, drift report, baseline; also remote states).
        #[serde(default = "default_max_file_size")]
        pub max_file_size: ByteSize,
        /// Remote state backends (docs/remote-state.md).
        #[serde(default)]
        pub backends: Vec<RemoteBackend>,
        /// Terraform working directories whose `.terraform/terraform.tfstate`
        /// records a backend (http, s3, pg, cloud, remote) to read, relative to the config file's folder.
        #[serde(default)]
        pub working_dirs: Vec<String>,
        /// Timeouts, retries and concurrency of remote backends.
        #[serde(default)]
        pub remote: RemoteOptions,
        /// Rego policies evaluated on every state (docs/policies.md): `.rego`
        /// files or folders of them, relative to the config file's folder.
        #[serde(default)]
        pub policies: Vec<String>,
        /// Longest one policy may run on one state before it is stopped.
        #[serde(default = "TerraformConfig::default_policy_timeout")]
        pub policy_timeout: HumanDuration,
        /// `homelab-monitor drift`: the working directories it plans and how
        /// (see the drift runner in the README). The exporter never runs Terraform.
        #[serde(default)]
        pub drift_runner: Option<super::drift_runner::DriftRunnerConfig>,
    }
}

/// `custom_monitors.terraform_state.remote`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteOptions {
    /// Timeout of one request (connect + transfer).
    #[serde(default = "RemoteOptions::default_request_timeout")]
    pub request_timeout: HumanDuration,
    /// Retries of a failed request (unreachable, timeout, 429, 5xx), with backoff and jitter.
    #[serde(default = "RemoteOptions::default_retries")]
    pub retries: u32,
    /// Requests in flight at once per backend entry.
    #[serde(default = "RemoteOptions::default_concurrency")]
    pub concurrency: usize,
    /// Local folder with the drift reports and baselines of remote states,
    /// relative to the config file's folder: `<reports_dir>/<label as a path>/<drift_report>`
    /// (docs/remote-state.md). Unset: remote states have no drift report or baseline.
    #[serde(default)]
    pub reports_dir: Option<String>,
}

impl RemoteOptions {
    fn default_request_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    fn default_retries() -> u32 {
        2
    }
    fn default_concurrency() -> usize {
        4
    }
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            request_timeout: Self::default_request_timeout(),
            retries: Self::default_retries(),
            concurrency: Self::default_concurrency(),
            reports_dir: None,
        }
    }
}

/// One remote backend entry (`type: http | s3 | pg | hcp`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RemoteBackend {
    Http(HttpBackendConfig),
    S3(S3BackendConfig),
    Pg(PgBackendConfig),
    Hcp(HcpBackendConfig),
    Gitlab(GitlabBackendConfig),
}

/// `type: gitlab`: every Terraform state of a GitLab project (GraphQL
/// discovery), each read through GitLab's state API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitlabBackendConfig {
    /// GitLab's base URL; default `https://gitlab.com`.
    #[serde(default = "GitlabBackendConfig::default_url")]
    pub url: String,
    /// The project's full path (`group/project`).
    pub project: String,
    /// Only these state names; empty means every state of the project.
    #[serde(default)]
    pub states: Vec<String>,
    /// A personal, project or group access token with `read_api`.
    pub token: SecretRef,
    #[serde(default)]
    pub ca_file: Option<String>,
}

impl GitlabBackendConfig {
    fn default_url() -> String {
        "https://gitlab.com".into()
    }
}

/// Where a secret comes from: a file (first line) or an environment variable. Never inline.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub env: Option<String>,
}

/// HTTP authentication scheme of an `http` backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpAuth {
    /// No credentials.
    None,
    /// `Authorization: Basic` with `username` and the token as password.
    Basic,
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// GitLab `PRIVATE-TOKEN: <token>`.
    PrivateToken,
    /// GitLab CI `JOB-TOKEN: <token>`.
    JobToken,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpBackendConfig {
    /// The backend's `address` (GitLab: `.../api/v4/projects/<id>/terraform/state/<name>`).
    pub address: String,
    #[serde(default)]
    pub username: Option<String>,
    /// Default: basic with a username, bearer with a token only, none otherwise.
    #[serde(default)]
    pub auth: Option<HttpAuth>,
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// PEM file of extra CA certificates (relative to the config file's folder).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Client certificate (PEM) for mutual TLS; goes with `client_key`.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// Private key (PEM) of `client_cert`.
    #[serde(default)]
    pub client_key: Option<String>,
    /// Accept any server certificate (Terraform's `skip_cert_verification`).
    /// Prefer `ca_file`: this also accepts a man in the middle.
    #[serde(default)]
    pub skip_cert_verification: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3BackendConfig {
    pub bucket: String,
    /// One state key (its workspaces under `workspace_key_prefix` are found too).
    #[serde(default)]
    pub key: Option<String>,
    /// Or every object under this prefix (`.tflock` objects skipped).
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default = "S3BackendConfig::default_region")]
    pub region: String,
    /// S3-compatible endpoint (MinIO, Garage, Ceph), e.g. `https://minio.lan:9000`.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub use_path_style: bool,
    #[serde(default = "S3BackendConfig::default_workspace_key_prefix")]
    pub workspace_key_prefix: String,
    /// Profile in the shared credentials file (default: `AWS_PROFILE`, then `default`).
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub ca_file: Option<String>,
}

impl S3BackendConfig {
    fn default_region() -> String {
        "us-east-1".into()
    }
    fn default_workspace_key_prefix() -> String {
        "env:".into()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgBackendConfig {
    /// The connection string (`postgres://user:pass@host/db`), from a file or env var.
    pub conn_str: SecretRef,
    #[serde(default = "PgBackendConfig::default_schema")]
    pub schema_name: String,
}

impl PgBackendConfig {
    fn default_schema() -> String {
        "terraform_remote_state".into()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HcpBackendConfig {
    #[serde(default = "HcpBackendConfig::default_address")]
    pub address: String,
    pub organization: String,
    /// Workspace names; empty means every workspace matching `tags`/`prefix`.
    #[serde(default)]
    pub workspaces: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    /// API token; default env `TF_TOKEN_<host with . as _>` as Terraform reads it.
    #[serde(default)]
    pub token: Option<SecretRef>,
    #[serde(default)]
    pub ca_file: Option<String>,
}

impl HcpBackendConfig {
    fn default_address() -> String {
        "https://app.terraform.io".into()
    }
}

fn validate_secret(key: &str, s: &SecretRef) -> Result<(), String> {
    match (&s.file, &s.env) {
        (Some(_), Some(_)) => Err(format!("{key}: set file or env, not both")),
        (None, None) => Err(format!("{key}: set file or env")),
        (Some(f), None) if f.is_empty() => Err(format!("{key}.file must not be empty")),
        (None, Some(e)) if e.is_empty() || e.contains('=') || e.contains('\0') => Err(format!(
            "{key}.env must be the name of an environment variable"
        )),
        _ => Ok(()),
    }
}

fn validate_url(key: &str, u: &str) -> Result<(), String> {
    match url::Url::parse(u) {
        Ok(p) if (p.scheme() == "http" || p.scheme() == "https") && p.host_str().is_some() => {
            if p.password().is_some() || !p.username().is_empty() {
                Err(format!(
                    "{key} must not hold credentials; use username and token"
                ))
            } else {
                Ok(())
            }
        }
        _ => Err(format!("{key} must be an http:// or https:// URL")),
    }
}

impl RemoteBackend {
    /// Check one entry; the error names the key inside the entry.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            RemoteBackend::Http(h) => {
                validate_url("address", &h.address)?;
                if let Some(t) = &h.token {
                    validate_secret("token", t)?;
                }
                let auth = h.auth.unwrap_or(HttpAuth::None);
                if auth == HttpAuth::Basic && h.username.is_none() {
                    return Err("auth: basic needs username".into());
                }
                if auth != HttpAuth::None && h.auth.is_some() && h.token.is_none() {
                    return Err("auth needs token (file or env)".into());
                }
                Ok(())
            }
            RemoteBackend::S3(s) => {
                if s.bucket.is_empty() {
                    return Err("bucket must not be empty".into());
                }
                match (&s.key, &s.prefix) {
                    (Some(_), Some(_)) => return Err("set key or prefix, not both".into()),
                    (None, None) => {
                        return Err("set key (one state) or prefix (every state under it)".into())
                    }
                    (Some(k), None) if k.is_empty() || k.ends_with('/') => {
                        return Err("key must be an object key".into())
                    }
                    _ => {}
                }
                if let Some(e) = &s.endpoint {
                    validate_url("endpoint", e)?;
                }
                Ok(())
            }
            RemoteBackend::Pg(p) => {
                validate_secret("conn_str", &p.conn_str)?;
                let ok = p
                    .schema_name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && p.schema_name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    return Err("schema_name must be a plain identifier".into());
                }
                Ok(())
            }
            RemoteBackend::Gitlab(g) => {
                validate_url("url", &g.url)?;
                let segments: Vec<&str> = g.project.split('/').collect();
                if segments.len() < 2 || segments.iter().any(|s| s.is_empty()) {
                    return Err(
                        "project must be the project's full path, e.g. group/project".into(),
                    );
                }
                if g.states.iter().any(|s| s.is_empty()) {
                    return Err("states must not hold an empty name".into());
                }
                validate_secret("token", &g.token)
            }
            RemoteBackend::Hcp(h) => {
                validate_url("address", &h.address)?;
                if h.organization.is_empty() {
                    return Err("organization must not be empty".into());
                }
                if let Some(t) = &h.token {
                    validate_secret("token", t)?;
                }
                Ok(())
            }
        }
    }
}

fn default_max_file_size() -> ByteSize {
    ByteSize(1 << 30)
}


impl TerraformConfig {
    fn default_drift_report() -> String {
        "drift.json".into()
    }
    fn default_policy_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
}

impl Default for TerraformConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            check_interval: default_check_interval(),
            retry_interval: crate::config::values::default_retry(),
            timeout: crate::config::values::default_timeout(),
            state_files: Vec::new(),
            state_dirs: Vec::new(),
            drift_report: Self::default_drift_report(),
            baseline: None,
            max_file_size: default_max_file_size(),
            backends: Vec::new(),
            working_dirs: Vec::new(),
            remote: RemoteOptions::default(),
            policies: Vec::new(),
            policy_timeout: Self::default_policy_timeout(),
            drift_runner: None,
        }
    }
}

/// Cross-field checks (no I/O). Keys are below `terraform_state`.
pub fn validate(t: &TerraformConfig) -> Result<(), ConfigIssue> {
    for (i, b) in t.backends.iter().enumerate() {
        b.validate()
            .map_err(|m| ("backends".to_string(), format!("backends[{i}]: {m}")))?;
    }
    if t.remote.concurrency == 0 || t.remote.request_timeout.0.is_zero() {
        return Err((
            "remote".into(),
            "remote.concurrency and remote.request_timeout must be above zero".into(),
        ));
    }
    if t.remote
        .reports_dir
        .as_deref()
        .is_some_and(|d| d.trim().is_empty())
    {
        return Err((
            "remote.reports_dir".into(),
            "remote.reports_dir is empty: give the folder (relative to this file) that holds the drift reports and baselines of remote states, or remove the key".into(),
        ));
    }
    for (k, v) in [
        ("drift_report", Some(&t.drift_report)),
        ("baseline", t.baseline.as_ref()),
    ] {
        if let Some(v) = v {
            if v.is_empty() || v.contains('/') || v.contains('\\') {
                return Err((
                    k.to_string(),
                    format!("{k} must be a plain file name beside each state file (placeholders {{stem}} and {{file}} allowed), not a path"),
                ));
            }
        }
    }
    if let Some(d) = &t.drift_runner {
        d.validate().map_err(|(k, m)| {
            (
                format!("drift_runner.{k}"),
                format!("drift_runner.{m}"),
            )
        })?;
    }
    if !t.policies.is_empty() && t.policy_timeout.0.is_zero() {
        return Err((
            "policy_timeout".into(),
            "policy_timeout must be longer than zero".into(),
        ));
    }
    Ok(())
}

/// The policy files exist and compile (relative to `base`, the config
/// file's folder). Reads files: run when the config is loaded for use,
/// never by the parser.
pub fn check_files(t: &TerraformConfig, base: &Path) -> Result<(), ConfigIssue> {
    if t.policies.is_empty() {
        return Ok(());
    }
    super::policy::check_config(base, &t.policies).map_err(|e| ("policies".into(), e.to_string()))
}

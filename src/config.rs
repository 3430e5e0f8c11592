//! `monitoring-config.yaml`: loading, validation and clear errors.
//!
//! The seed's file loads unchanged: its `monitoring:` block (the wider stack's
//! settings) is accepted as-is; `custom_monitors:` drives the exporter. Every
//! struct denies unknown keys, and every value is validated here, at load time
//! (durations, globs, thresholds), never at scrape time.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A configuration error, rendered as one message naming file, line, key and a fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The OS error is part of the message and deliberately not a `source()`:
    /// an error chain (`{:#}`) would print it twice.
    #[error("cannot read config file {path}: {error}; check the path given with --config")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Box<InvalidConfig>),
}

/// Where and why a config file is invalid.
#[derive(Debug)]
pub struct InvalidConfig {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub key: String,
    pub message: String,
    pub suggestion: Option<String>,
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render_invalid(
            &self.path,
            &self.line,
            &self.column,
            &self.key,
            &self.message,
            &self.suggestion,
        ))
    }
}

impl ConfigError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "read",
            ConfigError::Invalid(_) => "invalid",
        }
    }
}

fn render_invalid(
    path: &Path,
    line: &Option<usize>,
    column: &Option<usize>,
    key: &str,
    message: &str,
    suggestion: &Option<String>,
) -> String {
    let mut s = format!("invalid config file {}", path.display());
    if let Some(l) = line {
        s.push_str(&format!(", line {l}"));
        if let Some(c) = column {
            s.push_str(&format!(", column {c}"));
        }
    }
    if !key.is_empty() {
        s.push_str(&format!(", key `{key}`"));
    }
    s.push_str(": ");
    s.push_str(message);
    if let Some(sugg) = suggestion {
        s.push_str(&format!("; did you mean `{sugg}`?"));
    }
    s
}

/// A duration written as humantime (`"5m"`, `"1d 2h"`) or as a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

// Visitors (not an untagged enum): the value is checked while its YAML scalar
// is current, so an error names the line of the key itself, not the first key
// of the mapping around it.
impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"5m\", \"26h\" or a number of seconds")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Ok(HumanDuration(Duration::from_secs(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                u64::try_from(v)
                    .map(|v| HumanDuration(Duration::from_secs(v)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                parse_duration(v).map(HumanDuration).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parse `"300"` (seconds) or a humantime duration (`"5m"`, `"26h"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("invalid duration {t:?} ({e}); write it like \"30s\", \"5m\", \"26h\" or \"1d\"")
    })
}

impl fmt::Display for HumanDuration {
    /// "26h", "7 days" (not humantime's "1day 2h"); humantime's form only when the
    /// short one would round (e.g. 2 days 3h 4m).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let natural = crate::report::human_duration(self.0);
        if parse_duration(&natural) == Ok(self.0) {
            f.write_str(&natural)
        } else {
            write!(f, "{}", humantime::format_duration(self.0))
        }
    }
}

/// A byte size: a number of bytes or `"512MiB"`, `"1GiB"`, `"10MB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"512MiB\", \"1GiB\" or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_size(v).map(ByteSize).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {t:?}; write it like \"512MiB\" or \"1GiB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {t:?}; use B, KiB, MiB, GiB (or KB, MB, GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {t:?} is too large"))
}

/// `Deserialize` for a type checked by `TryFrom<String>`, through a visitor
/// (not `#[serde(try_from = "String")]`): the check runs while the YAML scalar
/// is current, so an error names the value's own line, not the line of the
/// first key of the mapping around it.
macro_rules! deserialize_via_try_from_string {
    ($t:ty, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$t, E> {
                        <$t>::try_from(v.to_string()).map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

/// A validated glob pattern (checked at load).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobPattern(pub String);

deserialize_via_try_from_string!(GlobPattern, "a path or glob pattern");

impl TryFrom<String> for GlobPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("empty path pattern".into());
        }
        glob::Pattern::new(&s).map_err(|e| format!("invalid glob pattern {s:?}: {e}"))?;
        Ok(GlobPattern(s))
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The wider stack's settings (Prometheus, Grafana, Alertmanager): accepted, not used by the exporter.
    #[serde(default)]
    pub monitoring: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    pub custom_monitors: CustomMonitors,
    /// Health checks (http, tcp, dns, disk, file_age, command); see `docs/health-checks.md`.
    #[serde(default)]
    pub health_checks: Option<crate::monitors::health::config::HealthChecksConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomMonitors {
    #[serde(default)]
    pub terraform_state: Option<TerraformConfig>,
    #[serde(default)]
    pub certificate_expiry: Option<CertificateConfig>,
    #[serde(default)]
    pub backup_validation: Option<BackupConfig>,
}

fn yes() -> bool {
    true
}

/// `custom_monitors.terraform_state`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerraformConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Re-check period and cache TTL.
    #[serde(default = "TerraformConfig::default_interval")]
    pub check_interval: HumanDuration,
    /// How soon a failed read is retried (capped at check_interval).
    #[serde(default = "default_retry")]
    pub retry_interval: HumanDuration,
    /// How long a scrape waits for this monitor before serving its last values.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
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

fn default_retry() -> HumanDuration {
    HumanDuration(Duration::from_secs(15))
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_max_file_size() -> ByteSize {
    ByteSize(1 << 30)
}

impl TerraformConfig {
    fn default_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(300))
    }
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
            check_interval: Self::default_interval(),
            retry_interval: default_retry(),
            timeout: default_timeout(),
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
        }
    }
}

/// `custom_monitors.certificate_expiry`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "CertificateConfig::default_interval")]
    pub check_interval: HumanDuration,
    /// How soon a collection with failing sources is retried (capped at check_interval).
    #[serde(default = "default_retry")]
    pub retry_interval: HumanDuration,
    /// How long a scrape waits for this monitor before serving its last values.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    #[serde(default = "CertificateConfig::default_warning")]
    pub warning_days: u32,
    #[serde(default = "CertificateConfig::default_critical")]
    pub critical_days: u32,
    /// Files, globs and folders (recursive), relative to the config file's folder.
    #[serde(default)]
    pub paths: Vec<GlobPattern>,
    #[serde(default)]
    pub endpoints: Vec<EndpointSpec>,
    /// Default per-endpoint timeout (connect, STARTTLS and handshake together).
    #[serde(default = "CertificateConfig::default_endpoint_timeout")]
    pub endpoint_timeout: HumanDuration,
    /// How many endpoints are probed at the same time.
    #[serde(default = "CertificateConfig::default_concurrency")]
    pub endpoint_concurrency: usize,
    /// File holding the PKCS#12 passphrase (first line), relative to the config file's folder.
    #[serde(default)]
    pub pkcs12_passphrase_file: Option<String>,
    /// Name of an environment variable holding the PKCS#12 passphrase.
    #[serde(default)]
    pub pkcs12_passphrase_env: Option<String>,
    /// Largest certificate file read; larger files are reported as errors.
    #[serde(default = "CertificateConfig::default_max_file_size")]
    pub max_file_size: ByteSize,
    /// Deepest folder level searched below a configured folder.
    #[serde(default = "CertificateConfig::default_max_depth")]
    pub max_depth: usize,
}

impl CertificateConfig {
    fn default_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(3600))
    }
    fn default_warning() -> u32 {
        30
    }
    fn default_critical() -> u32 {
        7
    }
    fn default_endpoint_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    fn default_concurrency() -> usize {
        16
    }
    fn default_max_file_size() -> ByteSize {
        ByteSize(16 << 20)
    }
    fn default_max_depth() -> usize {
        16
    }

    /// Cross-field checks, run at load time. Returns (key below certificate_expiry, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.critical_days > self.warning_days {
            return Err((
                "critical_days".into(),
                format!(
                    "critical_days ({}) must not be larger than warning_days ({})",
                    self.critical_days, self.warning_days
                ),
            ));
        }
        if self.endpoint_concurrency == 0 {
            return Err((
                "endpoint_concurrency".into(),
                "endpoint_concurrency must be at least 1".into(),
            ));
        }
        if self.endpoint_timeout.0.is_zero() {
            return Err((
                "endpoint_timeout".into(),
                "endpoint_timeout must be longer than zero".into(),
            ));
        }
        if let Some(env) = &self.pkcs12_passphrase_env {
            if env.is_empty() || env.contains('=') || env.contains('\0') {
                return Err((
                    "pkcs12_passphrase_env".into(),
                    "pkcs12_passphrase_env must be the name of an environment variable".into(),
                ));
            }
        }
        if self.pkcs12_passphrase_file.is_some() && self.pkcs12_passphrase_env.is_some() {
            return Err((
                "pkcs12_passphrase_env".into(),
                "set pkcs12_passphrase_file or pkcs12_passphrase_env, not both".into(),
            ));
        }
        if self
            .pkcs12_passphrase_file
            .as_deref()
            .is_some_and(str::is_empty)
        {
            return Err((
                "pkcs12_passphrase_file".into(),
                "pkcs12_passphrase_file must not be empty".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let d = e.details();
            // The key stays `endpoints` so that the error can name its line.
            let key = "endpoints".to_string();
            let at = |m: String| (key.clone(), format!("endpoints[{i}]: {m}"));
            split_host_port(&d.address).map_err(at)?;
            if d.timeout.is_some_and(|t| t.0.is_zero()) {
                return Err(at("timeout must be longer than zero".into()));
            }
            if d.server_name
                .as_deref()
                .is_some_and(|s| s.trim().is_empty())
            {
                return Err(at("server_name must not be empty".into()));
            }
            if d.ca_file.as_deref().is_some_and(str::is_empty) {
                return Err(at("ca_file must not be empty".into()));
            }
            if !seen.insert((d.address.clone(), d.server_name.clone())) {
                return Err(at(format!(
                    "endpoint {} is listed twice with the same server_name; each endpoint/server_name pair must be unique",
                    d.address
                )));
            }
        }
        Ok(())
    }
}

/// Split `host:port` (`[v6]:port` for IPv6). The message never quotes more than the address.
pub fn split_host_port(address: &str) -> Result<(String, u16), String> {
    let bad = || {
        format!("endpoint address {address:?} must be host:port (e.g. \"grafana.lan:443\", \"[::1]:8443\")")
    };
    let (host, port) = address.trim().rsplit_once(':').ok_or_else(bad)?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']').ok_or_else(bad)?,
        None if host.contains(':') => return Err(bad()),
        None => host,
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// A TLS endpoint: `"host:port"` or a map with options.
#[derive(Debug, Clone, PartialEq)]
pub enum EndpointSpec {
    Address(String),
    Detailed(EndpointDetails),
}

// Not `#[serde(untagged)]`: that would hide "unknown key" and "unknown starttls"
// behind "did not match any variant". A string or a map, each with its own errors.
impl<'de> Deserialize<'de> for EndpointSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = EndpointSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a host:port string or a map with `address` and options")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EndpointSpec, E> {
                Ok(EndpointSpec::Address(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<EndpointSpec, A::Error> {
                EndpointDetails::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(EndpointSpec::Detailed)
            }
        }
        d.deserialize_any(V)
    }
}

impl EndpointSpec {
    /// The endpoint as a map (a plain address has no options).
    pub fn details(&self) -> EndpointDetails {
        match self {
            EndpointSpec::Address(a) => EndpointDetails {
                address: a.clone(),
                server_name: None,
                starttls: None,
                timeout: None,
                ca_file: None,
            },
            EndpointSpec::Detailed(d) => d.clone(),
        }
    }
}

/// Plain-text protocols upgraded to TLS before the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartTls {
    Smtp,
    Imap,
    Pop3,
}

impl StartTls {
    pub fn as_str(self) -> &'static str {
        match self {
            StartTls::Smtp => "smtp",
            StartTls::Imap => "imap",
            StartTls::Pop3 => "pop3",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointDetails {
    pub address: String,
    /// SNI and the name verified; defaults to the host of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub starttls: Option<StartTls>,
    /// Overrides `endpoint_timeout` for this endpoint.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// PEM file of CA certificates to verify against instead of the built-in web roots.
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// `custom_monitors.backup_validation`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "BackupConfig::default_interval")]
    pub check_interval: HumanDuration,
    /// How soon a failed read is retried (capped at check_interval).
    #[serde(default = "default_retry")]
    pub retry_interval: HumanDuration,
    /// How long a scrape waits for this monitor before serving its last values.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Backups younger than this many days are counted in `backup_snapshots`.
    #[serde(default = "BackupConfig::default_retention")]
    pub retention_days: u32,
    /// Largest JSON/manifest file read (files hashed for verification are not limited by this).
    #[serde(default = "BackupConfig::default_max_file_size")]
    pub max_file_size: ByteSize,
    #[serde(default)]
    pub sources: Vec<BackupSourceConfig>,
}

impl BackupConfig {
    fn default_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(86400))
    }
    fn default_retention() -> u32 {
        30
    }
    fn default_max_file_size() -> ByteSize {
        ByteSize(256 << 20)
    }
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            check_interval: Self::default_interval(),
            retry_interval: default_retry(),
            timeout: default_timeout(),
            retention_days: Self::default_retention(),
            max_file_size: Self::default_max_file_size(),
            sources: Vec::new(),
        }
    }
}

/// What wrote a backup source's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupFormat {
    /// `restic snapshots --json` output (`path`), optional `stats_file`, `check_file`.
    Restic,
    /// `borg list --json` output (`path`), optional `info_file` (`borg info --json`).
    Borg,
    /// A PostgreSQL `backup_manifest` written by `pg_basebackup` (`path`: file, folder or glob).
    PgBackupManifest,
    /// Our own JSON manifest (`schemas/backup-manifest.schema.json`), one file per run (`path`: file or glob).
    Manifest,
    /// A folder (`path`) of backup files matching `pattern`.
    Directory,
}

impl BackupFormat {
    pub const ALL: [BackupFormat; 5] = [
        BackupFormat::Restic,
        BackupFormat::Borg,
        BackupFormat::PgBackupManifest,
        BackupFormat::Manifest,
        BackupFormat::Directory,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackupFormat::Restic => "restic",
            BackupFormat::Borg => "borg",
            BackupFormat::PgBackupManifest => "pg_backup_manifest",
            BackupFormat::Manifest => "manifest",
            BackupFormat::Directory => "directory",
        }
    }
}

impl TryFrom<String> for BackupFormat {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let t = s.trim();
        if let Some(f) = Self::ALL.into_iter().find(|f| f.as_str() == t) {
            return Ok(f);
        }
        let names: Vec<&str> = Self::ALL.iter().map(|f| f.as_str()).collect();
        let lower = t.to_ascii_lowercase();
        // Names people reach for first (tools, not formats), then the closest spelling.
        let alias = [
            ("pg", "pg_backup_manifest"),
            ("postgres", "pg_backup_manifest"),
            ("borgbackup", "borg"),
            ("folder", "directory"),
            ("dir", "directory"),
        ]
        .iter()
        .find(|(k, _)| lower.starts_with(k))
        .map(|(_, v)| format!("; did you mean `{v}`?"));
        let suggestion = alias.unwrap_or_else(|| {
            names
                .iter()
                .map(|k| (strsim::jaro_winkler(&lower, k), *k))
                .filter(|(score, _)| *score > 0.7)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, k)| format!("; did you mean `{k}`?"))
                .unwrap_or_default()
        });
        Err(format!(
            "unknown backup format `{t}` (valid formats: {}){suggestion}",
            names.join(", ")
        ))
    }
}

deserialize_via_try_from_string!(
    BackupFormat,
    "a backup format (restic, borg, pg_backup_manifest, manifest, directory)"
);

impl fmt::Display for BackupFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much of a manifest's file list is checked against the backup folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyMode {
    /// Only the manifest itself (its own checksum, for `pg_backup_manifest`).
    #[default]
    None,
    /// Every listed file exists with the listed size (one `stat` per file).
    Sizes,
    /// Sizes, and file checksums, hashing at most `verify_max_bytes` per check.
    Checksums,
}

/// An IANA time zone name, checked at load (`Europe/Berlin`, `UTC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZoneName(pub String);

deserialize_via_try_from_string!(TimeZoneName, "an IANA time zone name such as UTC");

impl TryFrom<String> for TimeZoneName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match jiff::tz::TimeZone::get(s.trim()) {
            Ok(_) => Ok(TimeZoneName(s.trim().to_string())),
            Err(_) => Err(format!(
                "unknown time zone `{}`; use an IANA name such as `UTC` or `Europe/Berlin`",
                s.trim()
            )),
        }
    }
}

/// One entry of `backup_validation.sources`. Paths are relative to the config file's folder.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSourceConfig {
    /// The `source` label.
    pub name: String,
    pub format: BackupFormat,
    /// The file the backup job wrote (restic, borg), the manifest file/folder/glob
    /// (pg_backup_manifest, manifest), or the folder (directory).
    pub path: String,
    /// Exported as `backup_max_age_seconds`; a newer success is expected within it.
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
    /// Exported as `backup_min_snapshots`: fewer successful backups inside
    /// `retention_days` fire `BackupTooFewSnapshots` (default 1; 0 never fires).
    #[serde(default = "default_min_snapshots")]
    pub min_snapshots: u32,
    /// restic: `restic stats --json latest` output (size and files for restic before 0.17).
    #[serde(default)]
    pub stats_file: Option<String>,
    /// restic: `{ restic check 2>&1; echo "exit: $?"; } > FILE.tmp && mv FILE.tmp FILE` (text, or `--json`);
    /// sets `backup_verification_success` (0 when the file cannot be read or parsed).
    #[serde(default)]
    pub check_file: Option<String>,
    /// borg: `borg info --json --last 2` output (sizes, file counts, end times of the
    /// archives it lists; repository-level `borg info --json` is refused).
    #[serde(default)]
    pub info_file: Option<String>,
    /// borg: zone of borg's zone-less local dates; default: the exporter's local zone.
    #[serde(default)]
    pub timezone: Option<TimeZoneName>,
    /// directory: glob of file names inside `path` (default `*`).
    #[serde(default)]
    pub pattern: Option<GlobPattern>,
    /// pg_backup_manifest, manifest: check listed files against the backup folder.
    #[serde(default)]
    pub verify: VerifyMode,
    /// Most bytes hashed per check and source with `verify: checksums`; the rest
    /// is hashed on later checks (results are cached by size and mtime).
    #[serde(default = "default_verify_max_bytes")]
    pub verify_max_bytes: ByteSize,
}

fn default_verify_max_bytes() -> ByteSize {
    ByteSize(256 << 20)
}

fn default_min_snapshots() -> u32 {
    1
}

impl BackupSourceConfig {
    /// A source with only the required keys (other keys at their defaults).
    pub fn new(name: &str, format: BackupFormat, path: &str) -> Self {
        Self {
            name: name.to_string(),
            format,
            path: path.to_string(),
            max_age: None,
            min_snapshots: default_min_snapshots(),
            stats_file: None,
            check_file: None,
            info_file: None,
            timezone: None,
            pattern: None,
            verify: VerifyMode::None,
            verify_max_bytes: default_verify_max_bytes(),
        }
    }
}

/// A loaded configuration and the folder its relative paths are resolved against.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: ConfigFile,
    /// The config file's folder (or the working directory without a config file).
    pub base_dir: PathBuf,
    /// Where it came from, for messages; `None` when running without a config file.
    pub source: Option<PathBuf>,
}

impl Config {
    /// No config file: discover `*.tfstate` under `base_dir`.
    pub fn discovery(base_dir: PathBuf) -> Self {
        let tf = TerraformConfig {
            state_dirs: vec![GlobPattern(".".into())],
            // A backend recorded in ./.terraform/terraform.tfstate is read too.
            working_dirs: vec![".".into()],
            ..TerraformConfig::default()
        };
        Config {
            file: ConfigFile {
                monitoring: None,
                custom_monitors: CustomMonitors {
                    terraform_state: Some(tf),
                    ..CustomMonitors::default()
                },
                health_checks: None,
            },
            base_dir,
            source: None,
        }
    }

    /// Load and validate a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = crate::safe_open::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let file = parse(&text, path)?;
        let base_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Config {
            file,
            base_dir,
            source: Some(path.to_path_buf()),
        })
    }
}

/// Parse config text; `path` is only used in messages.
pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
    if text.trim().is_empty() {
        return Ok(ConfigFile::default());
    }
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let file: ConfigFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let inner = e.into_inner();
        let (line, column) = match inner.location() {
            Some(loc) => (Some(loc.line()), Some(loc.column())),
            None => (None, None),
        };
        let raw = strip_location(&inner.to_string());
        // serde_yaml_ng may prefix the message with the path already reported as `key`.
        let raw = match raw.strip_prefix(&format!("{key}: ")) {
            Some(rest) if !key.is_empty() => rest.to_string(),
            _ => raw,
        };
        let (message, suggestion) = explain(&raw);
        ConfigError::Invalid(Box::new(InvalidConfig {
            path: path.to_path_buf(),
            line,
            column,
            key,
            message,
            suggestion,
        }))
    })?;
    validate(&file)
        .and_then(|()| validate_policies(&file, path))
        .map_err(|(key, message)| {
            ConfigError::Invalid(Box::new(InvalidConfig {
                path: path.to_path_buf(),
                line: line_of_key(text, &key),
                column: None,
                key,
                message,
                suggestion: None,
            }))
        })?;
    Ok(file)
}

/// Cross-field checks that serde cannot express.
fn validate(file: &ConfigFile) -> Result<(), (String, String)> {
    if let Some(h) = &file.health_checks {
        h.validate()
            .map_err(|(k, m)| (format!("health_checks.{k}"), m))?;
    }
    if let Some(c) = &file.custom_monitors.certificate_expiry {
        c.validate()
            .map_err(|(k, m)| (format!("custom_monitors.certificate_expiry.{k}"), m))?;
    }
    for m in [
        file.custom_monitors
            .terraform_state
            .as_ref()
            .map(|t| ("terraform_state", t.check_interval)),
        file.custom_monitors
            .certificate_expiry
            .as_ref()
            .map(|t| ("certificate_expiry", t.check_interval)),
        file.custom_monitors
            .backup_validation
            .as_ref()
            .map(|t| ("backup_validation", t.check_interval)),
    ]
    .into_iter()
    .flatten()
    {
        if m.1 .0.is_zero() {
            return Err((
                format!("custom_monitors.{}.check_interval", m.0),
                "check_interval must be longer than zero (it is also the cache lifetime)".into(),
            ));
        }
    }
    if let Some(t) = &file.custom_monitors.terraform_state {
        for (i, b) in t.backends.iter().enumerate() {
            b.validate().map_err(|m| {
                (
                    "custom_monitors.terraform_state.backends".to_string(),
                    format!("backends[{i}]: {m}"),
                )
            })?;
        }
        if t.remote.concurrency == 0 || t.remote.request_timeout.0.is_zero() {
            return Err((
                "custom_monitors.terraform_state.remote".into(),
                "remote.concurrency and remote.request_timeout must be above zero".into(),
            ));
        }
        if t.remote
            .reports_dir
            .as_deref()
            .is_some_and(|d| d.trim().is_empty())
        {
            return Err((
                "custom_monitors.terraform_state.remote.reports_dir".into(),
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
                        format!("custom_monitors.terraform_state.{k}"),
                        format!("{k} must be a plain file name beside each state file (placeholders {{stem}} and {{file}} allowed), not a path"),
                    ));
                }
            }
        }
    }
    if let Some(b) = &file.custom_monitors.backup_validation {
        validate_backups(b)?;
    }
    Ok(())
}

/// Terraform policies: every file exists and parses (relative to the config's folder).
fn validate_policies(file: &ConfigFile, path: &Path) -> Result<(), (String, String)> {
    let Some(t) = &file.custom_monitors.terraform_state else {
        return Ok(());
    };
    if t.policies.is_empty() {
        return Ok(());
    }
    let key = "custom_monitors.terraform_state.policies".to_string();
    if t.policy_timeout.0.is_zero() {
        return Err((
            "custom_monitors.terraform_state.policy_timeout".into(),
            "policy_timeout must be longer than zero".into(),
        ));
    }
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    crate::monitors::terraform::policy::check_config(base, &t.policies)
        .map_err(|e| (key, e.to_string()))
}

/// Backup sources: unique names, and keys that only make sense for some formats.
fn validate_backups(b: &BackupConfig) -> Result<(), (String, String)> {
    let base = "custom_monitors.backup_validation.sources";
    let mut seen = std::collections::HashSet::new();
    for (i, s) in b.sources.iter().enumerate() {
        let key = |k: &str| format!("{base}[{i}].{k}");
        if s.name.trim().is_empty() {
            return Err((
                key("name"),
                "a backup source needs a non-empty name (it is the `source` label)".into(),
            ));
        }
        if !seen.insert(s.name.as_str()) {
            return Err((
                key("name"),
                format!(
                    "backup source name `{}` is used twice; names must be unique",
                    s.name
                ),
            ));
        }
        if s.path.trim().is_empty() {
            return Err((key("path"), "path must not be empty".into()));
        }
        let only = |k: &str, set: bool, formats: &[BackupFormat]| -> Result<(), (String, String)> {
            if set && !formats.contains(&s.format) {
                let names: Vec<&str> = formats.iter().map(|f| f.as_str()).collect();
                return Err((
                    key(k),
                    format!(
                        "`{k}` applies to format {} only, not {}",
                        names.join(", "),
                        s.format
                    ),
                ));
            }
            Ok(())
        };
        only(
            "stats_file",
            s.stats_file.is_some(),
            &[BackupFormat::Restic],
        )?;
        only(
            "check_file",
            s.check_file.is_some(),
            &[BackupFormat::Restic],
        )?;
        only("info_file", s.info_file.is_some(), &[BackupFormat::Borg])?;
        only("timezone", s.timezone.is_some(), &[BackupFormat::Borg])?;
        only("pattern", s.pattern.is_some(), &[BackupFormat::Directory])?;
        only(
            "verify",
            s.verify != VerifyMode::None,
            &[BackupFormat::PgBackupManifest, BackupFormat::Manifest],
        )?;
    }
    Ok(())
}

/// Best-effort line of a dotted key (for cross-field errors that have no location).
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let leaf = key.rsplit('.').next()?;
    text.lines()
        .position(|l| l.trim_start().starts_with(&format!("{leaf}:")))
        .map(|i| i + 1)
}

fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Turn a serde message into a user message and a did-you-mean. Quoted input
/// values are removed: a config may hold secrets (SMTP passwords...).
fn explain(raw: &str) -> (String, Option<String>) {
    // serde_yaml_ng prefixes the path ("a.b: unknown field ..."); drop it, the key is reported separately.
    let raw = match raw.find(": ") {
        Some(i) if !raw[..i].contains(' ') && raw[..i].contains('.') => &raw[i + 2..],
        _ => raw,
    };
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let unknown = rest.split('`').next().unwrap_or_default().to_string();
        let expected: Vec<&str> = rest
            .split('`')
            .skip(1)
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| s)
            .collect();
        let suggestion = expected
            .iter()
            .map(|k| (strsim::jaro_winkler(&unknown, k), *k))
            .filter(|(score, _)| *score > 0.75)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, k)| k.to_string());
        let valid = if expected.is_empty() {
            "no keys are allowed here".to_string()
        } else {
            format!("valid keys here: {}", expected.join(", "))
        };
        return (format!("unknown key `{unknown}` ({valid})"), suggestion);
    }
    (plain_words(&redact_quoted(raw)), None)
}

/// Where the program's own hint starts in a message (`write it like "30s", "5m"`,
/// `a duration such as "30s"`): its quoted examples are kept.
const HINT_MARKERS: [&str; 2] = ["write it like ", "such as "];

/// Replace `"..."` segments (input values, written with `{:?}`, so `\"` inside is
/// escaped) with `"…"`, up to the program's own hint (see [`HINT_MARKERS`]),
/// which is kept as it is. Markers are only looked for outside quotes.
pub(crate) fn redact_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    let mut escaped = false;
    for (i, c) in msg.char_indices() {
        if inside {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                out.push_str("…\"");
                inside = false;
            }
            continue;
        }
        if HINT_MARKERS.iter().any(|m| msg[i..].starts_with(m)) {
            out.push_str(&msg[i..]);
            return out;
        }
        out.push(c);
        if c == '"' {
            inside = true;
        }
    }
    out
}

/// serde's messages name Rust types (`expected struct HealthChecksConfig`,
/// `expected u32`); say what to write instead.
fn plain_words(msg: &str) -> String {
    static RULES: std::sync::LazyLock<Vec<(regex::Regex, &'static str)>> =
        std::sync::LazyLock::new(|| {
            [
                (r"missing field `", "missing key `"),
                (
                    r"\bexpected (?:tuple )?struct \w+",
                    "expected a mapping (`key: value` lines)",
                ),
                (r"\bexpected enum \w+", "expected one of the allowed values"),
                (
                    r"\bexpected (?:u8|u16|u32|u64|u128|usize)\b",
                    "expected a whole number (0 or more)",
                ),
                (
                    r"\bexpected (?:i8|i16|i32|i64|i128|isize)\b",
                    "expected a whole number",
                ),
                (r"\bexpected (?:f32|f64)\b", "expected a number"),
                (r"\bexpected a sequence\b", "expected a list"),
                (
                    r"\bexpected a map\b",
                    "expected a mapping (`key: value` lines)",
                ),
                (r"invalid type: map\b", "invalid type: a mapping"),
                (r"invalid type: sequence\b", "invalid type: a list"),
                (
                    r"invalid type: unit value\b",
                    "invalid type: an empty value",
                ),
                (
                    r"data did not match any variant of untagged enum \w+",
                    "the value has none of the accepted forms",
                ),
            ]
            .into_iter()
            .filter_map(|(re, to)| regex::Regex::new(re).ok().map(|r| (r, to)))
            .collect()
        });
    let mut out = msg.to_string();
    for (re, to) in RULES.iter() {
        out = re.replace_all(&out, *to).into_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, Path::new("cfg.yaml")).unwrap_err().to_string()
    }

    #[test]
    fn unknown_key_names_file_line_key_and_suggests() {
        let e = err(
            "custom_monitors:\n  terraform_state:\n    enabled: true\n    stat_files: [\"a\"]\n",
        );
        assert!(e.contains("cfg.yaml"), "{e}");
        assert!(e.contains("line 4"), "{e}");
        assert!(e.contains("custom_monitors.terraform_state"), "{e}");
        assert!(e.contains("unknown key `stat_files`"), "{e}");
        assert!(e.contains("did you mean `state_files`?"), "{e}");
    }

    #[test]
    fn unknown_top_level_key_suggests() {
        let e = err("custom_monitor:\n  terraform_state: {}\n");
        assert!(e.contains("did you mean `custom_monitors`?"), "{e}");
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn bad_duration_names_key_and_line() {
        let e = err("custom_monitors:\n  terraform_state:\n    check_interval: \"5 parsecs\"\n");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("check_interval"), "{e}");
        assert!(e.contains("invalid duration"), "{e}");
    }

    #[test]
    fn wrong_type_names_key_without_quoting_value() {
        let e =
            err("custom_monitors:\n  certificate_expiry:\n    warning_days: \"s3cr3t-canary\"\n");
        assert!(e.contains("warning_days"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(!e.contains("s3cr3t-canary"), "{e}");
    }

    #[test]
    fn thresholds_are_checked() {
        let e = err(
            "custom_monitors:\n  certificate_expiry:\n    warning_days: 3\n    critical_days: 7\n",
        );
        assert!(e.contains("critical_days (7) must not be larger"), "{e}");
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("300").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_size("2MiB").unwrap(), 2 << 20);
        assert_eq!(parse_size("10").unwrap(), 10);
        assert!(parse_size("3 parsecs").is_err());
    }

    // issue 13: a duration or size deep in a mapping named the mapping's first
    // key's line (3), not its own (7).
    #[test]
    fn bad_duration_or_size_names_its_own_line() {
        let head = "monitoring: {}\ncustom_monitors:\n  terraform_state:\n    enabled: true\n    state_files: [\"a\"]\n    drift_report: drift.json\n";
        let e = err(&format!("{head}    check_interval: \"5 parsecs\"\n"));
        assert!(e.contains(", line 7, column 21,"), "{e}");
        assert!(
            e.contains("custom_monitors.terraform_state.check_interval"),
            "{e}"
        );
        let e = err(&format!("{head}    max_file_size: \"lots\"\n"));
        assert!(e.contains(", line 7, column 20,"), "{e}");
        assert!(e.contains("invalid size"), "{e}");
        // Numbers still work, negative ones are refused on their line.
        let e = err(&format!("{head}    retry_interval: -5\n"));
        assert!(
            e.contains("line 7") && e.contains("cannot be negative"),
            "{e}"
        );
        let ok = parse(
            &format!(
                "{head}    check_interval: 300\n    max_file_size: 1024\n    timeout: \"2m\"\n"
            ),
            Path::new("cfg.yaml"),
        )
        .unwrap();
        let t = ok.custom_monitors.terraform_state.unwrap();
        assert_eq!(t.check_interval.0, Duration::from_secs(300));
        assert_eq!(t.max_file_size.0, 1024);
        assert_eq!(t.timeout.0, Duration::from_secs(120));
    }

    // The same for values checked by TryFrom<String> (backup format, time
    // zone, glob): their own line, not the first key of their mapping.
    #[test]
    fn checked_strings_name_their_own_line() {
        let e = err("custom_monitors:\n  backup_validation:\n    check_interval: 1h\n    sources:\n      - name: a\n        path: x\n        format: resticc\n");
        assert!(e.contains(", line 7, column 17,"), "{e}");
        assert!(e.contains("did you mean `restic`?"), "{e}");
        let e = err("custom_monitors:\n  backup_validation:\n    sources:\n      - name: a\n        format: borg\n        path: x\n        timezone: Mars/Base\n");
        assert!(e.contains(", line 7, column 19,"), "{e}");
        let e = err("custom_monitors:\n  terraform_state:\n    enabled: true\n    state_dirs:\n      - \"[a\"\n");
        assert!(e.contains(", line 5, column 9,"), "{e}");
        assert!(e.contains("invalid glob pattern"), "{e}");
        // The key is named once, not repeated at the start of the message.
        let e = err("custom_monitors: [1]\n");
        assert!(
            e.contains("key `custom_monitors`: invalid type: a list"),
            "{e}"
        );
    }

    // issue 13: the redaction of quoted input values also blanked the hint's
    // own examples (`write it like "…", "…"`).
    #[test]
    fn hint_examples_survive_redaction_but_the_value_does_not() {
        let e =
            err("custom_monitors:\n  terraform_state:\n    check_interval: \"s3cr3t-canary\"\n");
        assert!(!e.contains("s3cr3t-canary"), "{e}");
        assert!(
            e.contains(r#"write it like "30s", "5m", "26h" or "1d""#),
            "{e}"
        );
        let e = err("custom_monitors:\n  terraform_state:\n    max_file_size: \"s3cr3t-canary\"\n");
        assert!(!e.contains("s3cr3t-canary"), "{e}");
        assert!(e.contains(r#"write it like "512MiB" or "1GiB""#), "{e}");
        // A wrong type: the value is hidden, the visitor's examples are shown.
        let e =
            err("custom_monitors:\n  terraform_state:\n    check_interval: [\"s3cr3t-canary\"]\n");
        assert!(!e.contains("s3cr3t-canary"), "{e}");
        assert!(e.contains(r#"a duration such as "30s""#), "{e}");
        // An escaped quote inside a value does not end the redaction early,
        // and a marker inside a value is not a hint.
        let r = redact_quoted(r#"invalid duration "a\"b such as pw" (x); write it like "30s""#);
        assert_eq!(r, r#"invalid duration "…" (x); write it like "30s""#);
    }

    // issue 13: "expected struct HealthChecksConfig", "expected u32".
    #[test]
    fn messages_name_no_rust_types() {
        for (text, want) in [
            ("health_checks: \"x\"\n", "expected a mapping (`key: value` lines)"),
            (
                "custom_monitors:\n  certificate_expiry:\n    warning_days: \"abc\"\n",
                "expected a whole number (0 or more)",
            ),
            (
                "custom_monitors:\n  terraform_state:\n    state_files: \"a\"\n",
                "expected a list",
            ),
            (
                "custom_monitors:\n  backup_validation:\n    sources:\n      - { name: a, path: b }\n",
                "missing key `format`",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(want), "{text:?}: {e}");
            for rust in ["struct ", "enum ", "u32", "usize", "Config", "sequence", "missing field"] {
                assert!(!e.contains(rust), "{text:?} shows {rust:?}: {e}");
            }
        }
    }

    // issue 13: the OS error was both in the message and its source, so
    // `error: {e:#}` printed it twice.
    #[test]
    fn read_error_prints_the_os_error_once() {
        let dir = tempfile::tempdir().unwrap();
        let e = Config::load(&dir.path().join("missing.yaml")).unwrap_err();
        let os = std::io::Error::from(std::io::ErrorKind::NotFound).to_string();
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert!(chain.contains("missing.yaml"), "{chain}");
        assert!(
            chain.contains("check the path given with --config"),
            "{chain}"
        );
        let os_error = "(os error 2)";
        assert_eq!(chain.matches(os_error).count(), 1, "{chain} ({os})");
    }

    #[test]
    fn empty_file_is_valid() {
        let f = parse("", Path::new("x")).unwrap();
        assert!(f.custom_monitors.terraform_state.is_none());
    }

    #[test]
    fn paths_must_be_file_names() {
        let e = err("custom_monitors:\n  terraform_state:\n    drift_report: ../x.json\n");
        assert!(e.contains("plain file name"), "{e}");
    }
}

//! `health_checks:` in `monitoring-config.yaml` (top level, beside `custom_monitors:`).
//!
//! ```yaml
//! health_checks:
//!   allow_commands: false        # `command` checks are refused unless this is true
//!   checks:
//!     - name: grafana
//!       interval: "30s"          # default 1m
//!       timeout: "5s"            # default 10s
//!       http: { url: "https://grafana.homelab.local/api/health", expected_status: 200, body_regex: "\"database\": ?\"ok\"" }
//!     - { name: postgres, tcp: { address: "127.0.0.1:5432" } }
//!     - { name: nas-dns, dns: { name: "nas.homelab.local", expected_addresses: ["192.168.1.10"] } }
//!     - { name: backups-disk, disk: { path: "/srv/backups", min_free_bytes: "50GiB", min_free_ratio: 0.1 } }
//!     - { name: restic-ran, file_age: { path: "/srv/backups/restic", max_age: "26h" } }
//!     - { name: zpool, command: { argv: ["zpool", "status", "-x"] } }
//! ```
//!
//! Each check has exactly one of the type keys (`http`, `tcp`, `dns`, `disk`,
//! `file_age`, `command`); the key is the `type` label of its metrics.

use std::time::Duration;

use serde::Deserialize;

use crate::core::config::values::{ByteSize, HumanDuration};

/// The `health_checks:` block.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthChecksConfig {
    /// Turn the whole block off without deleting it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `command` checks run programs: refused at load unless this is `true`.
    #[serde(default)]
    pub allow_commands: bool,
    #[serde(default)]
    pub checks: Vec<HealthCheckConfig>,
}

fn yes() -> bool {
    true
}

fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// One check: a name, its period and time budget, and one type key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Unique; the `check` label.
    pub name: String,
    /// How often the check runs (results are cached in between).
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// How long one run may take before it counts as failed.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    #[serde(default)]
    pub http: Option<HttpCheckConfig>,
    #[serde(default)]
    pub tcp: Option<TcpCheckConfig>,
    #[serde(default)]
    pub dns: Option<DnsCheckConfig>,
    #[serde(default)]
    pub disk: Option<DiskCheckConfig>,
    #[serde(default)]
    pub file_age: Option<FileAgeCheckConfig>,
    #[serde(default)]
    pub command: Option<CommandCheckConfig>,
}

impl HealthCheckConfig {
    /// The type keys that are set (exactly one is valid).
    pub fn kinds(&self) -> Vec<&'static str> {
        [
            self.http.is_some().then_some("http"),
            self.tcp.is_some().then_some("tcp"),
            self.dns.is_some().then_some("dns"),
            self.disk.is_some().then_some("disk"),
            self.file_age.is_some().then_some("file_age"),
            self.command.is_some().then_some("command"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// A regular expression compiled at load, so a bad one is a config error with a line.
#[derive(Debug, Clone)]
pub struct BodyRegex(pub regex::Regex);

impl TryFrom<String> for BodyRegex {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        regex::RegexBuilder::new(&s)
            .size_limit(1 << 20)
            .build()
            .map(BodyRegex)
            .map_err(|e| {
                // regex errors span several lines (pattern, caret, reason): keep the reason.
                let text = e.to_string();
                let reason = text.lines().last().unwrap_or_default().trim();
                let reason = reason.strip_prefix("error: ").unwrap_or(reason);
                format!("invalid regular expression ({reason})")
            })
    }
}

// A visitor (not `try_from`): the error is raised while the YAML scalar is
// current, so the message points at the `body_regex:` line itself.
impl<'de> Deserialize<'de> for BodyRegex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = BodyRegex;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a regular expression")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<BodyRegex, E> {
                BodyRegex::try_from(v.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// `expected_status: 200` or `expected_status: [200, 204]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StatusList {
    One(u16),
    Many(Vec<u16>),
}

impl StatusList {
    pub fn contains(&self, code: u16) -> bool {
        match self {
            StatusList::One(c) => *c == code,
            StatusList::Many(v) => v.contains(&code),
        }
    }
}

/// `http:` GET a URL; success is the expected status (default any 2xx) and,
/// when set, a body matching `body_regex`. Redirects are not followed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheckConfig {
    /// `http://` or `https://` URL.
    pub url: String,
    #[serde(default)]
    pub expected_status: Option<StatusList>,
    #[serde(default)]
    pub body_regex: Option<BodyRegex>,
    /// PEM file of CA certificates to trust instead of the built-in web roots
    /// (relative to the config file's folder).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Accept any server certificate (self-signed homelab services). Prefer `ca_file`.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Largest body read for `body_regex` (default 1MiB).
    #[serde(default)]
    pub max_body_size: Option<ByteSize>,
}

/// `tcp:` the address (`host:port`) accepts a connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpCheckConfig {
    pub address: String,
}

/// `dns:` the name resolves (system resolver); optionally to all of `expected_addresses`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsCheckConfig {
    pub name: String,
    #[serde(default)]
    pub expected_addresses: Vec<std::net::IpAddr>,
}

/// `disk:` the filesystem holding `path` has enough free space.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskCheckConfig {
    pub path: String,
    /// Fail below this many bytes available to unprivileged users.
    #[serde(default)]
    pub min_free_bytes: Option<ByteSize>,
    /// Fail below this fraction (0..1) of the filesystem available.
    #[serde(default)]
    pub min_free_ratio: Option<f64>,
}

/// `file_age:` the newest modification time under `path` (a file, or a
/// folder searched recursively) is younger than `max_age`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAgeCheckConfig {
    pub path: String,
    pub max_age: HumanDuration,
}

/// `command:` run `argv` (no shell); success is exit code `expected_exit_code` (default 0).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandCheckConfig {
    pub argv: Vec<String>,
    #[serde(default)]
    pub expected_exit_code: i32,
}

impl HealthChecksConfig {
    /// Cross-field checks; errors are `(key below health_checks, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.checks.iter().enumerate() {
            let key = |k: &str| format!("checks[{i}].{k}");
            let name = c.name.trim();
            if name.is_empty() {
                return Err((
                    key("name"),
                    "a health check needs a non-empty name (it is the `check` label)".into(),
                ));
            }
            if !seen.insert(name) {
                return Err((
                    key("name"),
                    format!("health check name `{name}` is used twice; names must be unique"),
                ));
            }
            let kinds = c.kinds();
            if kinds.len() != 1 {
                return Err((
                    key("name"),
                    format!(
                        "health check `{name}` needs exactly one of http, tcp, dns, disk, file_age, command (found {})",
                        if kinds.is_empty() { "none".to_string() } else { kinds.join(", ") }
                    ),
                ));
            }
            if c.interval.0.is_zero() {
                return Err((key("interval"), "interval must be longer than zero".into()));
            }
            if c.timeout.0.is_zero() {
                return Err((key("timeout"), "timeout must be longer than zero".into()));
            }
            if let Some(h) = &c.http {
                if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
                    return Err((
                        key("http.url"),
                        "url must start with http:// or https://".into(),
                    ));
                }
                if h.url
                    .parse::<hyper::Uri>()
                    .map(|u| u.host().is_none())
                    .unwrap_or(true)
                {
                    return Err((key("http.url"), "url is not a valid absolute URL".into()));
                }
                if h.ca_file.is_some() && h.insecure_skip_verify {
                    return Err((
                        key("http.insecure_skip_verify"),
                        "set either ca_file or insecure_skip_verify, not both".into(),
                    ));
                }
            }
            if let Some(t) = &c.tcp {
                crate::core::config::values::split_host_port(&t.address)
                    .map_err(|m| (key("tcp.address"), m))?;
            }
            if let Some(d) = &c.dns {
                if d.name.trim().is_empty() {
                    return Err((key("dns.name"), "name must not be empty".into()));
                }
            }
            if let Some(d) = &c.disk {
                if d.min_free_bytes.is_none() && d.min_free_ratio.is_none() {
                    return Err((
                        key("disk.path"),
                        "a disk check needs min_free_bytes, min_free_ratio or both".into(),
                    ));
                }
                if let Some(r) = d.min_free_ratio {
                    if !(0.0..=1.0).contains(&r) {
                        return Err((
                            key("disk.min_free_ratio"),
                            "min_free_ratio is a fraction between 0 and 1".into(),
                        ));
                    }
                }
            }
            if let Some(cmd) = &c.command {
                if !self.allow_commands {
                    return Err((key("command"), format!("health check `{name}` runs a command, but command checks are off; set health_checks.allow_commands: true to allow them")));
                }
                if cmd
                    .argv
                    .first()
                    .map(|a| a.trim().is_empty())
                    .unwrap_or(true)
                {
                    return Err((
                        key("command.argv"),
                        "argv needs at least the program to run".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

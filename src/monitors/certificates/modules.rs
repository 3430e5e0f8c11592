//! Probe modules (`custom_monitors.certificate_expiry.modules`) and the
//! `probe:` settings of `/probe?target=host:port&module=NAME`, and the
//! "probe one endpoint now" function the server calls (no cache, no schedule).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::core::config::values::{split_host_port, HumanDuration};
use crate::core::snapshot::Snapshot;

use super::config::{CertificateConfig, StartTls};
use super::endpoint::{Endpoint, Prober};
use super::{SourceFailure, SourceKind, SourceResult};

/// The module used when a probe names none and no module called `default` is configured.
pub const DEFAULT_MODULE: &str = "default";

/// One probe module: the endpoint options, without the address (the
/// address is the probe's `target`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeModule {
    /// SNI and the name verified; defaults to the host of the target.
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub starttls: Option<StartTls>,
    /// Connect, STARTTLS and handshake together; defaults to `endpoint_timeout`.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// PEM file of CA certificates to verify against instead of the web roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Active OCSP / CRL checks of the leaf (off by default; see `revocation.rs`).
    #[serde(default)]
    pub revocation: Option<super::revocation::RevocationConfig>,
}

/// `custom_monitors.certificate_expiry.probe`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSettings {
    /// When set, only targets whose host matches one entry are probed: a CIDR
    /// or an IP (for IP targets), or a host-name glob such as `*.lan`.
    #[serde(default)]
    pub allowed_targets: Option<Vec<String>>,
    /// Probes running at once; more are answered 503.
    #[serde(default = "ProbeSettings::default_max_concurrent")]
    pub max_concurrent: usize,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            allowed_targets: None,
            max_concurrent: Self::default_max_concurrent(),
        }
    }
}

impl ProbeSettings {
    pub fn default_max_concurrent() -> usize {
        32
    }
}

/// One `allowed_targets` entry, parsed.
#[derive(Debug, Clone)]
enum Allow {
    Net(ipnet::IpNet),
    Host(glob::Pattern),
}

fn parse_allow(s: &str) -> Result<Allow, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("an entry is empty".into());
    }
    if let Ok(n) = t.parse::<ipnet::IpNet>() {
        return Ok(Allow::Net(n.trunc()));
    }
    if let Ok(ip) = t.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Ok(Allow::Net(ipnet::IpNet::from(ip)));
    }
    if t.contains('/') {
        return Err(format!(
            "{t:?} is neither a CIDR (10.0.0.0/8, fd00::/8) nor a host glob (*.lan)"
        ));
    }
    if t.contains(':') {
        return Err(format!(
            "{t:?}: list hosts, IPs or CIDRs without a port"
        ));
    }
    glob::Pattern::new(&t.to_ascii_lowercase())
        .map(Allow::Host)
        .map_err(|e| format!("{t:?} is not a valid host glob: {e}"))
}

/// Checks of `modules:` and `probe:` (keys below certificate_expiry).
pub fn validate(cfg: &CertificateConfig) -> Result<(), (String, String)> {
    for (name, m) in cfg.modules.iter().flatten() {
        let at = |m: String| (format!("modules.{name}"), format!("module {name}: {m}"));
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(at(
                "module names use letters, digits, `_`, `-` and `.` only".into(),
            ));
        }
        if m.timeout.is_some_and(|t| t.0.is_zero()) {
            return Err(at("timeout must be longer than zero".into()));
        }
        if m.server_name
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            return Err(at("server_name must not be empty".into()));
        }
        if m.ca_file.as_deref().is_some_and(str::is_empty) {
            return Err(at("ca_file must not be empty".into()));
        }
        if let Some(r) = &m.revocation {
            r.validate().map_err(at)?;
        }
    }
    if let Some(p) = &cfg.probe {
        if p.max_concurrent == 0 {
            return Err((
                "probe.max_concurrent".into(),
                "probe.max_concurrent must be at least 1".into(),
            ));
        }
        for (i, a) in p.allowed_targets.iter().flatten().enumerate() {
            parse_allow(a).map_err(|m| {
                (
                    "probe.allowed_targets".into(),
                    format!("probe.allowed_targets[{i}]: {m}"),
                )
            })?;
        }
    }
    Ok(())
}

/// Why a probe request is refused before anything is dialled (HTTP 400/403).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeRequestError {
    #[error("missing target: call /probe?target=host:port (and optionally &module=NAME)")]
    MissingTarget,
    #[error("bad target {target:?}: {why}; give host:port, e.g. example.com:443 or [2001:db8::1]:443")]
    BadTarget { target: String, why: String },
    #[error("unknown module {name:?}; configured modules: {known}")]
    UnknownModule { name: String, known: String },
    #[error("target {0:?} is not in probe.allowed_targets; add its host, IP or network there")]
    NotAllowed(String),
}

/// `s` for a message: at most `max` characters, control characters as `?`.
fn printable(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Everything `/probe` needs, built once from the config.
pub struct ProbeService {
    modules: BTreeMap<String, ProbeModule>,
    allowed: Option<Vec<Allow>>,
    default_timeout: Duration,
    warning: i64,
    critical: i64,
    base: std::path::PathBuf,
    home: Option<std::path::PathBuf>,
    prober: Result<Prober, String>,
    /// Active revocation checks of modules that ask for them (own cache).
    revocation: super::revocation::Checker,
    pub max_concurrent: usize,
}

impl std::fmt::Debug for ProbeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeService")
            .field("modules", &self.modules.keys().collect::<Vec<_>>())
            .field("max_concurrent", &self.max_concurrent)
            .finish()
    }
}

impl ProbeService {
    /// `None` unless the block is enabled and declares `modules:` or `probe:`
    /// (probing is opt-in). `base`: where a module's relative `ca_file` is resolved.
    pub fn from_config(cfg: &CertificateConfig, base: &Path) -> Option<ProbeService> {
        if !cfg.enabled || (cfg.modules.is_none() && cfg.probe.is_none()) {
            return None;
        }
        let settings = cfg.probe.clone().unwrap_or_default();
        let allowed = settings.allowed_targets.as_ref().map(|list| {
            // Validated at load; an entry that does not parse allows nothing.
            list.iter().filter_map(|a| parse_allow(a).ok()).collect()
        });
        Some(ProbeService {
            modules: cfg.modules.clone().unwrap_or_default(),
            allowed,
            default_timeout: cfg.endpoint_timeout.0,
            warning: i64::from(cfg.warning_days) * 86_400,
            critical: i64::from(cfg.critical_days) * 86_400,
            base: base.to_path_buf(),
            home: super::files::home_dir(),
            prober: Prober::new(),
            revocation: super::revocation::Checker::new(),
            max_concurrent: settings.max_concurrent.max(1),
        })
    }

    /// The module named, or the default one (`default` if configured, else
    /// the endpoint defaults).
    fn module(&self, name: Option<&str>) -> Result<ProbeModule, ProbeRequestError> {
        match name {
            None | Some("") => Ok(self.modules.get(DEFAULT_MODULE).cloned().unwrap_or_default()),
            Some(DEFAULT_MODULE) => Ok(self.modules.get(DEFAULT_MODULE).cloned().unwrap_or_default()),
            Some(n) => self.modules.get(n).cloned().ok_or_else(|| {
                let mut known: Vec<&str> = self.modules.keys().map(String::as_str).collect();
                if !known.contains(&DEFAULT_MODULE) {
                    known.insert(0, DEFAULT_MODULE);
                }
                ProbeRequestError::UnknownModule {
                    name: printable(n, 64),
                    known: known.join(", "),
                }
            }),
        }
    }

    fn allowed(&self, host: &str) -> bool {
        let Some(list) = &self.allowed else {
            return true;
        };
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        let lower = host.to_ascii_lowercase();
        list.iter().any(|a| match (a, ip) {
            (Allow::Net(n), Some(ip)) => n.contains(&ip),
            (Allow::Host(g), None) => g.matches(&lower),
            _ => false,
        })
    }

    /// Check a request and resolve it to the endpoint to dial; `budget` caps
    /// the module's timeout (the scraper's own timeout minus a margin).
    pub fn endpoint(
        &self,
        target: Option<&str>,
        module: Option<&str>,
        budget: Option<Duration>,
    ) -> Result<Endpoint, ProbeRequestError> {
        let target = target
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ProbeRequestError::MissingTarget)?;
        let shown = || printable(target, 256);
        if target.len() > 1024 || target.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(ProbeRequestError::BadTarget {
                target: shown(),
                why: "too long or contains spaces or control characters".into(),
            });
        }
        if target.contains("://") || target.contains('/') {
            return Err(ProbeRequestError::BadTarget {
                target: shown(),
                why: "a URL or path is not a target".into(),
            });
        }
        let (host, _port) =
            split_host_port(target).map_err(|_| ProbeRequestError::BadTarget {
                target: shown(),
                why: "not host:port with a port from 1 to 65535".into(),
            })?;
        let m = self.module(module)?;
        if !self.allowed(&host) {
            return Err(ProbeRequestError::NotAllowed(shown()));
        }
        let mut timeout = m.timeout.map(|t| t.0).unwrap_or(self.default_timeout);
        if let Some(b) = budget {
            timeout = timeout.min(b);
        }
        let timeout = timeout.max(Duration::from_millis(100));
        Ok(Endpoint {
            address: target.to_string(),
            server_name: m
                .server_name
                .clone()
                .unwrap_or_else(|| host.trim_start_matches('[').trim_end_matches(']').to_string()),
            starttls: m.starttls,
            timeout,
            ca_file: m
                .ca_file
                .as_ref()
                .map(|f| super::files::resolve(&self.base, self.home.as_deref(), f)),
            ca_label: m.ca_file.clone(),
            revocation: m.revocation.clone().filter(|r| r.enabled()),
        })
    }

    /// Probe `ep` now: its certificate series (as on /metrics for a configured
    /// endpoint) and whether the chain was read.
    pub async fn probe(&self, ep: &Endpoint, now: SystemTime) -> (Snapshot, bool) {
        let mut result = probe_now(&self.prober, ep, now).await;
        if let (Some(cfg), Ok(data)) = (&ep.revocation, &mut result.outcome) {
            let anchors = super::revocation::anchors(ep.ca_file.as_deref());
            data.revocation = self.revocation.check(cfg, &data.certs, &anchors, now).await;
        }
        let ok = result.outcome.is_ok();
        if let Err(f) = &result.outcome {
            tracing::debug!(target = %ep.address, reason = f.reason, "probe failed: {}", f.message);
        }
        (
            super::snapshot(&[result], now, self.warning, self.critical),
            ok,
        )
    }
}

/// Probe one endpoint now (no cache), as the monitor's scheduled reads do.
pub async fn probe_now(
    prober: &Result<Prober, String>,
    ep: &Endpoint,
    now: SystemTime,
) -> SourceResult {
    let outcome = match prober {
        Ok(p) => {
            // The prober bounds each stage by `ep.timeout`; this bounds the whole.
            match tokio::time::timeout(ep.timeout + Duration::from_millis(200), p.probe(ep, now))
                .await
            {
                Ok(r) => r.map_err(|e| SourceFailure {
                    reason: e.metric_label(),
                    message: e.to_string(),
                }),
                Err(_) => Err(SourceFailure {
                    reason: "timeout",
                    message: format!("{}: no answer within {:?}", ep.address, ep.timeout),
                }),
            }
        }
        Err(e) => Err(SourceFailure {
            reason: "tls_setup",
            message: format!("{}: TLS client setup failed: {e}", ep.address),
        }),
    };
    SourceResult {
        kind: SourceKind::Endpoint,
        target: ep.address.clone(),
        server_name: Some(ep.server_name.clone()),
        kube: None,
        outcome: outcome.map(super::endpoint_data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> ProbeService {
        let cfg: CertificateConfig = serde_yaml_ng::from_str(yaml).unwrap();
        validate(&cfg).unwrap();
        ProbeService::from_config(&cfg, Path::new("/etc/hm")).unwrap()
    }

    #[test]
    fn probing_is_opt_in() {
        let cfg: CertificateConfig = serde_yaml_ng::from_str("warning_days: 30\n").unwrap();
        assert!(ProbeService::from_config(&cfg, Path::new(".")).is_none());
        let cfg: CertificateConfig =
            serde_yaml_ng::from_str("enabled: false\nmodules: {}\n").unwrap();
        assert!(ProbeService::from_config(&cfg, Path::new(".")).is_none());
        let cfg: CertificateConfig = serde_yaml_ng::from_str("modules: {}\n").unwrap();
        assert!(ProbeService::from_config(&cfg, Path::new(".")).is_some());
    }

    #[test]
    fn modules_resolve_and_unknown_ones_are_refused() {
        let s = service(
            "endpoint_timeout: 7s\nmodules:\n  smtp: { starttls: smtp, timeout: 3s }\n  internal: { server_name: in.lan, ca_file: ca.pem }\n",
        );
        let ep = s.endpoint(Some("mail.lan:587"), Some("smtp"), None).unwrap();
        assert_eq!(ep.starttls, Some(StartTls::Smtp));
        assert_eq!(ep.timeout, Duration::from_secs(3));
        assert_eq!(ep.server_name, "mail.lan");
        let ep = s.endpoint(Some("10.0.0.5:443"), Some("internal"), None).unwrap();
        assert_eq!(ep.server_name, "in.lan");
        assert_eq!(ep.ca_file.as_deref(), Some(Path::new("/etc/hm/ca.pem")));
        // No module, and no module called default: the endpoint defaults.
        let ep = s.endpoint(Some("[::1]:443"), None, None).unwrap();
        assert_eq!(ep.server_name, "::1");
        assert_eq!(ep.timeout, Duration::from_secs(7));
        assert_eq!(ep.starttls, None);
        // The scraper's budget caps the module's timeout.
        let ep = s
            .endpoint(Some("a.lan:443"), None, Some(Duration::from_secs(2)))
            .unwrap();
        assert_eq!(ep.timeout, Duration::from_secs(2));
        let e = s.endpoint(Some("a.lan:443"), Some("nope"), None).unwrap_err();
        assert!(
            matches!(&e, ProbeRequestError::UnknownModule { known, .. } if known == "default, internal, smtp"),
            "{e}"
        );
        for bad in ["a.lan", "https://a.lan:443", "a.lan:443/x", "a lan:443", "a.lan:99999"] {
            assert!(
                matches!(s.endpoint(Some(bad), None, None), Err(ProbeRequestError::BadTarget { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            s.endpoint(None, None, None).unwrap_err(),
            ProbeRequestError::MissingTarget
        );
        // What the caller sent is quoted without control characters.
        let e = s.endpoint(Some("a\n.lan:443"), None, None).unwrap_err();
        assert!(e.to_string().contains("\"a?.lan:443\""), "{e}");
        let e = s.endpoint(Some("a.lan:443"), Some("x\u{1b}[31m"), None).unwrap_err();
        assert!(e.to_string().contains("\"x?[31m\""), "{e}");
    }

    #[test]
    fn a_configured_default_module_is_used_when_none_is_named() {
        let s = service("modules:\n  default: { starttls: imap }\n");
        let ep = s.endpoint(Some("m.lan:143"), None, None).unwrap();
        assert_eq!(ep.starttls, Some(StartTls::Imap));
    }

    #[test]
    fn allowed_targets_match_cidrs_ips_and_host_globs() {
        let s = service(
            "probe:\n  allowed_targets: [\"10.0.0.0/8\", \"::1\", \"*.LAN\", \"example.com\"]\n",
        );
        for ok in ["10.1.2.3:443", "[::1]:443", "nas.lan:443", "Example.com:443"] {
            assert!(s.endpoint(Some(ok), None, None).is_ok(), "{ok}");
        }
        for refused in [
            "11.0.0.1:443",
            "127.0.0.1:443",
            "[::2]:443",
            "evil.com:443",
            "lan.evil.com:443",
            "sub.example.com:443",
        ] {
            assert!(
                matches!(
                    s.endpoint(Some(refused), None, None),
                    Err(ProbeRequestError::NotAllowed(_))
                ),
                "{refused}"
            );
        }
        // Without the list everything is allowed.
        let open = service("probe: {}\n");
        assert!(open.endpoint(Some("11.0.0.1:443"), None, None).is_ok());
    }

    #[test]
    fn bad_settings_are_refused_at_load() {
        let check = |yaml: &str| {
            let cfg: CertificateConfig = serde_yaml_ng::from_str(yaml).unwrap();
            validate(&cfg).unwrap_err()
        };
        let (k, m) = check("probe:\n  allowed_targets: [\"10.0.0.0/33\"]\n");
        assert_eq!(k, "probe.allowed_targets");
        assert!(m.contains("neither a CIDR"), "{m}");
        let (_, m) = check("probe:\n  allowed_targets: [\"a.lan:443\"]\n");
        assert!(m.contains("without a port"), "{m}");
        let (k, _) = check("probe:\n  max_concurrent: 0\n");
        assert_eq!(k, "probe.max_concurrent");
        let (k, m) = check("modules:\n  slow: { timeout: 0s }\n");
        assert_eq!(k, "modules.slow");
        assert!(m.contains("timeout"), "{m}");
        let (_, m) = check("modules:\n  \"a b\": {}\n");
        assert!(m.contains("module names"), "{m}");
        assert!(serde_yaml_ng::from_str::<CertificateConfig>("modules:\n  x: { insecure: true }\n").is_err());
        assert!(serde_yaml_ng::from_str::<CertificateConfig>("modules:\n  x: { starttls: gopher }\n").is_err());
        assert!(serde_yaml_ng::from_str::<CertificateConfig>("probe:\n  allowed: []\n").is_err());
    }
}

//! Certificate expiry monitor: certificate files (PEM, DER, PKCS#12,
//! kubeconfig; files, globs, folders) and live TLS endpoints (SNI, STARTTLS).
//!
//! Every certificate is one series identified by its source (`file` with
//! `path`, or `endpoint` with `endpoint` and `server_name`), its position in
//! the bundle/chain (`index`, 0 = first/leaf) and its `serial`, so two
//! certificates never share a series. Expiry is computed against the
//! collection's injected clock. A failing source is `certificate_source_up 0`,
//! a log line and an error target; it never fails the collection.

pub mod config;
pub mod crl;
pub mod endpoint;
pub mod files;
pub mod jks;
pub mod kubernetes;
pub mod modules;
pub mod ocsp;
pub mod parse;
pub mod revocation;
pub mod starttls;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::core::clock::unix_seconds;
use crate::core::config::values::split_host_port;
use crate::monitors::kind::{BuildContext, ConfigIssue, MonitorKind};

pub use self::config::{CertificateConfig, EndpointDetails, EndpointSpec, StartTls};
use crate::core::monitor::{Cadence, CollectContext, Monitor, MonitorError};
use crate::core::snapshot::{Fact, Health, MetricDef, Snapshot, SnapshotBuilder, TargetStatus};

use endpoint::{Endpoint, Prober};
use parse::Cert;

pub const NOT_AFTER: MetricDef = MetricDef::gauge(
    "certificate_not_after_timestamp_seconds",
    "End of the certificate's validity period (notAfter), as a Unix timestamp.",
);
pub const NOT_BEFORE: MetricDef = MetricDef::gauge(
    "certificate_not_before_timestamp_seconds",
    "Start of the certificate's validity period (notBefore), as a Unix timestamp.",
);
pub const EXPIRED: MetricDef = MetricDef::gauge(
    "certificate_expired",
    "1 if the certificate's notAfter is in the past at the last check, else 0.",
);
pub const NOT_YET_VALID: MetricDef = MetricDef::gauge(
    "certificate_not_yet_valid",
    "1 if the certificate's notBefore is in the future at the last check, else 0.",
);
pub const INFO: MetricDef = MetricDef::gauge("certificate_info", "Certificate details: subject and issuer CN, SANs (bounded), key type and size, signature algorithm; always 1.");
pub const VERIFIED: MetricDef = MetricDef::gauge("certificate_verified", "1 if the chain served by the endpoint verifies for its server_name against the web roots (or its ca_file) at the last check, else 0.");
pub const WARNING: MetricDef = MetricDef::gauge("certificate_warning_threshold_seconds", "Configured warning threshold (warning_days) in seconds: alert when notAfter - time() is below it.");
pub const CRITICAL: MetricDef = MetricDef::gauge("certificate_critical_threshold_seconds", "Configured critical threshold (critical_days) in seconds: alert when notAfter - time() is below it.");
pub const LIFETIME_RATIO: MetricDef = MetricDef::gauge(
    "certificate_lifetime_remaining_ratio",
    "Fraction of the certificate's lifetime left at the last check: (notAfter - now) / (notAfter - notBefore), 0 once expired, 1 before notBefore.",
);
pub const WARNING_RATIO: MetricDef = MetricDef::gauge("certificate_lifetime_warning_threshold_ratio", "Configured warning_ratio: alert when the fraction of a certificate's lifetime left is below it.");
pub const CRITICAL_RATIO: MetricDef = MetricDef::gauge("certificate_lifetime_critical_threshold_ratio", "Configured critical_ratio: alert when the fraction of a certificate's lifetime left is below it.");
pub const SHORT_LIVED: MetricDef = MetricDef::gauge("certificate_short_lived_threshold_seconds", "Configured short_lived_days in seconds: certificates whose lifetime (notAfter - notBefore) is at most this are alerted by lifetime ratio only, not by warning_days/critical_days (0: off).");
pub const CRL_UP: MetricDef = MetricDef::gauge("certificate_crl_up", "1 if the CRL file was read and parsed on the last check, else 0 (revocation is then unknown, never \"not revoked\").");
pub const CRL_THIS_UPDATE: MetricDef = MetricDef::gauge("certificate_crl_this_update_timestamp_seconds", "The CRL's thisUpdate, as a Unix timestamp.");
pub const CRL_NEXT_UPDATE: MetricDef = MetricDef::gauge("certificate_crl_next_update_timestamp_seconds", "The CRL's nextUpdate, as a Unix timestamp: after it, the CRL is stale.");
pub const CRL_REVOKED: MetricDef = MetricDef::gauge("certificate_crl_revoked_certificates", "Serial numbers listed as revoked in the CRL.");
pub const CRL_VERIFIED: MetricDef = MetricDef::gauge("certificate_crl_verified", "1 if the CRL's signature verifies against its issuer's certificate found among the certificate sources, 0 if not or no issuer certificate is configured.");
pub const REVOKED: MetricDef = MetricDef::gauge("certificate_revoked", "1 if a CRL of the certificate's issuer lists its serial, 0 if the configured CRLs of its issuer do not; absent when no usable CRL covers it or a CRL file cannot be read.");
pub const OCSP_PRESENT: MetricDef = MetricDef::gauge("certificate_ocsp_staple_present", "1 if the endpoint stapled an OCSP response to the handshake at the last check, else 0.");
pub const OCSP_STATUS: MetricDef = MetricDef::gauge("certificate_ocsp_status", "The leaf's status in the stapled OCSP response: 1 for the current status (good, revoked, unknown), 0 for the others; absent without a usable staple.");
pub const OCSP_NEXT_UPDATE: MetricDef = MetricDef::gauge("certificate_ocsp_next_update_timestamp_seconds", "nextUpdate of the stapled OCSP response for the leaf, as a Unix timestamp.");
pub const REVOCATION_STATUS: MetricDef = MetricDef::gauge("certificate_revocation_status", "The leaf's revocation status from an active check (method: ocsp = the CA's OCSP responder, crl = the downloaded CRL): 1 for the current status (good, revoked, unknown), 0 for the others; unknown when the check failed.");
pub const REVOCATION_UP: MetricDef = MetricDef::gauge("certificate_revocation_check_up", "1 if the active revocation check (method ocsp or crl) got a verified answer on the last check, else 0 (status is then unknown).");
pub const REVOCATION_NEXT_UPDATE: MetricDef = MetricDef::gauge("certificate_revocation_next_update_timestamp_seconds", "nextUpdate of the verified OCSP response or downloaded CRL the active check used, as a Unix timestamp.");
pub const REVOCATION_ERROR: MetricDef = MetricDef::gauge("certificate_revocation_check_error_info", "Why the active revocation check (method) failed on the last check (reason is a short code); always 1.");
pub const SOURCE_UP: MetricDef = MetricDef::gauge(
    "certificate_source_up",
    "1 if the certificate file or endpoint was read and parsed on the last check, else 0.",
);
pub const SOURCE_CERTS: MetricDef = MetricDef::gauge(
    "certificate_source_certificates",
    "Certificates found in the file or served by the endpoint on the last check.",
);
pub const SOURCE_ERROR: MetricDef = MetricDef::gauge(
    "certificate_source_error_info",
    "Why the source could not be read on the last check (reason is a short code); always 1.",
);

/// Every `reason` of `certificate_source_error_info` (README lists them all).
pub const ERROR_REASONS: &[&str] = &[
    // files
    "not_found",
    "dangling_symlink",
    "symlink_loop",
    "permission_denied",
    "not_a_file",
    "too_large",
    "no_files",
    "io",
    "empty",
    "unknown_format",
    "malformed_pem",
    "private_key_only",
    "no_certificates",
    "truncated_der",
    "malformed_certificate",
    "malformed_pkcs12",
    "malformed_keystore",
    "malformed_kubeconfig",
    "wrong_passphrase",
    "passphrase_required",
    "passphrase_unavailable",
    "panic",
    // endpoints
    "resolve",
    "refused",
    "connect",
    "timeout",
    "starttls",
    "handshake",
    "no_certificate",
    "bad_server_name",
    "tls_setup",
    // CRL files
    "no_crl",
    "malformed_crl",
    // Kubernetes objects (the watch itself: kubernetes::WATCH_ERROR_REASONS)
    "missing_key",
];

/// Where a certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    File,
    Endpoint,
    /// A key of a Kubernetes object (`SourceResult::kube` says which).
    Kubernetes,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::File => "file",
            SourceKind::Endpoint => "endpoint",
            SourceKind::Kubernetes => "kubernetes",
        }
    }
}

/// What was read from one source.
#[derive(Debug, Clone)]
pub struct SourceData {
    pub certs: Vec<Cert>,
    /// `pem`, `der`, `pkcs12`, `kubeconfig`, or the TLS version for endpoints.
    pub format: String,
    /// Endpoints only: chain verification.
    pub verified: Option<Result<(), String>>,
    /// Endpoints only: the OCSP staple.
    pub staple: Option<StapleState>,
    /// Endpoints only: active revocation checks of the leaf (when enabled).
    pub revocation: Vec<revocation::Check>,
}

/// The OCSP response an endpoint stapled to its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StapleState {
    /// The server stapled nothing.
    Absent,
    Read(ocsp::Staple),
    /// Stapled, but not usable for the leaf (why).
    Bad(String),
}

/// Why one source failed.
#[derive(Debug, Clone)]
pub struct SourceFailure {
    pub reason: &'static str,
    pub message: String,
}

/// One file or endpoint and its outcome.
#[derive(Debug, Clone)]
pub struct SourceResult {
    pub kind: SourceKind,
    /// Path (as configured/discovered) or endpoint address.
    pub target: String,
    /// Endpoints only.
    pub server_name: Option<String>,
    pub outcome: Result<SourceData, SourceFailure>,
    /// Kubernetes sources only: the object and key.
    pub kube: Option<kubernetes::KubeRef>,
}

impl SourceResult {
    fn id_labels(&self) -> Vec<(&'static str, String)> {
        if let Some(k) = &self.kube {
            return k.id_labels();
        }
        let mut l = vec![("source", self.kind.as_str().to_string())];
        match self.kind {
            SourceKind::File => l.push(("path", self.target.clone())),
            SourceKind::Endpoint | SourceKind::Kubernetes => {
                l.push(("endpoint", self.target.clone()));
                l.push(("server_name", self.server_name.clone().unwrap_or_default()));
            }
        }
        l
    }

    /// Display name of the target for `--status`.
    pub fn display(&self) -> String {
        if let Some(k) = &self.kube {
            return k.display();
        }
        match (&self.kind, &self.server_name) {
            (SourceKind::Endpoint, Some(sn)) if !self.target.starts_with(&format!("{sn}:")) => {
                format!("{} (SNI {sn})", self.target)
            }
            _ => self.target.clone(),
        }
    }
}

/// The alert levels of a certificate monitor: time left (`warning_days`,
/// `critical_days`, in seconds) and fraction of the lifetime left
/// (`warning_ratio`, `critical_ratio`).
///
/// The day thresholds apply to every certificate whose lifetime is longer than
/// `short_lived` (`short_lived_days` in seconds; 0: all); the ratios to the
/// others, so that a 7-day certificate need not be "expiring within 30 days"
/// from its first minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub warning: i64,
    pub critical: i64,
    pub warning_ratio: f64,
    pub critical_ratio: f64,
    pub short_lived: i64,
}

impl Thresholds {
    /// Day thresholds (in seconds) with the default ratios (0.2, 0.1).
    pub fn days(warning: i64, critical: i64) -> Self {
        Thresholds {
            warning,
            critical,
            warning_ratio: 0.2,
            critical_ratio: 0.1,
            short_lived: 0,
        }
    }

    /// Time left (seconds) under which `c` is at the level of `days`/`ratio`:
    /// the day threshold, or for a short-lived certificate the share of its lifetime.
    /// (The ratio alerts also fire for longer-lived certificates, but only inside the
    /// day threshold, so they never come earlier than it.)
    fn effective(&self, c: &Cert, days: i64, ratio: f64) -> i64 {
        let life = c.not_after.saturating_sub(c.not_before).max(0);
        if life > self.short_lived {
            days
        } else {
            (ratio * life as f64).floor() as i64
        }
    }

    /// Time left under which `c` is a warning.
    pub fn warning_for(&self, c: &Cert) -> i64 {
        self.effective(c, self.warning, self.warning_ratio)
    }

    /// Time left under which `c` is critical.
    pub fn critical_for(&self, c: &Cert) -> i64 {
        self.effective(c, self.critical, self.critical_ratio)
    }
}

/// Fraction of `c`'s lifetime left at `now`: 0 once expired (or for an empty
/// validity period), 1 before notBefore.
pub fn lifetime_remaining_ratio(c: &Cert, now: i64) -> f64 {
    let life = c.not_after.saturating_sub(c.not_before);
    if life <= 0 || now >= c.not_after {
        return 0.0;
    }
    (c.not_after.saturating_sub(now) as f64 / life as f64).clamp(0.0, 1.0)
}

/// One CRL file and what was read from it.
#[derive(Debug, Clone)]
pub struct CrlResult {
    /// The path as configured/discovered (the `path` label).
    pub target: String,
    pub outcome: Result<Vec<crl::Crl>, SourceFailure>,
}

/// Expiry state of one certificate at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CertState {
    Ok,
    Warning,
    Critical,
    Expired,
    NotYetValid,
}

impl CertState {
    pub fn as_str(self) -> &'static str {
        match self {
            CertState::Ok => "ok",
            CertState::Warning => "warning",
            CertState::Critical => "critical",
            CertState::Expired => "expired",
            CertState::NotYetValid => "not_yet_valid",
        }
    }

    /// `now` in Unix seconds.
    pub fn of(c: &Cert, now: i64, t: &Thresholds) -> CertState {
        if now < c.not_before {
            CertState::NotYetValid
        } else if now > c.not_after {
            CertState::Expired
        } else if c.not_after - now <= t.critical_for(c) {
            CertState::Critical
        } else if c.not_after - now <= t.warning_for(c) {
            CertState::Warning
        } else {
            CertState::Ok
        }
    }
}

/// Registration of the certificate monitor (`custom_monitors.certificate_expiry`).
pub struct CertificateKind;

impl MonitorKind for CertificateKind {
    const KEY: &'static str = "certificate_expiry";
    type Config = CertificateConfig;

    fn validate(cfg: &CertificateConfig) -> Result<(), ConfigIssue> {
        cfg.validate()
    }

    fn build(cfg: CertificateConfig, ctx: &BuildContext<'_>) -> Arc<dyn Monitor> {
        monitor(&cfg, None, ctx.base_dir)
    }
}

/// The monitor for a block: `interval` is the `--interval` override.
pub fn monitor(
    cfg: &CertificateConfig,
    interval: Option<Duration>,
    base: &std::path::Path,
) -> Arc<dyn Monitor> {
    if cfg.paths.is_empty() && cfg.endpoints.is_empty() && cfg.kubernetes.is_none() {
        tracing::warn!("custom_monitors.certificate_expiry is enabled but lists no paths and no endpoints: only its thresholds are exported");
    }
    Arc::new(CertificateMonitor::from_config(
        cfg,
        interval,
        base.to_path_buf(),
    ))
}

/// The certificate monitor.
pub struct CertificateMonitor {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: CertificateConfig,
    base: PathBuf,
    /// Expands a leading `~/` in configured paths.
    home: Option<PathBuf>,
    endpoints: Vec<Endpoint>,
    prober: Result<Prober, String>,
    /// Files and the passphrase found by the last finished discovery.
    discovered: std::sync::Mutex<Discovered>,
    files: crate::core::targets::Targets<(), FileRead>,
    probes: crate::core::targets::Targets<(), EndpointRead>,
    /// (source:target, when read) of the last gather. A failed read serves
    /// no old certificates, so these targets are never stale.
    read_at: std::sync::Mutex<Vec<(String, SystemTime)>>,
    /// Reads still running after the last gather.
    pending: std::sync::atomic::AtomicUsize,
    /// CRL files read by the last gather.
    crls: std::sync::Mutex<Vec<CrlResult>>,
    /// `kubernetes` sources: background watches, started by the first collection.
    kube: Option<kubernetes::Watches>,
    /// Active revocation checks (endpoints with `revocation:`) and their cache.
    revocation: revocation::Checker,
}

type Discovered = (Vec<files::FileTarget>, Arc<Result<Option<String>, String>>);

impl CertificateMonitor {
    /// As built by the registry: `interval` is the `--interval` override.
    pub fn from_config(cfg: &CertificateConfig, interval: Option<Duration>, base: PathBuf) -> Self {
        let mut cfg = cfg.clone();
        if let Some(i) = interval {
            crate::core::config::values::MonitorSchedule::set_check_interval(&mut cfg, i);
        }
        Self::new(cfg, base)
    }

    /// `base`: the folder relative paths (`paths`, `ca_file`, `pkcs12_passphrase_file`) are resolved against.
    /// A leading `~/` is the exporter's own home (`HOME`).
    pub fn new(cfg: CertificateConfig, base: PathBuf) -> Self {
        Self::with_home(cfg, base, files::home_dir())
    }

    /// As [`CertificateMonitor::new`], with `~/` expanded to `home` (`None`: `~/` paths fail).
    pub fn with_home(cfg: CertificateConfig, base: PathBuf, home: Option<PathBuf>) -> Self {
        let endpoints = cfg
            .endpoints
            .iter()
            .map(|spec| {
                let d = spec.details();
                let host = split_host_port(&d.address)
                    .map(|(h, _)| h)
                    .unwrap_or_else(|_| d.address.clone());
                Endpoint {
                    server_name: d.server_name.clone().unwrap_or(host),
                    starttls: d.starttls,
                    timeout: d.timeout.map(|t| t.0).unwrap_or(cfg.endpoint_timeout.0),
                    ca_file: d
                        .ca_file
                        .as_ref()
                        .map(|f| files::resolve(&base, home.as_deref(), f)),
                    ca_label: d.ca_file.clone(),
                    revocation: d.revocation.clone().filter(|r| r.enabled()),
                    address: d.address,
                }
            })
            .collect();
        let kube = cfg.kubernetes.as_ref().map(|k| {
            kubernetes::Watches::new(
                k,
                k.kubeconfig
                    .as_ref()
                    .map(|p| files::resolve(&base, home.as_deref(), p)),
                passphrase(&cfg, &base, home.as_deref()),
            )
        });
        CertificateMonitor {
            inner: Arc::new(Inner {
                kube,
                endpoints,
                home,
                prober: Prober::new(),
                cfg,
                base,
                discovered: std::sync::Mutex::new((Vec::new(), Arc::new(Ok(None)))),
                files: crate::core::targets::Targets::new(),
                probes: crate::core::targets::Targets::new(),
                read_at: std::sync::Mutex::new(Vec::new()),
                pending: std::sync::atomic::AtomicUsize::new(0),
                crls: std::sync::Mutex::new(Vec::new()),
                revocation: revocation::Checker::new(),
            }),
        }
    }

    /// Every source's current result: files and endpoints that are due are
    /// read now (each with a deadline), the others come from memory.
    pub async fn gather(&self, ctx: CollectContext) -> Result<Vec<SourceResult>, MonitorError> {
        self.gather_with(ctx, true).await
    }

    /// [`Self::gather`]; unless `complete`, reads still running after the
    /// schedule's patience are left to land in a later collection.
    async fn gather_with(
        &self,
        ctx: CollectContext,
        complete: bool,
    ) -> Result<Vec<SourceResult>, MonitorError> {
        let inner = self.inner.clone();
        let schedule = crate::core::targets::Schedule::for_monitor(
            inner.cfg.check_interval.0,
            inner.cfg.retry_interval.0,
            inner.cfg.timeout.0,
        );
        let schedule = if complete {
            schedule.complete()
        } else {
            schedule
        };
        let walker = inner.clone();
        let walk = tokio::task::spawn_blocking(move || {
            let patterns: Vec<String> = walker.cfg.paths.iter().map(|g| g.0.clone()).collect();
            let found = files::discover(
                &walker.base,
                walker.home.as_deref(),
                &patterns,
                walker.cfg.max_depth,
            );
            let pass = passphrase(&walker.cfg, &walker.base, walker.home.as_deref());
            let crls = read_crls(&walker);
            (found, pass, crls)
        });
        let mut all = Vec::new();
        let (targets, pass) = match tokio::time::timeout(schedule.deadline, walk).await {
            Ok(Ok((found, pass, crls))) => {
                *inner.crls.lock().unwrap_or_else(|e| e.into_inner()) = crls;
                if found.duplicates > 0 {
                    tracing::debug!(
                        monitor = "certificate_expiry",
                        duplicates = found.duplicates,
                        "certificate files reached through more than one path were read once"
                    );
                }
                for (label, e) in found.problems {
                    all.push(SourceResult {
                        kind: SourceKind::File,
                        target: label,
                        server_name: None,
            kube: None,
                        outcome: Err(SourceFailure {
                            reason: e.metric_label(),
                            message: e.to_string(),
                        }),
                    });
                }
                let pass = Arc::new(pass);
                *inner.discovered.lock().unwrap_or_else(|e| e.into_inner()) =
                    (found.files.clone(), pass.clone());
                (found.files, pass)
            }
            Ok(Err(e)) => return Err(MonitorError::Panicked(e.to_string())),
            Err(_) => {
                // A hung mount: keep the files found last time.
                all.push(SourceResult {
                    kind: SourceKind::File,
                    target: "discovery".into(),
                    server_name: None,
            kube: None,
                    outcome: Err(SourceFailure {
                        reason: "timeout",
                        message: format!(
                            "finding certificate files did not finish within {:?} (a hung or slow mount?); the files found last time are kept",
                            schedule.deadline
                        ),
                    }),
                });
                inner
                    .discovered
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            }
        };
        let max = inner.cfg.max_file_size.0;
        let items: Vec<(String, files::FileTarget)> = targets
            .into_iter()
            .filter(|t| crate::core::shard::owns(&t.label)) // issue 19: this replica's files
            .map(|t| (t.label.clone(), t))
            .collect();
        let file_reads = inner
            .files
            .collect(schedule, ctx.now, items, move |t, _: &mut ()| {
                FileRead(read_one(&t, max, &pass))
            })
            .await;
        let sem = Arc::new(tokio::sync::Semaphore::new(
            inner.cfg.endpoint_concurrency.max(1),
        ));
        let items: Vec<(String, usize)> = inner
            .endpoints
            .iter()
            .enumerate()
            .filter(|(_, ep)| crate::core::shard::owns(&ep.address)) // issue 19: this replica's endpoints
            .map(|(i, ep)| (format!("{i}:{}", ep.address), i))
            .collect();
        let prober = inner.clone();
        let now = ctx.now;
        let probes = inner
            .probes
            .collect_async(schedule, now, items, move |i, ()| {
                let (inner, sem) = (prober.clone(), sem.clone());
                async move {
                    let _permit = sem.acquire_owned().await.ok();
                    (EndpointRead(probe_one(inner, i, now).await), ())
                }
            })
            .await;
        let mut fresh = Vec::new();
        let mut read_at = Vec::new();
        let pending = file_reads.iter().filter(|r| r.pending).count()
            + probes.iter().filter(|r| r.pending).count();
        self.inner
            .pending
            .store(pending, std::sync::atomic::Ordering::Relaxed);
        let file_reads = file_reads.into_iter().filter(|r| !r.placeholder);
        let probes = probes.into_iter().filter(|r| !r.placeholder);
        for r in file_reads {
            fresh.push(r.fresh);
            read_at.push((format!("file:{}", r.value.0.target), r.read_at));
            all.push(r.value.0);
        }
        for r in probes {
            fresh.push(r.fresh);
            read_at.push((format!("endpoint:{}", r.value.0.target), r.read_at));
            all.push(r.value.0);
        }
        *inner.read_at.lock().unwrap_or_else(|e| e.into_inner()) = read_at;
        let skip = all.len() - fresh.len();
        for (k, s) in all.iter().enumerate() {
            if k >= skip && !fresh[k - skip] {
                continue;
            }
            if let Err(f) = &s.outcome {
                tracing::warn!(monitor = "certificate_expiry", source = s.kind.as_str(), target = %s.target, reason = f.reason, "{}", f.message);
            } else if let Ok(SourceData {
                verified: Some(Err(why)),
                ..
            }) = &s.outcome
            {
                tracing::info!(monitor = "certificate_expiry", source = s.kind.as_str(), target = %s.target, reason = %why, "served chain does not verify");
            }
        }
        Ok(all)
    }

    /// The configured alert levels.
    pub fn thresholds(&self) -> Thresholds {
        let cfg = &self.inner.cfg;
        Thresholds {
            warning: i64::from(cfg.warning_days) * 86_400,
            critical: i64::from(cfg.critical_days) * 86_400,
            warning_ratio: cfg.warning_ratio,
            critical_ratio: cfg.critical_ratio,
            short_lived: i64::from(cfg.short_lived_days) * 86_400,
        }
    }
}

/// The Kubernetes sources' current facts (from memory: never waits on the
/// API) as sources, and each watch's health into `b`. Objects are sharded by UID.
fn kube_sources(w: &kubernetes::Watches, b: &mut SnapshotBuilder) -> Vec<SourceResult> {
    let mut out = Vec::new();
    b.declare(&kubernetes::KUBE_UP);
    for watch in &w.watches {
        let st = watch.state.lock().unwrap_or_else(|e| e.into_inner());
        let labels = vec![
            ("kind", watch.kind.as_str().to_string()),
            ("namespace", watch.scope.clone()),
        ];
        let stale = st.error.is_some();
        // Up: listed, and not failing since. Before the first LIST (and
        // without an error yet) it is neither: no series, the collection is pending.
        if st.synced || st.error.is_some() {
            b.gauge_owned(
                &kubernetes::KUBE_UP,
                labels.clone(),
                if st.error.is_none() { 1.0 } else { 0.0 },
            );
        }
        b.gauge_owned(
            &kubernetes::KUBE_SYNCED,
            labels.clone(),
            if st.synced { 1.0 } else { 0.0 },
        );
        let what = if watch.scope.is_empty() {
            format!("kubernetes {}", watch.kind.as_str())
        } else {
            format!("kubernetes {} in {}", watch.kind.as_str(), watch.scope)
        };
        // Every replica runs every watch (and exports its up/synced/error
        // series), but the watch as a target belongs to one shard, so that
        // a sharded fleet counts it once (homelab_monitor_targets_failing).
        let own_target = crate::core::shard::owns(&what);
        if let Some(f) = &st.error {
            let mut l = labels.clone();
            l.push(("reason", f.reason.to_string()));
            b.gauge_owned(&kubernetes::KUBE_ERROR, l, 1.0);
        }
        if !own_target {
        } else if let Some(f) = &st.error {
            b.target(TargetStatus {
                target: what,
                health: Health::Error,
                summary: format!(
                    "cannot list/watch ({}); {} object(s) from the last good read kept",
                    f.reason,
                    st.objects.len()
                ),
                error: Some(f.message.clone()),
                stale: st.synced,
                facts: Vec::new().into(),
            });
        } else if st.synced {
            b.target(TargetStatus::new(
                what,
                Health::Ok,
                format!("watching, {} object(s) with certificate keys", st.objects.len()),
            ));
        }
        let mut owned = 0usize;
        for (uid, o) in &st.objects {
            if !crate::core::shard::owns(uid) {
                continue; // issue 19: another replica's object
            }
            owned += 1;
            for k in &o.keys {
                out.push(SourceResult {
                    kind: SourceKind::Kubernetes,
                    target: format!("{}/{}", o.namespace, o.name),
                    server_name: None,
                    outcome: k.outcome.clone(),
                    kube: Some(kubernetes::KubeRef {
                        kind: watch.kind,
                        namespace: o.namespace.clone(),
                        name: o.name.clone(),
                        key: k.key.clone(),
                        uid: uid.clone(),
                        stale,
                    }),
                });
            }
        }
        b.gauge_owned(&kubernetes::KUBE_OBJECTS, labels, owned as f64);
    }
    // Deterministic series order.
    out.sort_by(|a, b| a.id_labels().cmp(&b.id_labels()));
    out
}

/// Read every configured CRL file (small files: read on each gather).
fn read_crls(inner: &Inner) -> Vec<CrlResult> {
    if inner.cfg.crls.is_empty() {
        return Vec::new();
    }
    let patterns: Vec<String> = inner.cfg.crls.iter().map(|g| g.0.clone()).collect();
    let found = files::discover(&inner.base, inner.home.as_deref(), &patterns, 0);
    let fail = |target: String, reason: &'static str, message: String| CrlResult {
        target,
        outcome: Err(SourceFailure { reason, message }),
    };
    let mut out: Vec<CrlResult> = found
        .problems
        .into_iter()
        .map(|(label, e)| fail(label, e.metric_label(), e.to_string()))
        .collect();
    for t in found.files {
        let r = match files::read_bounded(&t.path, &t.label, inner.cfg.max_file_size.0) {
            Err(e) => fail(t.label.clone(), e.metric_label(), e.to_string()),
            Ok(bytes) => match crl::parse_crls(&bytes) {
                Ok(list) => CrlResult {
                    target: t.label.clone(),
                    outcome: Ok(list),
                },
                Err(e) => fail(
                    t.label.clone(),
                    e.metric_label(),
                    format!("CRL {}: {e}", t.label),
                ),
            },
        };
        if let Err(f) = &r.outcome {
            tracing::warn!(monitor = "certificate_expiry", source = "crl", target = %r.target, reason = f.reason, "{}", f.message);
        }
        out.push(r);
    }
    out
}

async fn probe_one(inner: Arc<Inner>, i: usize, now: SystemTime) -> SourceResult {
    let ep = &inner.endpoints[i];
    let outcome = match &inner.prober {
        Ok(p) => p.probe(ep, now).await.map_err(|e| SourceFailure {
            reason: e.metric_label(),
            message: e.to_string(),
        }),
        Err(e) => Err(SourceFailure {
            reason: "tls_setup",
            message: format!("{}: TLS client setup failed: {e}", ep.address),
        }),
    };
    let mut outcome = outcome.map(endpoint_data);
    if let (Some(cfg), Ok(data)) = (&ep.revocation, &mut outcome) {
        let anchors = revocation::anchors(ep.ca_file.as_deref());
        data.revocation = inner.revocation.check(cfg, &data.certs, &anchors, now).await;
    }
    SourceResult {
        kind: SourceKind::Endpoint,
        target: ep.address.clone(),
        server_name: Some(ep.server_name.clone()),
        kube: None,
        outcome,
    }
}

/// What a probe of an endpoint read: the chain, its trust and the OCSP staple.
pub(crate) fn endpoint_data(p: endpoint::Probe) -> SourceData {
    let staple = match (&p.ocsp, p.certs.first()) {
        (None, _) => StapleState::Absent,
        (Some(der), Some(leaf)) => match ocsp::parse_staple(der, &leaf.serial) {
            Ok(st) => StapleState::Read(st),
            Err(e) => StapleState::Bad(e.to_string()),
        },
        (Some(_), None) => StapleState::Bad("no leaf certificate".into()),
    };
    SourceData {
        certs: p.certs,
        format: p.protocol,
        verified: Some(p.verified),
        staple: Some(staple),
        revocation: Vec::new(),
    }
}

fn passphrase(
    cfg: &CertificateConfig,
    base: &std::path::Path,
    home: Option<&std::path::Path>,
) -> Result<Option<String>, String> {
    if let Some(var) = &cfg.pkcs12_passphrase_env {
        return std::env::var(var)
            .map(Some)
            .map_err(|_| format!("environment variable {var} (pkcs12_passphrase_env) is not set"));
    }
    if let Some(f) = &cfg.pkcs12_passphrase_file {
        let text = crate::core::safe_open::read_to_string(files::resolve(base, home, f))
            .map_err(|e| format!("cannot read pkcs12_passphrase_file {f} ({})", e.kind()))?;
        let first = text
            .lines()
            .next()
            .unwrap_or("")
            .trim_end_matches('\r')
            .to_string();
        return Ok(Some(first));
    }
    Ok(None)
}

/// Read and parse one certificate file.
fn read_one(
    t: &files::FileTarget,
    max: u64,
    pass: &Result<Option<String>, String>,
) -> SourceResult {
    SourceResult {
        kind: SourceKind::File,
        target: t.label.clone(),
        server_name: None,
            kube: None,
        outcome: files::read_target(t, max, pass)
            .map(|p| SourceData {
                certs: p.certs,
                format: p.format.as_str().to_string(),
                verified: None,
                staple: None,
                revocation: Vec::new(),
            })
            .map_err(|e| SourceFailure {
                reason: e.metric_label(),
                message: e.to_string(),
            }),
    }
}

/// A file's result as kept per target.
#[derive(Debug, Clone)]
struct FileRead(SourceResult);

/// An endpoint's result as kept per target.
#[derive(Debug, Clone)]
struct EndpointRead(SourceResult);

fn timed_out(
    kind: SourceKind,
    last: Option<&SourceResult>,
    label: &str,
    waited: Duration,
) -> SourceResult {
    SourceResult {
        kind,
        target: last.map(|l| l.target.clone()).unwrap_or_else(|| {
            match kind {
                // Endpoint keys are "index:address".
                SourceKind::Endpoint => label.split_once(':').map(|(_, a)| a).unwrap_or(label).to_string(),
                _ => label.to_string(),
            }
        }),
        server_name: last.and_then(|l| l.server_name.clone()),
            kube: None,
        outcome: Err(SourceFailure {
            reason: "timeout",
            message: format!(
                "{label}: the read did not finish within {waited:.1?} (a hung mount or a peer that stopped answering?)"
            ),
        }),
    }
}

impl crate::core::targets::TargetValue for FileRead {
    fn healthy(&self) -> bool {
        self.0.outcome.is_ok()
    }
    fn timed_out(last: Option<&Self>, label: &str, waited: Duration) -> Self {
        FileRead(timed_out(
            SourceKind::File,
            last.map(|l| &l.0),
            label,
            waited,
        ))
    }
    fn pending(label: &str) -> Self {
        FileRead(timed_out(SourceKind::File, None, label, Duration::ZERO))
    }
}

impl crate::core::targets::TargetValue for EndpointRead {
    fn healthy(&self) -> bool {
        self.0.outcome.is_ok()
    }
    fn timed_out(last: Option<&Self>, label: &str, waited: Duration) -> Self {
        EndpointRead(timed_out(
            SourceKind::Endpoint,
            last.map(|l| &l.0),
            label,
            waited,
        ))
    }
    fn pending(label: &str) -> Self {
        EndpointRead(timed_out(SourceKind::Endpoint, None, label, Duration::ZERO))
    }
}

fn now_secs(now: SystemTime) -> i64 {
    unix_seconds(now).floor() as i64
}

/// Build the snapshot from gathered sources, with day thresholds (seconds)
/// and the default lifetime ratios.
pub fn snapshot(
    sources: &[SourceResult],
    now: SystemTime,
    warning: i64,
    critical: i64,
) -> Snapshot {
    snapshot_with(sources, now, &Thresholds::days(warning, critical))
}

/// Build the snapshot from gathered sources.
pub fn snapshot_with(sources: &[SourceResult], now: SystemTime, t: &Thresholds) -> Snapshot {
    snapshot_full(sources, &[], now, t)
}

/// What the CRLs say about one certificate.
fn revocation(c: &Cert, crls: &[(&crl::Crl, Option<bool>)], unknown: bool) -> Option<bool> {
    let mut covered = false;
    let mut doubt = unknown;
    for (crl, verified) in crls {
        if !crl.covers(c) {
            continue;
        }
        let usable = match verified {
            Some(true) => true,
            Some(false) => false,
            // No issuer certificate to verify with: name and key id must both match.
            None => crl.aki.is_some() && crl.aki == c.ids.aki,
        };
        if !usable {
            doubt = true;
            continue;
        }
        if crl.revoked.contains(&c.serial) {
            return Some(true);
        }
        covered = true;
    }
    (covered && !doubt).then_some(false)
}

/// Build the snapshot from gathered sources and CRL files.
pub fn snapshot_full(
    sources: &[SourceResult],
    crls: &[CrlResult],
    now: SystemTime,
    t: &Thresholds,
) -> Snapshot {
    let (warning, critical) = (t.warning, t.critical);
    let mut b = SnapshotBuilder::new();
    for def in [
        &NOT_AFTER,
        &NOT_BEFORE,
        &EXPIRED,
        &LIFETIME_RATIO,
        &INFO,
        &SOURCE_UP,
    ] {
        b.declare(def);
    }
    b.gauge(&WARNING, &[], warning as f64);
    b.gauge(&CRITICAL, &[], critical as f64);
    b.gauge(&WARNING_RATIO, &[], t.warning_ratio);
    b.gauge(&CRITICAL_RATIO, &[], t.critical_ratio);
    b.gauge(&SHORT_LIVED, &[], t.short_lived as f64);
    let now_s = now_secs(now);
    let all_certs: Vec<&Cert> = sources
        .iter()
        .filter_map(|s| s.outcome.as_ref().ok())
        .flat_map(|d| d.certs.iter())
        .collect();
    let mut usable_crls: Vec<(&crl::Crl, Option<bool>)> = Vec::new();
    let mut seen_crls = HashSet::new();
    for r in crls {
        if !seen_crls.insert(r.target.clone()) {
            continue;
        }
        // Issue 19: every replica reads every CRL (its certificates may be
        // revoked by any of them) but exports a CRL's own series only when it
        // owns the CRL's path, so a sharded job shows each CRL once.
        let exported = crate::core::shard::owns(&r.target);
        let id = vec![("path", r.target.clone())];
        let target = format!("crl: {}", r.target);
        match &r.outcome {
            Err(_) if !exported => {}
            Err(f) => {
                b.gauge_owned(&CRL_UP, id.clone(), 0.0);
                b.gauge_owned(
                    &SOURCE_ERROR,
                    vec![
                        ("source", "crl".to_string()),
                        ("path", r.target.clone()),
                        ("reason", f.reason.to_string()),
                    ],
                    1.0,
                );
                b.target(TargetStatus {
                    target,
                    health: Health::Error,
                    summary: format!("cannot read ({}); revocation unknown", f.reason),
                    error: Some(f.message.clone()),
                    stale: false,
                    facts: Vec::new().into(),
                });
            }
            Ok(list) => {
                if exported {
                    b.gauge_owned(&CRL_UP, id.clone(), 1.0);
                }
                let mut facts = Vec::new();
                let mut parts = Vec::new();
                for (i, c) in list.iter().enumerate() {
                    let mut l = id.clone();
                    l.push(("index", i.to_string()));
                    let verified = all_certs
                        .iter()
                        .filter_map(|ic| c.verify_with(ic))
                        .fold(None, |acc: Option<bool>, v| Some(acc.unwrap_or(false) || v));
                    if exported {
                        b.gauge_owned(&CRL_THIS_UPDATE, l.clone(), c.this_update as f64);
                        if let Some(n) = c.next_update {
                            b.gauge_owned(&CRL_NEXT_UPDATE, l.clone(), n as f64);
                        }
                        b.gauge_owned(&CRL_REVOKED, l.clone(), c.revoked.len() as f64);
                        b.gauge_owned(
                            &CRL_VERIFIED,
                            l,
                            if verified == Some(true) { 1.0 } else { 0.0 },
                        );
                    }
                    let item = format!("{} #{i} ({})", r.target, c.issuer);
                    if c.next_update.is_some_and(|n| n < now_s) {
                        facts.push(Fact::Finding {
                            kind: "stale CRL".into(),
                            subject: item.clone(),
                            detail: format!(
                                "nextUpdate was {} ({} ago)",
                                rfc3339(c.next_update.unwrap_or_default()),
                                human_secs(now_s - c.next_update.unwrap_or_default())
                            ),
                            counted: true,
                        });
                    }
                    if verified == Some(false) {
                        facts.push(Fact::Finding {
                            kind: "CRL signature".into(),
                            subject: item,
                            detail: "does not verify against its issuer's certificate; not used"
                                .into(),
                            counted: true,
                        });
                    }
                    parts.push(format!("{} revoked", c.revoked.len()));
                    usable_crls.push((c, verified));
                }
                if !exported {
                    continue;
                }
                b.target(TargetStatus {
                    target,
                    health: if facts.is_empty() {
                        Health::Ok
                    } else {
                        Health::Findings
                    },
                    summary: format!("{} CRL(s), {}", list.len(), parts.join(", ")),
                    error: None,
                    stale: false,
                    facts: facts.into(),
                });
            }
        }
    }
    let crl_down = crls.iter().any(|r| r.outcome.is_err());
    let mut seen_sources = HashSet::new();
    let mut seen_certs = HashSet::new();
    for s in sources {
        let id = s.id_labels();
        if !seen_sources.insert(id.clone()) {
            tracing::warn!(monitor = "certificate_expiry", target = %s.target, "source listed twice; reported once");
            continue;
        }
        match &s.outcome {
            Err(f) => {
                b.gauge_owned(&SOURCE_UP, id.clone(), 0.0);
                let mut l = id.clone();
                l.push(("reason", f.reason.to_string()));
                b.gauge_owned(&SOURCE_ERROR, l, 1.0);
                b.target(TargetStatus {
                    target: format!("{}: {}", s.kind.as_str(), s.display()),
                    health: Health::Error,
                    summary: format!("cannot read ({})", f.reason),
                    error: Some(f.message.clone()),
                    stale: s.kube.as_ref().is_some_and(|k| k.stale),
                    facts: Vec::new().into(),
                });
            }
            Ok(data) => {
                b.gauge_owned(&SOURCE_UP, id.clone(), 1.0);
                b.gauge_owned(&SOURCE_CERTS, id.clone(), data.certs.len() as f64);
                if let Some(v) = &data.verified {
                    b.gauge_owned(&VERIFIED, id.clone(), if v.is_ok() { 1.0 } else { 0.0 });
                }
                let mut staple_facts = Vec::new();
                let mut staple_note = None;
                if let Some(st) = &data.staple {
                    let present = !matches!(st, StapleState::Absent);
                    b.gauge_owned(&OCSP_PRESENT, id.clone(), if present { 1.0 } else { 0.0 });
                    match st {
                        StapleState::Absent => {}
                        StapleState::Read(r) => {
                            for status in ocsp::OcspStatus::ALL {
                                let mut l = id.clone();
                                l.push(("status", status.as_str().to_string()));
                                b.gauge_owned(
                                    &OCSP_STATUS,
                                    l,
                                    if status == r.status { 1.0 } else { 0.0 },
                                );
                            }
                            if let Some(n) = r.next_update {
                                b.gauge_owned(&OCSP_NEXT_UPDATE, id.clone(), n as f64);
                            }
                            staple_note = Some(format!("OCSP staple {}", r.status.as_str()));
                            if r.status == ocsp::OcspStatus::Revoked {
                                staple_facts.push(Fact::Finding {
                                    kind: "revoked".into(),
                                    subject: s.display(),
                                    detail: "the stapled OCSP response says the served certificate is revoked".into(),
                                    counted: true,
                                });
                            }
                        }
                        StapleState::Bad(why) => {
                            staple_note = Some("OCSP staple unusable".into());
                            staple_facts.push(Fact::Finding {
                                kind: "OCSP staple".into(),
                                subject: s.display(),
                                detail: why.clone(),
                                counted: false,
                            });
                        }
                    }
                }
                for chk in &data.revocation {
                    let mut l = id.clone();
                    l.push(("method", chk.method.as_str().to_string()));
                    let (current, up) = match &chk.outcome {
                        Ok(a) => (a.status, true),
                        Err(_) => (ocsp::OcspStatus::Unknown, false),
                    };
                    for status in ocsp::OcspStatus::ALL {
                        let mut ls = l.clone();
                        ls.push(("status", status.as_str().to_string()));
                        b.gauge_owned(
                            &REVOCATION_STATUS,
                            ls,
                            if status == current { 1.0 } else { 0.0 },
                        );
                    }
                    b.gauge_owned(&REVOCATION_UP, l.clone(), if up { 1.0 } else { 0.0 });
                    let what = match chk.method {
                        revocation::Method::Ocsp => "OCSP responder",
                        revocation::Method::Crl => "CRL download",
                    };
                    match &chk.outcome {
                        Ok(a) => {
                            if let Some(n) = a.next_update {
                                b.gauge_owned(&REVOCATION_NEXT_UPDATE, l.clone(), n as f64);
                            }
                            staple_note = Some(match staple_note.take() {
                                Some(n) => format!("{n}, {what} {}", a.status.as_str()),
                                None => format!("{what} {}", a.status.as_str()),
                            });
                            if a.status == ocsp::OcspStatus::Revoked {
                                staple_facts.push(Fact::Finding {
                                    kind: "revoked".into(),
                                    subject: s.display(),
                                    detail: format!("the {what} says the served certificate is revoked"),
                                    counted: true,
                                });
                            }
                        }
                        Err((reason, message)) => {
                            l.push(("reason", reason.to_string()));
                            b.gauge_owned(&REVOCATION_ERROR, l, 1.0);
                            staple_note = Some(match staple_note.take() {
                                Some(n) => format!("{n}, {what} failed ({reason})"),
                                None => format!("{what} failed ({reason})"),
                            });
                            staple_facts.push(Fact::Finding {
                                kind: "revocation check".into(),
                                subject: s.display(),
                                detail: format!("{what}: {message}; revocation unknown"),
                                counted: false,
                            });
                        }
                    }
                }
                let mut worst = CertState::Ok;
                let mut revoked_any = false;
                let mut earliest: Option<&Cert> = None;
                let mut facts = Vec::new();
                for (i, c) in data.certs.iter().enumerate() {
                    let mut l = id.clone();
                    l.push(("index", i.to_string()));
                    l.push(("serial", c.serial.clone()));
                    if !seen_certs.insert(l.clone()) {
                        continue;
                    }
                    let item = cert_item(s, i, c);
                    facts.push(Fact::Expiry {
                        item: item.clone(),
                        not_after: c.not_after,
                        warning_seconds: Some(t.warning_for(c)),
                        critical_seconds: Some(t.critical_for(c)),
                    });
                    if c.not_before > now_s {
                        facts.push(Fact::Finding {
                            kind: "not yet valid".into(),
                            subject: item,
                            detail: format!(
                                "valid from {} (in {})",
                                rfc3339(c.not_before),
                                human_secs(c.not_before - now_s)
                            ),
                            counted: true,
                        });
                    }
                    b.gauge_owned(&NOT_AFTER, l.clone(), c.not_after as f64);
                    b.gauge_owned(&NOT_BEFORE, l.clone(), c.not_before as f64);
                    b.gauge_owned(
                        &LIFETIME_RATIO,
                        l.clone(),
                        lifetime_remaining_ratio(c, now_s),
                    );
                    if !crls.is_empty() {
                        if let Some(r) = revocation(c, &usable_crls, crl_down) {
                            b.gauge_owned(&REVOKED, l.clone(), if r { 1.0 } else { 0.0 });
                            if r {
                                revoked_any = true;
                                facts.push(Fact::Finding {
                                    kind: "revoked".into(),
                                    subject: cert_item(s, i, c),
                                    detail: format!("serial {} is listed in a CRL of its issuer", c.serial),
                                    counted: true,
                                });
                            }
                        }
                    }
                    b.gauge_owned(
                        &EXPIRED,
                        l.clone(),
                        if now_s > c.not_after { 1.0 } else { 0.0 },
                    );
                    b.gauge_owned(
                        &NOT_YET_VALID,
                        l.clone(),
                        if now_s < c.not_before { 1.0 } else { 0.0 },
                    );
                    let mut info = l;
                    info.extend([
                        ("subject_cn", c.subject_cn.clone()),
                        ("issuer_cn", c.issuer_cn.clone()),
                        ("sans", c.sans_label()),
                        ("key_type", c.key_type.clone()),
                        ("key_bits", c.key_bits.to_string()),
                        ("signature_algorithm", c.signature_algorithm.clone()),
                        ("is_ca", c.is_ca.to_string()),
                    ]);
                    b.gauge_owned(&INFO, info, 1.0);
                    worst = worst.max(CertState::of(c, now_s, t));
                    if earliest.is_none_or(|e| c.not_after < e.not_after) {
                        earliest = Some(c);
                    }
                }
                let mut summary = format!("{} certificate(s), {}", data.certs.len(), data.format);
                if let Some(e) = earliest {
                    let when = expiry_phrase(e.not_after - now_s);
                    if e.not_after < now_s {
                        summary.push_str(&format!(", {} {when}", display_cn(e)));
                    } else {
                        summary.push_str(&format!(", earliest expiry {when} ({})", display_cn(e)));
                    }
                }
                if let Some(f) = data
                    .certs
                    .iter()
                    .filter(|c| c.not_before > now_s)
                    .max_by_key(|c| c.not_before)
                {
                    summary.push_str(&format!(
                        ", {} not valid until {} (in {})",
                        display_cn(f),
                        rfc3339(f.not_before),
                        human_secs(f.not_before - now_s)
                    ));
                }
                match &data.verified {
                    Some(Ok(())) => summary.push_str(", verified"),
                    Some(Err(why)) => summary.push_str(&format!(", not verified: {why}")),
                    None => {}
                }
                if worst != CertState::Ok {
                    summary.push_str(&format!(", {}", worst.as_str()));
                }
                if let Some(n) = &staple_note {
                    summary.push_str(&format!(", {n}"));
                }
                revoked_any |= staple_facts.iter().any(|f| matches!(f, Fact::Finding { kind, .. } if kind == "revoked"));
                facts.extend(staple_facts);
                if revoked_any {
                    summary.push_str(", revoked");
                }
                if verify_finding(data) {
                    if let Some(Err(why)) = &data.verified {
                        facts.push(Fact::Finding {
                            kind: "not verified".into(),
                            subject: s.display(),
                            detail: format!("the served chain does not verify: {why}"),
                            counted: true,
                        });
                    }
                }
                b.target(TargetStatus {
                    target: format!("{}: {}", s.kind.as_str(), s.display()),
                    health: if worst == CertState::Ok && !verify_finding(data) && !revoked_any {
                        Health::Ok
                    } else {
                        Health::Findings
                    },
                    summary,
                    error: None,
                    stale: s.kube.as_ref().is_some_and(|k| k.stale),
                    facts: facts.into(),
                });
            }
        }
    }
    b.build()
}

/// A served chain that does not verify is a finding, except the normal homelab
/// case: a private CA checked against the web roots (`unknown_issuer`, no `ca_file`).
/// A name mismatch, an expired or not-yet-valid chain, or a chain the configured
/// `ca_file` does not trust is what a client would refuse.
fn verify_finding(d: &SourceData) -> bool {
    matches!(&d.verified, Some(Err(why)) if why != "unknown_issuer")
}

/// The item of a certificate's facts: its source, and for a chain member
/// after the leaf, its position and name.
fn cert_item(s: &SourceResult, index: usize, c: &Cert) -> String {
    if index == 0 {
        s.display()
    } else {
        format!("{} #{index} ({})", s.display(), display_cn(c))
    }
}

fn human_secs(secs: i64) -> String {
    crate::cli::report::human_duration(Duration::from_secs(secs.unsigned_abs()))
}

/// `left` = notAfter - now: "in 26h", "in 4 days 23h", "expired 426 days ago".
fn expiry_phrase(left: i64) -> String {
    if left < 0 {
        format!("expired {} ago", human_secs(left))
    } else {
        format!("in {}", human_secs(left))
    }
}

fn display_cn(c: &Cert) -> String {
    if !c.subject_cn.is_empty() {
        c.subject_cn.clone()
    } else {
        c.sans
            .first()
            .cloned()
            .unwrap_or_else(|| format!("serial {}", c.serial))
    }
}

fn rfc3339(ts: i64) -> String {
    if ts < 0 {
        return ts.to_string();
    }
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(ts as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[async_trait]
impl Monitor for CertificateMonitor {
    fn name(&self) -> &'static str {
        "certificate_expiry"
    }

    fn cadence(&self) -> Cadence {
        self.inner.cfg.cadence()
    }

    fn describe(&self) -> String {
        let paths: Vec<&str> = self.inner.cfg.paths.iter().map(|g| g.0.as_str()).collect();
        let eps: Vec<&str> = self
            .inner
            .endpoints
            .iter()
            .map(|e| e.address.as_str())
            .collect();
        let mut d = format!(
            "certificates: paths [{}] (under {}), endpoints [{}]",
            paths.join(", "),
            self.inner.base.display(),
            eps.join(", ")
        );
        if let Some(k) = &self.inner.cfg.kubernetes {
            let kinds: Vec<&str> = k.sources.iter().map(|s| s.kind.as_str()).collect();
            d.push_str(&format!(", kubernetes [{}]", kinds.join(", ")));
        }
        d
    }

    async fn collect(&self, ctx: CollectContext) -> Result<Snapshot, MonitorError> {
        let mut sources = self.gather_with(ctx, false).await?;
        let mut kube_snap = SnapshotBuilder::new();
        let mut kube_pending = 0;
        if let Some(w) = &self.inner.kube {
            w.start();
            kube_pending = w.pending();
            sources.extend(kube_sources(w, &mut kube_snap));
        }
        let crls = self
            .inner
            .crls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut snap = snapshot_full(&sources, &crls, ctx.now, &self.thresholds());
        snap.pending = self
            .inner
            .pending
            .load(std::sync::atomic::Ordering::Relaxed)
            + kube_pending;
        let mut b = kube_snap;
        for (target, at) in self
            .inner
            .read_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            crate::core::targets::emit_freshness(&mut b, "certificate_expiry", target, *at, false);
        }
        let extra = b.build();
        snap.families.extend(extra.families);
        snap.targets.extend(extra.targets);
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(nb: i64, na: i64) -> Cert {
        Cert {
            serial: "01".into(),
            subject_cn: "x".into(),
            issuer_cn: "x".into(),
            sans: vec![],
            not_before: nb,
            not_after: na,
            key_type: "rsa".into(),
            key_bits: 2048,
            signature_algorithm: "sha256WithRSAEncryption".into(),
            is_ca: false,
            self_signed: true,
            ids: Default::default(),
        }
    }

    #[test]
    fn states_follow_thresholds() {
        let d = 86_400;
        let t = Thresholds::days(30 * d, 7 * d);
        assert_eq!(
            CertState::of(&cert(0, 100 * d), 50 * d, &t),
            CertState::Ok
        );
        assert_eq!(
            CertState::of(&cert(0, 100 * d), 80 * d, &t),
            CertState::Warning
        );
        assert_eq!(
            CertState::of(&cert(0, 100 * d), 95 * d, &t),
            CertState::Critical
        );
        assert_eq!(
            CertState::of(&cert(0, 100 * d), 101 * d, &t),
            CertState::Expired
        );
        assert_eq!(
            CertState::of(&cert(10 * d, 100 * d), 5 * d, &t),
            CertState::NotYetValid
        );
    }

    /// A 90-day and a 7-day certificate (rcgen, parsed as files are) with the
    /// default thresholds (30/7 days, 20%/10% of the lifetime) and
    /// `short_lived_days: 14`: the day thresholds warn the 90-day one at 30
    /// days left, the ratios warn the 7-day one in its last 20%, never from its
    /// first minute. Without `short_lived_days`, the days hold it for ever.
    #[test]
    fn ninety_and_seven_day_certificates_are_both_alerted_sensibly() {
        let d = 86_400;
        let t = Thresholds {
            short_lived: 14 * d,
            ..Thresholds::days(30 * d, 7 * d)
        };
        let start: i64 = 1_800_000_000; // 2027-01-15
        let make = |days: i64| {
            let mut p = rcgen::CertificateParams::new(vec!["x.lan".to_string()]).unwrap();
            p.not_before = rcgen::date_time_ymd(2027, 1, 15);
            p.not_after = p.not_before + std::time::Duration::from_secs((days * d) as u64);
            let key = rcgen::KeyPair::generate().unwrap();
            let der = p.self_signed(&key).unwrap().der().to_vec();
            parse::cert_from_der(&der, 0).unwrap()
        };
        let long = make(90);
        let short = make(7);
        let nb = long.not_before;
        assert_eq!(short.not_before, nb);
        assert!((nb - start).abs() < d, "{nb}");
        let at = |c: &Cert, left: i64| CertState::of(c, c.not_after - left, &t);
        // 90 days: Ok with 40 days left, warning with 29, critical with 6 (days).
        assert_eq!(at(&long, 40 * d), CertState::Ok);
        assert_eq!(at(&long, 29 * d), CertState::Warning);
        assert_eq!(at(&long, 6 * d), CertState::Critical);
        // 7 days: Ok from its first minute to 20% left (33.6 h), then warning,
        // critical under 10% (16.8 h); never from the day thresholds.
        assert_eq!(at(&short, 7 * d - 60), CertState::Ok);
        assert_eq!(at(&short, 2 * d), CertState::Ok);
        assert_eq!(at(&short, 30 * 3600), CertState::Warning);
        assert_eq!(at(&short, 16 * 3600), CertState::Critical);
        // Default (short_lived_days 0): the day thresholds apply to it too.
        let plain = Thresholds::days(30 * d, 7 * d);
        assert_eq!(
            CertState::of(&short, short.not_after - 2 * d, &plain),
            CertState::Critical
        );
        // The 90-day one is not short-lived: its day thresholds apply, and
        // its ratio never makes it a warning earlier (15 days left = 17%).
        assert_eq!(at(&long, 25 * d), CertState::Warning);
        assert_eq!(at(&long, 15 * d), CertState::Warning);
        // The metric and the facts carry the same levels.
        let now = short.not_after - 30 * 3600;
        let src = |path: &str, c: &Cert| SourceResult {
            kind: SourceKind::File,
            target: path.into(),
            server_name: None,
            kube: None,
            outcome: Ok(SourceData {
                certs: vec![c.clone()],
                format: "der".into(),
                verified: None,
                staple: None,
                revocation: Vec::new(),
            }),
        };
        let snap = snapshot_with(
            &[src("long.der", &long), src("short.der", &short)],
            SystemTime::UNIX_EPOCH + Duration::from_secs(now as u64),
            &t,
        );
        let ratio = |path: &str| {
            snap.family(LIFETIME_RATIO.name)
                .unwrap()
                .samples
                .iter()
                .find(|s| s.label("path") == Some(path))
                .map(|s| s.value)
                .unwrap()
        };
        let short_ratio = ratio("short.der");
        assert!((short_ratio - 30.0 / 168.0).abs() < 1e-3, "{short_ratio}");
        let long_ratio = ratio("long.der");
        assert!((long_ratio - (90.0 * 24.0 - 138.0) / 2160.0).abs() < 1e-3, "{long_ratio}");
        let health: Vec<Health> = snap.targets.iter().map(|t| t.health).collect();
        assert_eq!(health, [Health::Ok, Health::Findings]);
        // Clamped: 0 once expired, 1 before notBefore.
        assert_eq!(lifetime_remaining_ratio(&short, short.not_after + 1), 0.0);
        assert_eq!(lifetime_remaining_ratio(&short, short.not_before - d), 1.0);
        assert_eq!(lifetime_remaining_ratio(&cert(5, 5), 0), 0.0);
    }

    #[test]
    fn identical_sources_never_make_duplicate_series() {
        let src = SourceResult {
            kind: SourceKind::File,
            target: "a.pem".into(),
            server_name: None,
            kube: None,
            outcome: Ok(SourceData {
                certs: vec![cert(0, 10), cert(0, 20)],
                format: "pem".into(),
                verified: None,
                staple: None,
                revocation: Vec::new(),
            }),
        };
        let snap = snapshot(&[src.clone(), src], SystemTime::UNIX_EPOCH, 1, 1);
        let fam = snap.family(NOT_AFTER.name).unwrap();
        assert_eq!(
            fam.samples.len(),
            2,
            "same serial, different index: two series, no repeats"
        );
        let up = snap.family(SOURCE_UP.name).unwrap();
        assert_eq!(up.samples.len(), 1);
    }
    #[test]
    fn every_reason_is_listed() {
        use endpoint::EndpointError as Ee;
        use files::FileError as Fe;
        use parse::ParseError as Pe;
        let p = || "p".to_string();
        let parse = [
            Pe::Empty,
            Pe::MalformedPem { block: 1, what: "" },
            Pe::UnreadCertificateBlocks {
                markers: 2,
                read: 1,
            },
            Pe::PrivateKeyOnly { keys: 1 },
            Pe::NoCertificates { format: "PEM" },
            Pe::TruncatedDer { index: 0 },
            Pe::MalformedCertificate { index: 0 },
            Pe::WrongPassphrase,
            Pe::PassphraseRequired,
            Pe::MalformedPkcs12 { what: "" },
            Pe::KeystoreWrongPassword,
            Pe::MalformedKeystore { what: "" },
            Pe::MalformedKubeconfig { line: 1 },
            Pe::KubeconfigBase64 {
                entry: p(),
                field: "",
            },
            Pe::UnknownFormat,
        ];
        let mut labels: Vec<&str> = parse.iter().map(|e| e.metric_label()).collect();
        let io = std::io::ErrorKind::Other;
        let file = [
            Fe::NotFound(p()),
            Fe::NoMatches(p()),
            Fe::NoHome(p()),
            Fe::TildeUser(p()),
            Fe::DanglingSymlink(p()),
            Fe::SymlinkLoop(p()),
            Fe::PermissionDenied(p()),
            Fe::TooLarge {
                path: p(),
                size: 1,
                max: 0,
            },
            Fe::NotAFile(p()),
            Fe::NoFiles(p()),
            Fe::NoReadableFiles {
                dir: p(),
                file: p(),
            },
            Fe::Io {
                path: p(),
                kind: io,
            },
            Fe::Passphrase {
                path: p(),
                reason: p(),
            },
        ];
        labels.extend(file.iter().map(|e| e.metric_label()));
        let after = Duration::from_secs(1);
        let ep = [
            Ee::Resolve(p()),
            Ee::Refused(p()),
            Ee::Connect {
                endpoint: p(),
                kind: io,
            },
            Ee::Timeout {
                endpoint: p(),
                stage: "",
                after,
            },
            Ee::StartTls {
                endpoint: p(),
                protocol: "smtp",
                what: p(),
            },
            Ee::Handshake {
                endpoint: p(),
                reason: p(),
            },
            Ee::NoCertificate(p()),
            Ee::BadServerName {
                endpoint: p(),
                name: p(),
            },
            Ee::Parse {
                endpoint: p(),
                source: Pe::Empty,
            },
        ];
        labels.extend(ep.iter().map(|e| e.metric_label()));
        labels.extend(
            [
                crl::CrlError::Empty,
                crl::CrlError::NoCrl,
                crl::CrlError::Malformed { index: 0 },
            ]
            .iter()
            .map(|e| e.metric_label()),
        );
        // Set in this module: reading panicked, TLS client setup failed.
        labels.extend(["panic", "tls_setup"]);
        // Set by kubernetes.rs: a TLS Secret without tls.crt.
        labels.push("missing_key");
        for l in &labels {
            assert!(ERROR_REASONS.contains(l), "{l} missing from ERROR_REASONS");
        }
        for r in ERROR_REASONS {
            assert!(labels.contains(r), "{r} is listed but never emitted");
        }
    }

    #[test]
    fn status_wording_reads_naturally() {
        let d = 86_400;
        let now = 1000 * d;
        let src = |certs: Vec<Cert>| SourceResult {
            kind: SourceKind::File,
            target: "a.pem".into(),
            server_name: None,
            kube: None,
            outcome: Ok(SourceData {
                certs,
                format: "pem".into(),
                verified: None,
                staple: None,
                revocation: Vec::new(),
            }),
        };
        let summary = |certs: Vec<Cert>| {
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(now as u64);
            let snap = snapshot(&[src(certs)], at, 30 * d, 7 * d);
            snap.targets[0].summary.clone()
        };
        let cases = [
            (cert(0, now + 26 * 3600), "earliest expiry in 26h (x)"),
            // 4.99 days
            (cert(0, now + 431_136), "earliest expiry in 4 days 23h (x)"),
            (cert(0, now - 426 * d - 5), "x expired 426 days ago"),
            (cert(now + 5 * d, now + 400 * d), "x not valid until"),
            (cert(now + 5 * d, now + 400 * d), "(in 5 days)"),
        ];
        for (c, want) in cases {
            let s = summary(vec![c]);
            assert!(s.contains(want), "{s}");
            assert!(!s.contains("day(s)") && !s.contains("in -"), "{s}");
        }
        assert_eq!(expiry_phrase(-426 * d), "expired 426 days ago");
        assert_eq!(expiry_phrase(26 * 3600), "in 26h");
    }
}

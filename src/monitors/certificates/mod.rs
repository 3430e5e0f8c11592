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
pub mod endpoint;
pub mod files;
pub mod parse;

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
];

/// Where a certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    File,
    Endpoint,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::File => "file",
            SourceKind::Endpoint => "endpoint",
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
}

impl SourceResult {
    fn id_labels(&self) -> Vec<(&'static str, String)> {
        let mut l = vec![("source", self.kind.as_str().to_string())];
        match self.kind {
            SourceKind::File => l.push(("path", self.target.clone())),
            SourceKind::Endpoint => {
                l.push(("endpoint", self.target.clone()));
                l.push(("server_name", self.server_name.clone().unwrap_or_default()));
            }
        }
        l
    }

    /// Display name of the target for `--status`.
    pub fn display(&self) -> String {
        match (&self.kind, &self.server_name) {
            (SourceKind::Endpoint, Some(sn)) if !self.target.starts_with(&format!("{sn}:")) => {
                format!("{} (SNI {sn})", self.target)
            }
            _ => self.target.clone(),
        }
    }
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

    /// `now` in Unix seconds; thresholds in seconds.
    pub fn of(c: &Cert, now: i64, warning: i64, critical: i64) -> CertState {
        if now < c.not_before {
            CertState::NotYetValid
        } else if now > c.not_after {
            CertState::Expired
        } else if c.not_after - now <= critical {
            CertState::Critical
        } else if c.not_after - now <= warning {
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
    if cfg.paths.is_empty() && cfg.endpoints.is_empty() {
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
                    address: d.address,
                }
            })
            .collect();
        CertificateMonitor {
            inner: Arc::new(Inner {
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
            (found, pass)
        });
        let mut all = Vec::new();
        let (targets, pass) = match tokio::time::timeout(schedule.deadline, walk).await {
            Ok(Ok((found, pass))) => {
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

    fn thresholds(&self) -> (i64, i64) {
        (
            i64::from(self.inner.cfg.warning_days) * 86_400,
            i64::from(self.inner.cfg.critical_days) * 86_400,
        )
    }
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
    SourceResult {
        kind: SourceKind::Endpoint,
        target: ep.address.clone(),
        server_name: Some(ep.server_name.clone()),
        outcome: outcome.map(|p| SourceData {
            certs: p.certs,
            format: p.protocol,
            verified: Some(p.verified),
        }),
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
        outcome: files::read_target(t, max, pass)
            .map(|p| SourceData {
                certs: p.certs,
                format: p.format.as_str().to_string(),
                verified: None,
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

/// Build the snapshot from gathered sources.
pub fn snapshot(
    sources: &[SourceResult],
    now: SystemTime,
    warning: i64,
    critical: i64,
) -> Snapshot {
    let mut b = SnapshotBuilder::new();
    for def in [&NOT_AFTER, &NOT_BEFORE, &EXPIRED, &INFO, &SOURCE_UP] {
        b.declare(def);
    }
    b.gauge(&WARNING, &[], warning as f64);
    b.gauge(&CRITICAL, &[], critical as f64);
    let now_s = now_secs(now);
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
                    stale: false,
                    facts: Vec::new(),
                });
            }
            Ok(data) => {
                b.gauge_owned(&SOURCE_UP, id.clone(), 1.0);
                b.gauge_owned(&SOURCE_CERTS, id.clone(), data.certs.len() as f64);
                if let Some(v) = &data.verified {
                    b.gauge_owned(&VERIFIED, id.clone(), if v.is_ok() { 1.0 } else { 0.0 });
                }
                let mut worst = CertState::Ok;
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
                        warning_seconds: Some(warning),
                        critical_seconds: Some(critical),
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
                    worst = worst.max(CertState::of(c, now_s, warning, critical));
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
                    health: if worst == CertState::Ok && !verify_finding(data) {
                        Health::Ok
                    } else {
                        Health::Findings
                    },
                    summary,
                    error: None,
                    stale: false,
                    facts,
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
        format!(
            "certificates: paths [{}] (under {}), endpoints [{}]",
            paths.join(", "),
            self.inner.base.display(),
            eps.join(", ")
        )
    }

    async fn collect(&self, ctx: CollectContext) -> Result<Snapshot, MonitorError> {
        let sources = self.gather_with(ctx, false).await?;
        let (w, c) = self.thresholds();
        let mut snap = snapshot(&sources, ctx.now, w, c);
        snap.pending = self
            .inner
            .pending
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut b = SnapshotBuilder::new();
        for (target, at) in self
            .inner
            .read_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            crate::core::targets::emit_freshness(&mut b, "certificate_expiry", target, *at, false);
        }
        snap.families.extend(b.build().families);
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
        }
    }

    #[test]
    fn states_follow_thresholds() {
        let d = 86_400;
        let (w, c) = (30 * d, 7 * d);
        assert_eq!(
            CertState::of(&cert(0, 100 * d), 50 * d, w, c),
            CertState::Ok
        );
        assert_eq!(
            CertState::of(&cert(0, 100 * d), 80 * d, w, c),
            CertState::Warning
        );
        assert_eq!(
            CertState::of(&cert(0, 100 * d), 95 * d, w, c),
            CertState::Critical
        );
        assert_eq!(
            CertState::of(&cert(0, 100 * d), 101 * d, w, c),
            CertState::Expired
        );
        assert_eq!(
            CertState::of(&cert(10 * d, 100 * d), 5 * d, w, c),
            CertState::NotYetValid
        );
    }

    #[test]
    fn identical_sources_never_make_duplicate_series() {
        let src = SourceResult {
            kind: SourceKind::File,
            target: "a.pem".into(),
            server_name: None,
            outcome: Ok(SourceData {
                certs: vec![cert(0, 10), cert(0, 20)],
                format: "pem".into(),
                verified: None,
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
        // Set in this module: reading panicked, TLS client setup failed.
        labels.extend(["panic", "tls_setup"]);
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
            outcome: Ok(SourceData {
                certs,
                format: "pem".into(),
                verified: None,
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

//! The status page at `/` and its JSON twin at `/api/v1/status`.
//!
//! Server-rendered HTML: no script, no external asset, a meta refresh, and a
//! layout that reads on a phone. Everything shown comes from the snapshots
//! (plain values, never secrets) and is HTML-escaped.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::core::registry::{Outcome, Registry};
use crate::core::snapshot::{Health, Snapshot, TargetStatus};

/// Seconds between automatic reloads of the page.
pub const REFRESH_SECONDS: u32 = 30;

/// One monitor on the page.
#[derive(Debug, Serialize)]
pub struct MonitorStatus {
    pub name: &'static str,
    pub description: String,
    pub check_interval_seconds: f64,
    /// The last collection succeeded.
    pub success: bool,
    /// The values shown come from an earlier collection.
    pub stale: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_seconds: f64,
    pub targets: Vec<TargetStatus>,
}

/// One certificate (the leaf of a file or endpoint), by time left.
#[derive(Debug, Serialize)]
pub struct CertificateStatus {
    pub source: String,
    /// Path or endpoint.
    pub target: String,
    pub not_after_timestamp_seconds: f64,
    /// Negative once expired.
    pub days_left: f64,
    /// The configured `warning_days` in seconds (the exporter's threshold metric).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning_threshold_seconds: Option<f64>,
    /// The configured `critical_days` in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critical_threshold_seconds: Option<f64>,
}

/// One backup source, by age.
#[derive(Debug, Serialize)]
pub struct BackupStatus {
    pub source: String,
    pub last_success_timestamp_seconds: f64,
    pub age_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<f64>,
}

/// One health check.
#[derive(Debug, Serialize)]
pub struct HealthCheckStatus {
    pub check: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub success: bool,
    pub duration_seconds: f64,
}

/// Everything the page shows; `/api/v1/status` serves it as JSON.
#[derive(Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub generated_at: String,
    /// `ok`, `findings` or `error`: the worst target or collection.
    pub overall: Health,
    pub attention: Vec<Attention>,
    pub certificates: Vec<CertificateStatus>,
    pub backups: Vec<BackupStatus>,
    pub health_checks: Vec<HealthCheckStatus>,
    pub monitors: Vec<MonitorStatus>,
}

/// A target that is not OK, for the top of the page.
#[derive(Debug, Serialize)]
pub struct Attention {
    pub monitor: &'static str,
    pub target: String,
    pub health: Health,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn label<'a>(s: &'a crate::core::snapshot::Sample, k: &str) -> Option<&'a str> {
    s.labels
        .iter()
        .find(|(lk, _)| *lk == k)
        .map(|(_, v)| v.as_str())
}

/// How long the page waits for a monitor's first collection.
const PAGE_WAIT: Duration = Duration::from_secs(2);

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Build the status from the registry's values in memory (a page never waits
/// for a refresh; only a monitor with no values yet is waited for, briefly).
pub async fn collect(registry: &Registry) -> Status {
    let outcomes = registry
        .gather_with(crate::core::registry::Wait::Serve(PAGE_WAIT))
        .await;
    build(registry, &outcomes, registry.clock().now())
}

/// Build the status from outcomes (pure; tests use it directly).
pub fn build(registry: &Registry, outcomes: &[Arc<Outcome>], now: SystemTime) -> Status {
    let now_s = unix(now);
    let mut monitors = Vec::new();
    let mut attention = Vec::new();
    let mut certificates = Vec::new();
    let mut backups = Vec::new();
    let mut health_checks = Vec::new();
    let mut overall = Health::Ok;
    for (entry, o) in registry.entries().iter().zip(outcomes) {
        let m = entry.monitor();
        if !o.success {
            overall = overall.max(Health::Error);
        }
        for t in &o.snapshot.targets {
            overall = overall.max(t.health);
            if t.health != Health::Ok {
                attention.push(Attention {
                    monitor: o.monitor,
                    target: t.target.clone(),
                    health: t.health,
                    summary: t.summary.clone(),
                    error: t.error.clone(),
                });
            }
        }
        extract(
            &o.snapshot,
            now_s,
            &mut certificates,
            &mut backups,
            &mut health_checks,
        );
        monitors.push(MonitorStatus {
            name: o.monitor,
            description: m.describe(),
            check_interval_seconds: m.check_interval().as_secs_f64(),
            success: o.success,
            stale: o.stale,
            error: o.error.clone(),
            duration_seconds: o.duration.as_secs_f64(),
            targets: o.snapshot.targets.clone(),
        });
    }
    // Nothing monitored is not "ok": the page must not look healthy.
    if outcomes.iter().all(|o| o.snapshot.targets.is_empty()) {
        overall = overall.max(Health::Findings);
        attention.push(Attention {
            monitor: "homelab-monitor",
            target: "-".into(),
            health: Health::Findings,
            summary: "nothing is monitored: no monitor found a target; check the configured paths and that they are mounted".into(),
            error: None,
        });
    }
    attention.sort_by_key(|a| std::cmp::Reverse(a.health));
    certificates.sort_by(|a, b| a.days_left.total_cmp(&b.days_left));
    backups.sort_by(|a, b| b.age_seconds.total_cmp(&a.age_seconds));
    health_checks.sort_by(|a, b| a.success.cmp(&b.success).then(a.check.cmp(&b.check)));
    Status {
        version: crate::VERSION,
        generated_at: humantime::format_rfc3339_seconds(now).to_string(),
        overall,
        attention,
        certificates,
        backups,
        health_checks,
        monitors,
    }
}

fn extract(
    snap: &Snapshot,
    now: f64,
    certs: &mut Vec<CertificateStatus>,
    backups: &mut Vec<BackupStatus>,
    checks: &mut Vec<HealthCheckStatus>,
) {
    if let Some(f) = snap.family(crate::monitors::certificates::NOT_AFTER.name) {
        let warning = snap.value(crate::monitors::certificates::WARNING.name, &[]);
        let critical = snap.value(crate::monitors::certificates::CRITICAL.name, &[]);
        for s in f.samples.iter().filter(|s| label(s, "index") == Some("0")) {
            let target = label(s, "path")
                .or_else(|| label(s, "endpoint"))
                .unwrap_or_default()
                .to_string();
            certs.push(CertificateStatus {
                source: label(s, "source").unwrap_or_default().to_string(),
                target,
                not_after_timestamp_seconds: s.value,
                days_left: (s.value - now) / 86_400.0,
                warning_threshold_seconds: warning,
                critical_threshold_seconds: critical,
            });
        }
    }
    if let Some(f) = snap.family("backup_last_success_timestamp_seconds") {
        for s in &f.samples {
            let source = label(s, "source").unwrap_or_default().to_string();
            let max_age = snap.value("backup_max_age_seconds", &[("source", source.as_str())]);
            backups.push(BackupStatus {
                age_seconds: (now - s.value).max(0.0),
                last_success_timestamp_seconds: s.value,
                max_age_seconds: max_age,
                source,
            });
        }
    }
    if let Some(f) = snap.family(crate::monitors::health::SUCCESS.name) {
        for s in &f.samples {
            let check = label(s, "check").unwrap_or_default().to_string();
            let kind = label(s, "type").unwrap_or_default().to_string();
            let duration = snap
                .value(
                    crate::monitors::health::DURATION.name,
                    &[("check", check.as_str()), ("type", kind.as_str())],
                )
                .unwrap_or(0.0);
            checks.push(HealthCheckStatus {
                check,
                kind,
                success: s.value >= 1.0,
                duration_seconds: duration,
            });
        }
    }
}

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn badge(h: Health) -> &'static str {
    match h {
        Health::Ok => "<span class=\"b ok\">ok</span>",
        Health::Findings => "<span class=\"b warn\">findings</span>",
        Health::Unchecked => "<span class=\"b unk\">not checked</span>",
        Health::Error => "<span class=\"b err\">error</span>",
    }
}

/// A duration in seconds as `--status` says it ("26h", "4 days 23h", "12ms").
fn human(secs: f64) -> String {
    crate::cli::report::human_duration(
        Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::ZERO),
    )
}

/// Time left on a certificate, like `--status`: "in 4 days 23h", "expired 426 days ago".
fn expiry_phrase(left_secs: f64) -> String {
    if left_secs < 0.0 {
        format!("expired {} ago", human(-left_secs))
    } else {
        format!("in {}", human(left_secs))
    }
}

/// Badge class of a certificate: against the configured thresholds (the
/// exporter's defaults of 30 and 7 days when they are not exported).
fn certificate_class(c: &CertificateStatus) -> &'static str {
    let left = c.days_left * 86_400.0;
    let critical = c.critical_threshold_seconds.unwrap_or(7.0 * 86_400.0);
    let warning = c.warning_threshold_seconds.unwrap_or(30.0 * 86_400.0);
    if left < critical || left < 0.0 {
        "err"
    } else if left < warning {
        "warn"
    } else {
        "ok"
    }
}

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:0;padding:0 12px 24px;color:#1b1f23;background:#f6f8fa}\
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:8px 16px;padding:12px 0}\
h1{font-size:1.3em;margin:0}h2{font-size:1.1em;margin:20px 0 6px}\
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:4px 12px 10px;margin:10px 0;overflow-x:auto}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:5px 6px;border-bottom:1px solid #eaeef2;vertical-align:top;word-break:break-word}\
th{font-size:.85em;color:#57606a}\
.b{display:inline-block;white-space:nowrap;padding:1px 7px;border-radius:10px;font-size:.8em;font-weight:600;color:#fff}\
.ok{background:#1a7f37}.warn{background:#bf8700}.unk{background:#6e40c9}.err{background:#cf222e}\
.muted{color:#57606a;font-size:.9em}code{font-size:.9em;background:#eaeef2;padding:1px 4px;border-radius:4px;word-break:break-all}\
nav a{margin-right:12px}\
@media (max-width:600px){body{font-size:14px;padding:0 6px 16px}th.opt,td.opt{display:none}}";

/// Render the page. `telemetry_path` is the metrics link.
pub fn render_html(status: &Status, telemetry_path: &str) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let tp = esc(telemetry_path);
    h.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    h.push_str(&format!(
        "<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\n"
    ));
    h.push_str("<link rel=\"icon\" href=\"data:,\">\n");
    h.push_str("<title>homelab-monitor status</title>\n<style>");
    h.push_str(STYLE);
    h.push_str("</style></head>\n<body>\n<header>\n");
    h.push_str(&format!(
        "<h1>homelab-monitor</h1> {} <span class=\"muted\">v{} · {} · refreshes every {REFRESH_SECONDS}s</span>\n",
        badge(status.overall),
        esc(status.version),
        esc(&status.generated_at)
    ));
    h.push_str(&format!(
        "<nav><a href=\"{tp}\">{tp}</a><a href=\"/api/v1/status\">/api/v1/status</a><a href=\"/healthz\">/healthz</a><a href=\"/readyz\">/readyz</a></nav>\n</header>\n"
    ));

    // Needs attention
    h.push_str("<section id=\"attention\"><h2>Needs attention</h2>\n");
    if status.attention.is_empty() {
        h.push_str("<p>Nothing: every target is OK.</p>\n");
    } else {
        h.push_str("<table><tr><th>state</th><th>target</th><th>what</th><th class=\"opt\">monitor</th></tr>\n");
        for a in &status.attention {
            let what = match &a.error {
                Some(e) => format!(
                    "{}<br><span class=\"muted\">{}</span>",
                    esc(&a.summary),
                    esc(e)
                ),
                None => esc(&a.summary),
            };
            h.push_str(&format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{what}</td><td class=\"opt\">{}</td></tr>\n",
                badge(a.health),
                esc(&a.target),
                esc(a.monitor)
            ));
        }
        h.push_str("</table>\n");
    }
    h.push_str("</section>\n");

    if !status.certificates.is_empty() {
        h.push_str("<section id=\"certificates\"><h2>Certificates by time left</h2>\n<table><tr><th>expires</th><th>certificate</th><th class=\"opt\">not after</th></tr>\n");
        for c in &status.certificates {
            let cls = certificate_class(c);
            let expires = humantime::format_rfc3339_seconds(
                SystemTime::UNIX_EPOCH
                    + Duration::from_secs(c.not_after_timestamp_seconds.max(0.0) as u64),
            );
            h.push_str(&format!(
                "<tr><td><span class=\"b {cls}\">{}</span></td><td><code>{}</code> <span class=\"muted\">{}</span></td><td class=\"opt\">{}</td></tr>\n",
                expiry_phrase(c.days_left * 86_400.0),
                esc(&c.target),
                esc(&c.source),
                expires
            ));
        }
        h.push_str("</table></section>\n");
    }

    if !status.backups.is_empty() {
        h.push_str("<section id=\"backups\"><h2>Backups by age</h2>\n<table><tr><th>age</th><th>source</th><th class=\"opt\">max age</th></tr>\n");
        for b in &status.backups {
            let late = b
                .max_age_seconds
                .map(|m| b.age_seconds > m)
                .unwrap_or(false);
            h.push_str(&format!(
                "<tr><td><span class=\"b {}\">{}</span></td><td><code>{}</code></td><td class=\"opt\">{}</td></tr>\n",
                if late { "err" } else { "ok" },
                human(b.age_seconds),
                esc(&b.source),
                b.max_age_seconds.map(human).unwrap_or_else(|| "-".into())
            ));
        }
        h.push_str("</table></section>\n");
    }

    if !status.health_checks.is_empty() {
        h.push_str("<section id=\"health-checks\"><h2>Health checks</h2>\n<table><tr><th>state</th><th>check</th><th class=\"opt\">type</th><th class=\"opt\">took</th></tr>\n");
        for c in &status.health_checks {
            h.push_str(&format!(
                "<tr><td>{}</td><td><code>{}</code></td><td class=\"opt\">{}</td><td class=\"opt\">{}</td></tr>\n",
                if c.success { "<span class=\"b ok\">ok</span>" } else { "<span class=\"b err\">failing</span>" },
                esc(&c.check),
                esc(&c.kind),
                human(c.duration_seconds)
            ));
        }
        h.push_str("</table></section>\n");
    }

    h.push_str("<section id=\"monitors\"><h2>Exporter health</h2>\n<table><tr><th>monitor</th><th>last collection</th><th class=\"opt\">targets</th></tr>\n");
    for m in &status.monitors {
        let state = if !m.success {
            "<span class=\"b err\">failed</span>"
        } else if m.stale {
            "<span class=\"b warn\">stale</span>"
        } else {
            "<span class=\"b ok\">ok</span>"
        };
        let err = m
            .error
            .as_deref()
            .map(|e| format!("<br><span class=\"muted\">{}</span>", esc(e)))
            .unwrap_or_default();
        h.push_str(&format!(
            "<tr><td><b>{}</b><br><span class=\"muted\">{}</span></td><td>{state} {}{err}</td><td class=\"opt\">{}</td></tr>\n",
            esc(m.name),
            esc(&m.description),
            human(m.duration_seconds),
            m.targets.len()
        ));
    }
    if status.monitors.is_empty() {
        h.push_str("<tr><td colspan=\"3\">No monitor is enabled.</td></tr>\n");
    }
    h.push_str("</table></section>\n");

    h.push_str("<section id=\"commands\"><h2>One-shot commands</h2>\n<p><code>homelab-monitor --status --config monitoring-config.yaml</code><br><code>homelab-monitor --state-file terraform/terraform.tfstate --config monitoring-config.yaml</code><br><code>homelab-monitor render --config monitoring-config.yaml --out stack/</code></p></section>\n");
    h.push_str("</body></html>\n");
    h
}

/// The JSON body of `/api/v1/status`.
pub fn render_json(status: &Status) -> String {
    serde_json::to_string_pretty(status).unwrap_or_else(|_| "{}".into())
}

/// `/`: gather (from cache when fresh) and render the page.
pub async fn html(registry: &Registry, telemetry_path: &str) -> String {
    render_html(&collect(registry).await, telemetry_path)
}

/// `/api/v1/status`: gather and render the JSON.
pub async fn json(registry: &Registry) -> String {
    render_json(&collect(registry).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_monitored_is_not_ok() {
        let reg = Registry::new(Vec::new(), Arc::new(crate::core::clock::SystemClock));
        let s = build(&reg, &[], SystemTime::UNIX_EPOCH);
        assert_eq!(s.overall, Health::Findings);
        assert!(s.attention[0].summary.contains("nothing is monitored"));
        let html = render_html(&s, "/metrics");
        assert!(!html.contains("every target is OK"), "{html}");
        assert!(html.contains("nothing is monitored"), "{html}");
    }

    #[test]
    fn unchecked_has_its_own_badge() {
        assert!(badge(Health::Unchecked).contains("not checked"));
        assert!(Health::Unchecked > Health::Findings && Health::Unchecked < Health::Error);
    }

    fn status(certificates: Vec<CertificateStatus>, backups: Vec<BackupStatus>) -> Status {
        Status {
            version: "0",
            generated_at: "2026-01-01T00:00:00Z".into(),
            overall: Health::Ok,
            attention: Vec::new(),
            certificates,
            backups,
            health_checks: vec![HealthCheckStatus {
                check: "nas".into(),
                kind: "tcp".into(),
                success: true,
                duration_seconds: 0.012,
            }],
            monitors: Vec::new(),
        }
    }

    fn cert(target: &str, left_secs: f64, thresholds: Option<(f64, f64)>) -> CertificateStatus {
        CertificateStatus {
            source: "file".into(),
            target: target.into(),
            not_after_timestamp_seconds: 1e9 + left_secs,
            days_left: left_secs / 86_400.0,
            warning_threshold_seconds: thresholds.map(|t| t.0),
            critical_threshold_seconds: thresholds.map(|t| t.1),
        }
    }

    /// The row of the page that names `target`.
    fn row<'a>(html: &'a str, target: &str) -> &'a str {
        let needle = format!("<code>{target}</code>");
        html.lines()
            .find(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("no row for {target} in {html}"))
    }

    #[test]
    fn certificate_time_left_reads_like_status() {
        let day = 86_400.0;
        let html = render_html(
            &status(
                vec![
                    cert("old.pem", -(426.0 * day) - 5.0, None),
                    cert("soon.pem", 4.99 * day, None),
                    cert("today.pem", 26.0 * 3600.0, None),
                ],
                Vec::new(),
            ),
            "/metrics",
        );
        assert!(
            row(&html, "old.pem").contains(">expired 426 days ago<"),
            "{html}"
        );
        assert!(row(&html, "soon.pem").contains(">in 4 days 23h<"), "{html}");
        assert!(row(&html, "today.pem").contains(">in 26h<"), "{html}");
        assert!(!html.contains("-426") && !html.contains("-427"), "{html}");
    }

    #[test]
    fn certificate_colours_follow_the_configured_thresholds() {
        let day = 86_400.0;
        // warning_days 10, critical_days 3 (as exported by the monitor).
        let t = Some((10.0 * day, 3.0 * day));
        let html = render_html(
            &status(
                vec![
                    cert("twenty.pem", 20.0 * day, t),
                    cert("five.pem", 5.0 * day, t),
                    cert("two.pem", 2.0 * day, t),
                    cert("gone.pem", -day, t),
                    cert("default.pem", 20.0 * day, None),
                ],
                Vec::new(),
            ),
            "/metrics",
        );
        assert!(row(&html, "twenty.pem").contains("b ok"), "{html}");
        assert!(row(&html, "five.pem").contains("b warn"), "{html}");
        assert!(row(&html, "two.pem").contains("b err"), "{html}");
        assert!(row(&html, "gone.pem").contains("b err"), "{html}");
        // Without exported thresholds: the defaults (30 / 7 days).
        assert!(row(&html, "default.pem").contains("b warn"), "{html}");
    }

    #[test]
    fn thresholds_come_from_the_certificate_snapshot() {
        use crate::monitors::certificates::{CRITICAL, NOT_AFTER, WARNING};
        let mut b = crate::core::snapshot::SnapshotBuilder::new();
        b.gauge(&WARNING, &[], 10.0 * 86_400.0);
        b.gauge(&CRITICAL, &[], 3.0 * 86_400.0);
        b.gauge(
            &NOT_AFTER,
            &[("source", "file"), ("path", "a.pem"), ("index", "0")],
            20.0 * 86_400.0,
        );
        let snap = b.build();
        let (mut certs, mut backups, mut checks) = (Vec::new(), Vec::new(), Vec::new());
        extract(&snap, 0.0, &mut certs, &mut backups, &mut checks);
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].warning_threshold_seconds, Some(864_000.0));
        assert_eq!(certs[0].critical_threshold_seconds, Some(259_200.0));
        assert_eq!(certs[0].days_left, 20.0);
    }

    #[test]
    fn ages_and_durations_read_like_status() {
        let backups = vec![
            BackupStatus {
                source: "daily".into(),
                last_success_timestamp_seconds: 0.0,
                age_seconds: 26.0 * 3600.0,
                max_age_seconds: Some(26.0 * 3600.0),
            },
            BackupStatus {
                source: "weekly".into(),
                last_success_timestamp_seconds: 0.0,
                age_seconds: 4.99 * 86_400.0,
                max_age_seconds: Some(8.0 * 86_400.0),
            },
        ];
        let html = render_html(&status(Vec::new(), backups), "/metrics");
        let daily = row(&html, "daily");
        assert!(
            daily.contains(">26h<") && !daily.contains("1d 2h"),
            "{daily}"
        );
        let weekly = row(&html, "weekly");
        assert!(
            weekly.contains(">4 days 23h<") && weekly.contains(">8 days<"),
            "{weekly}"
        );
        assert!(row(&html, "nas").contains(">12ms<"), "{html}");
    }

    #[test]
    fn escapes_everything() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}

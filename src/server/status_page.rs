//! The status page at `/` and its JSON twin at `/api/v1/status`.
//!
//! Server-rendered HTML: no script, no external asset, a meta refresh, and a
//! layout that reads on a phone. Everything shown comes from the snapshots
//! (plain values, never secrets) and is HTML-escaped.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::cli::report;
use crate::core::registry::{Outcome, Registry};
use crate::core::snapshot::{rfc3339, Fact, FactKind, Health, Snapshot, TargetStatus, Urgency};

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

/// Something that expires (an [`Fact::Expiry`]), by time left.
#[derive(Debug, Serialize)]
pub struct ExpiryRow {
    pub monitor: String,
    pub target: String,
    pub item: String,
    pub not_after_timestamp_seconds: i64,
    /// Negative once expired.
    pub seconds_left: i64,
    pub days_left: f64,
    /// The monitor's thresholds (for certificates: `warning_days`, `critical_days`) in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning_threshold_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critical_threshold_seconds: Option<i64>,
    pub state: Urgency,
}

/// Something expected to happen again (a [`Fact::Freshness`]), oldest first.
#[derive(Debug, Serialize)]
pub struct FreshnessRow {
    pub monitor: String,
    pub target: String,
    pub item: String,
    /// `null`: never succeeded.
    pub last_success_timestamp_seconds: Option<i64>,
    pub age_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i64>,
    pub late: bool,
}

/// A probe's outcome (a [`Fact::Check`]), failing first.
#[derive(Debug, Serialize)]
pub struct CheckRow {
    pub monitor: String,
    pub target: String,
    pub item: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub success: bool,
    pub duration_seconds: f64,
}

/// One thing wrong (a [`Fact::Finding`]).
#[derive(Debug, Serialize)]
pub struct FindingRow {
    pub monitor: String,
    pub target: String,
    pub kind: String,
    pub subject: String,
    pub detail: String,
    /// False: shown, not a finding by itself (a policy `warn` rule).
    pub counted: bool,
}

/// One panel per kind of fact, filled from every monitor's facts: a new
/// monitor's facts show up here without any change to this file.
#[derive(Debug, Default, Serialize)]
pub struct Panels {
    pub expiry: Vec<ExpiryRow>,
    pub freshness: Vec<FreshnessRow>,
    pub checks: Vec<CheckRow>,
    pub findings: Vec<FindingRow>,
}

/// Everything the page shows; `/api/v1/status` serves it as JSON.
#[derive(Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub generated_at: String,
    /// `ok`, `findings` or `error`: the worst target or collection.
    pub overall: Health,
    pub attention: Vec<Attention>,
    pub panels: Panels,
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

/// How long the page waits for a monitor's first collection.
const PAGE_WAIT: Duration = Duration::from_secs(2);

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
    // The page reads copies of the statuses with their facts built: a
    // monitor may build them only when asked (the Terraform monitor does),
    // and the served snapshot must not keep them built after this page.
    let views: Vec<Snapshot> = outcomes
        .iter()
        .map(|o| Snapshot {
            targets: o
                .snapshot
                .targets
                .iter()
                .map(TargetStatus::detached)
                .collect(),
            pending: o.snapshot.pending,
            ..Snapshot::default()
        })
        .collect();
    let mut monitors = Vec::new();
    let mut attention = Vec::new();
    let mut overall = Health::Ok;
    for ((entry, o), view) in registry.entries().iter().zip(outcomes).zip(&views) {
        let m = entry.monitor();
        if !o.success {
            overall = overall.max(Health::Error);
        }
        for t in &view.targets {
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
        monitors.push(MonitorStatus {
            name: o.monitor,
            description: m.describe(),
            check_interval_seconds: m.check_interval().as_secs_f64(),
            success: o.success,
            stale: o.stale,
            error: o.error.clone(),
            duration_seconds: o.duration.as_secs_f64(),
            targets: Vec::new(),
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
    let entries: Vec<(&'static str, &Snapshot, bool)> = outcomes
        .iter()
        .zip(&views)
        .map(|(o, view)| (o.monitor, view, o.stale))
        .collect();
    let panels = panels(&entries, now);
    drop(entries);
    for (m, view) in monitors.iter_mut().zip(views) {
        m.targets = view.targets;
    }
    Status {
        version: crate::VERSION,
        generated_at: humantime::format_rfc3339_seconds(now).to_string(),
        overall,
        attention,
        panels,
        monitors,
    }
}

/// The panels of every monitor's facts, each in its order: expiry by time
/// left, freshness oldest first, checks failing first, findings as found.
pub fn panels(entries: &[(&'static str, &Snapshot, bool)], now: SystemTime) -> Panels {
    let at = report::Now::of(now);
    let now = at.floor;
    let mut p = Panels::default();
    for (monitor, t, f) in report::expiries(entries) {
        if let Fact::Expiry {
            item,
            not_after,
            warning_seconds,
            critical_seconds,
        } = f
        {
            p.expiry.push(ExpiryRow {
                monitor: monitor.to_string(),
                target: t.target.clone(),
                item: item.clone(),
                not_after_timestamp_seconds: *not_after,
                seconds_left: not_after - at.ceil,
                days_left: (not_after - at.ceil) as f64 / 86_400.0,
                warning_threshold_seconds: *warning_seconds,
                critical_threshold_seconds: *critical_seconds,
                state: f.urgency(at.ceil),
            });
        }
    }
    for (monitor, t, f) in report::freshness(entries, now) {
        if let Fact::Freshness {
            item,
            last_success,
            max_age_seconds,
        } = f
        {
            p.freshness.push(FreshnessRow {
                monitor: monitor.to_string(),
                target: t.target.clone(),
                item: item.clone(),
                last_success_timestamp_seconds: *last_success,
                age_seconds: f.age(now),
                max_age_seconds: *max_age_seconds,
                late: f.is_late(now),
            });
        }
    }
    for (monitor, t, f) in report::checks(entries) {
        if let Fact::Check {
            item,
            kind,
            success,
            duration_seconds,
        } = f
        {
            p.checks.push(CheckRow {
                monitor: monitor.to_string(),
                target: t.target.clone(),
                item: item.clone(),
                kind: kind.clone(),
                success: *success,
                duration_seconds: *duration_seconds,
            });
        }
    }
    for (monitor, t, f) in report::facts_of(entries, FactKind::Finding) {
        if let Fact::Finding {
            kind,
            subject,
            detail,
            counted,
        } = f
        {
            p.findings.push(FindingRow {
                monitor: monitor.to_string(),
                target: t.target.clone(),
                kind: kind.clone(),
                subject: subject.clone(),
                detail: detail.clone(),
                counted: *counted,
            });
        }
    }
    p
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

/// Badge class of an expiry: red once critical or expired, amber under the
/// warning threshold (the monitor's, else 30 and 7 days).
fn expiry_class(u: Urgency) -> &'static str {
    match u {
        Urgency::Expired | Urgency::Critical => "err",
        Urgency::Warning => "warn",
        Urgency::Ok => "ok",
    }
}

/// At most this many findings are listed on the page (the JSON has all).
const PAGE_FINDINGS: usize = 200;

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

    let p = &status.panels;
    if !p.expiry.is_empty() {
        h.push_str("<section id=\"expiry\"><h2>Expiring, by time left</h2>\n<table><tr><th>expires</th><th>item</th><th class=\"opt\">not after</th></tr>\n");
        for e in &p.expiry {
            h.push_str(&format!(
                "<tr><td><span class=\"b {}\">{}</span></td><td><code>{}</code> <span class=\"muted\">{}</span></td><td class=\"opt\">{}</td></tr>\n",
                expiry_class(e.state),
                report::expiry_phrase(e.seconds_left),
                esc(&e.item),
                esc(&e.monitor),
                rfc3339(e.not_after_timestamp_seconds)
            ));
        }
        h.push_str("</table></section>\n");
    }

    if !p.freshness.is_empty() {
        h.push_str("<section id=\"freshness\"><h2>Freshness, oldest first</h2>\n<table><tr><th>age</th><th>item</th><th class=\"opt\">max age</th></tr>\n");
        for f in &p.freshness {
            h.push_str(&format!(
                "<tr><td><span class=\"b {}\">{}</span></td><td><code>{}</code> <span class=\"muted\">{}</span></td><td class=\"opt\">{}</td></tr>\n",
                if f.late { "err" } else { "ok" },
                f.age_seconds
                    .map(|a| human(a as f64))
                    .unwrap_or_else(|| "never".into()),
                esc(&f.item),
                esc(&f.monitor),
                f.max_age_seconds
                    .map(|m| human(m as f64))
                    .unwrap_or_else(|| "-".into())
            ));
        }
        h.push_str("</table></section>\n");
    }

    if !p.checks.is_empty() {
        h.push_str("<section id=\"checks\"><h2>Checks, failing first</h2>\n<table><tr><th>state</th><th>check</th><th class=\"opt\">type</th><th class=\"opt\">took</th></tr>\n");
        for c in &p.checks {
            h.push_str(&format!(
                "<tr><td>{}</td><td><code>{}</code> <span class=\"muted\">{}</span></td><td class=\"opt\">{}</td><td class=\"opt\">{}</td></tr>\n",
                if c.success { "<span class=\"b ok\">ok</span>" } else { "<span class=\"b err\">failing</span>" },
                esc(&c.item),
                esc(&c.monitor),
                esc(&c.kind),
                human(c.duration_seconds)
            ));
        }
        h.push_str("</table></section>\n");
    }

    if !p.findings.is_empty() {
        h.push_str("<section id=\"findings\"><h2>Findings</h2>\n<table><tr><th>kind</th><th>subject</th><th>detail</th><th class=\"opt\">target</th></tr>\n");
        for f in p.findings.iter().take(PAGE_FINDINGS) {
            h.push_str(&format!(
                "<tr><td><span class=\"b {}\">{}</span></td><td><code>{}</code></td><td>{}</td><td class=\"opt\">{} <span class=\"muted\">{}</span></td></tr>\n",
                if f.counted { "warn" } else { "unk" },
                esc(&f.kind),
                esc(&f.subject),
                esc(&f.detail),
                esc(&f.target),
                esc(&f.monitor)
            ));
        }
        if p.findings.len() > PAGE_FINDINGS {
            h.push_str(&format!(
                "<tr><td colspan=\"4\">{} more in <a href=\"/api/v1/status\">/api/v1/status</a></td></tr>\n",
                p.findings.len() - PAGE_FINDINGS
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

    const DAY: i64 = 86_400;
    /// "now" of these tests.
    const NOW: i64 = 1_000_000_000;

    fn at(t: i64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(t as u64)
    }

    /// A status page of one monitor whose one target holds `facts`.
    fn page(monitor: &'static str, facts: Vec<Fact>) -> String {
        let snap = Snapshot {
            targets: vec![TargetStatus::new("t", Health::Ok, "").with_facts(facts)],
            ..Snapshot::default()
        };
        let status = Status {
            version: "0",
            generated_at: "2026-01-01T00:00:00Z".into(),
            overall: Health::Ok,
            attention: Vec::new(),
            panels: panels(&[(monitor, &snap, false)], at(NOW)),
            monitors: Vec::new(),
        };
        render_html(&status, "/metrics")
    }

    fn expiry(item: &str, left: i64, thresholds: Option<(i64, i64)>) -> Fact {
        Fact::Expiry {
            item: item.into(),
            not_after: NOW + left,
            warning_seconds: thresholds.map(|t| t.0),
            critical_seconds: thresholds.map(|t| t.1),
        }
    }

    fn fresh(item: &str, age: i64, max: i64) -> Fact {
        Fact::Freshness {
            item: item.into(),
            last_success: Some(NOW - age),
            max_age_seconds: Some(max),
        }
    }

    /// The row of the page that names `item`.
    fn row<'a>(html: &'a str, item: &str) -> &'a str {
        let needle = format!("<code>{item}</code>");
        html.lines()
            .find(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("no row for {item} in {html}"))
    }

    #[test]
    fn expiry_time_left_reads_like_status_and_sorts_soonest_first() {
        let html = page(
            "certificate_expiry",
            vec![
                expiry("today.pem", 26 * 3600, None),
                expiry("old.pem", -(426 * DAY) - 5, None),
                expiry("soon.pem", 431_136, None),
            ],
        );
        assert!(
            row(&html, "old.pem").contains(">expired 426 days ago<"),
            "{html}"
        );
        assert!(row(&html, "soon.pem").contains(">in 4 days 23h<"), "{html}");
        assert!(row(&html, "today.pem").contains(">in 26h<"), "{html}");
        assert!(!html.contains("-426") && !html.contains("-427"), "{html}");
        // Each row names its monitor.
        assert!(
            row(&html, "old.pem").contains("certificate_expiry"),
            "{html}"
        );
        let pos = |n: &str| html.find(&format!("<code>{n}</code>")).unwrap();
        assert!(pos("old.pem") < pos("today.pem") && pos("today.pem") < pos("soon.pem"));
    }

    #[test]
    fn expiry_colours_follow_the_monitors_thresholds() {
        // warning_days 10, critical_days 3 (as the certificate monitor gives them).
        let t = Some((10 * DAY, 3 * DAY));
        let html = page(
            "certificate_expiry",
            vec![
                expiry("twenty.pem", 20 * DAY, t),
                expiry("five.pem", 5 * DAY, t),
                expiry("two.pem", 2 * DAY, t),
                expiry("gone.pem", -DAY, t),
                expiry("default.pem", 20 * DAY, None),
            ],
        );
        assert!(row(&html, "twenty.pem").contains("b ok"), "{html}");
        assert!(row(&html, "five.pem").contains("b warn"), "{html}");
        assert!(row(&html, "two.pem").contains("b err"), "{html}");
        assert!(row(&html, "gone.pem").contains("b err"), "{html}");
        // Without thresholds: the defaults (30 / 7 days).
        assert!(row(&html, "default.pem").contains("b warn"), "{html}");
    }

    #[test]
    fn ages_and_durations_read_like_status() {
        let html = page(
            "backup_validation",
            vec![
                fresh("daily", 26 * 3600, 26 * 3600),
                fresh("weekly", 431_136, 8 * DAY),
                fresh("late", 2 * DAY, DAY),
                Fact::Check {
                    item: "nas".into(),
                    kind: "tcp".into(),
                    success: true,
                    duration_seconds: 0.012,
                },
            ],
        );
        let daily = row(&html, "daily");
        assert!(
            daily.contains(">26h<") && !daily.contains("1d 2h") && daily.contains("b ok"),
            "{daily}"
        );
        let weekly = row(&html, "weekly");
        assert!(
            weekly.contains(">4 days 23h<") && weekly.contains(">8 days<"),
            "{weekly}"
        );
        assert!(row(&html, "late").contains("b err"), "{html}");
        assert!(row(&html, "nas").contains(">12ms<"), "{html}");
        // Oldest first.
        assert!(html.find("<code>late</code>") < html.find("<code>daily</code>"));
    }

    #[test]
    fn panels_appear_only_for_kinds_present_and_checks_fail_first() {
        let check = |item: &str, success: bool| Fact::Check {
            item: item.into(),
            kind: "http".into(),
            success,
            duration_seconds: 0.0,
        };
        let html = page(
            "health_checks",
            vec![check("a-ok", true), check("z-bad", false)],
        );
        assert!(html.contains("id=\"checks\""), "{html}");
        assert!(!html.contains("id=\"expiry\"") && !html.contains("id=\"freshness\""));
        assert!(!html.contains("id=\"findings\""), "{html}");
        assert!(html.find("<code>z-bad</code>") < html.find("<code>a-ok</code>"));
        assert!(row(&html, "z-bad").contains("failing"), "{html}");
    }

    #[test]
    fn findings_are_escaped_and_name_their_monitor_and_target() {
        let html = page(
            "some_new_monitor",
            vec![Fact::Finding {
                kind: "drift".into(),
                subject: "<b>x</b>".into(),
                detail: "a & b".into(),
                counted: true,
            }],
        );
        let r = row(&html, "&lt;b&gt;x&lt;/b&gt;");
        assert!(
            r.contains("a &amp; b") && r.contains("some_new_monitor"),
            "{r}"
        );
        assert!(!html.contains("<b>x</b>"), "{html}");
    }

    #[test]
    fn escapes_everything() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}

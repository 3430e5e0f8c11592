//! Human and machine reports for the one-shot modes (`--state-file`, `--status`).

use serde::Serialize;

use std::time::SystemTime;

use crate::core::snapshot::{rfc3339, Fact, FactKind, Health, Snapshot, TargetStatus};

/// A titled table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Section {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Shown when there are no rows.
    #[serde(skip)]
    pub empty: String,
}

impl Section {
    pub fn new(title: &str, header: &[&str]) -> Self {
        Section {
            title: title.into(),
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            empty: "none".into(),
        }
    }

    pub fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }
}

/// What a one-shot run prints, and how it exits.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub sections: Vec<Section>,
    /// Findings: drift, unapproved changes, tainted objects, failed checks...
    pub findings: usize,
    /// Targets that could not be read.
    pub errors: usize,
    /// Targets read whose contents could not be checked (encrypted states).
    pub unchecked: usize,
    /// The structured form for `--format json`.
    pub json: serde_json::Value,
}

/// Output format of the one-shot modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
}

impl Report {
    /// Exit code: 1 when something could not be read or checked, 2 for
    /// findings, 0 when clean.
    pub fn exit_code(&self) -> i32 {
        if self.errors > 0 || self.unchecked > 0 {
            1
        } else if self.findings > 0 {
            2
        } else {
            0
        }
    }

    pub fn render(&self, format: ReportFormat) -> String {
        match format {
            ReportFormat::Json => {
                let mut s =
                    serde_json::to_string_pretty(&self.json).unwrap_or_else(|_| "{}".into());
                s.push('\n');
                s
            }
            ReportFormat::Table => {
                let mut out = String::new();
                for sec in &self.sections {
                    out.push_str(&render_table(sec));
                    out.push('\n');
                }
                out.push_str(&format!(
                    "Result: {} finding(s), {} error(s)",
                    self.findings, self.errors
                ));
                if self.unchecked > 0 {
                    out.push_str(&format!(", {} not checked", self.unchecked));
                }
                out.push('\n');
                out
            }
        }
    }
}

/// One monitor's values for a report: its name, its snapshot, and whether
/// the values come from an earlier collection.
pub type Entry<'a> = (&'a str, &'a Snapshot, bool);

/// How much a one-shot report shows of each target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `--status`: one line per target, then one table per kind of fact.
    Overview,
    /// `--state-file`: every target in full (its details, counts, findings).
    Detailed,
}

/// Count findings, errors and unchecked targets into `report`.
fn tally(report: &mut Report, t: &TargetStatus, now: i64) {
    report.findings += t.finding_count(now);
    let problem = t.facts.iter().any(|f| matches!(f, Fact::Problem { .. }));
    match t.health {
        Health::Error => report.errors += 1,
        Health::Unchecked if !problem => report.unchecked += 1,
        _ if problem => report.errors += 1,
        _ => {}
    }
}

/// The "Errors" rows of a target: its problems, else its error.
fn error_rows(sec: &mut Section, monitor: &str, t: &TargetStatus) {
    let mut any = false;
    for f in &t.facts {
        if let Fact::Problem { component, message } = f {
            sec.row([monitor, &t.target, component, message]);
            any = true;
        }
    }
    if let (false, Some(e)) = (any, &t.error) {
        sec.row([monitor, &t.target, "-", e]);
    }
}

/// The JSON of one target: its status, its facts, and its details by field.
fn target_json(monitor: &str, t: &TargetStatus, stale: bool, now: i64) -> serde_json::Value {
    let details: serde_json::Map<String, serde_json::Value> = t
        .facts
        .iter()
        .filter_map(|f| match f {
            Fact::Detail { field, value } => Some((
                field.clone(),
                serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
            )),
            _ => None,
        })
        .collect();
    serde_json::json!({
        "monitor": monitor,
        "target": t.target,
        "health": t.health,
        "summary": t.summary,
        "error": t.error,
        "stale": t.stale || stale,
        "details": details,
        "facts": t.facts.iter().filter(|f| f.kind() != FactKind::Detail).collect::<Vec<_>>(),
        "finding_count": t.finding_count(now),
    })
}

/// Time left phrase: "in 4 days 23h", "expired 426 days ago".
pub fn expiry_phrase(left_secs: i64) -> String {
    let d = std::time::Duration::from_secs(left_secs.unsigned_abs());
    if left_secs < 0 {
        format!("expired {} ago", human_duration(d))
    } else {
        format!("in {}", human_duration(d))
    }
}

fn human_secs(s: i64) -> String {
    human_duration(std::time::Duration::from_secs(s.unsigned_abs()))
}

/// Every fact of one kind across `entries`, with its monitor and target.
pub fn facts_of<'a>(
    entries: &[Entry<'a>],
    kind: FactKind,
) -> Vec<(&'a str, &'a TargetStatus, &'a Fact)> {
    let mut out = Vec::new();
    for (monitor, snap, _) in entries {
        for t in &snap.targets {
            for f in t.facts.iter().filter(|f| f.kind() == kind) {
                out.push((*monitor, t, f));
            }
        }
    }
    out
}

/// Expiry facts, earliest first.
pub fn expiries<'a>(entries: &[Entry<'a>]) -> Vec<(&'a str, &'a TargetStatus, &'a Fact)> {
    let mut v = facts_of(entries, FactKind::Expiry);
    let at = |f: &Fact| match f {
        Fact::Expiry { not_after, .. } => *not_after,
        _ => 0,
    };
    v.sort_by_key(|(_, _, f)| at(f));
    v
}

/// Freshness facts, oldest (or never) first.
pub fn freshness<'a>(
    entries: &[Entry<'a>],
    now: i64,
) -> Vec<(&'a str, &'a TargetStatus, &'a Fact)> {
    let mut v = facts_of(entries, FactKind::Freshness);
    v.sort_by_key(|(_, _, f)| std::cmp::Reverse(f.age(now).unwrap_or(i64::MAX)));
    v
}

/// Check facts, failing first, then by item.
pub fn checks<'a>(entries: &[Entry<'a>]) -> Vec<(&'a str, &'a TargetStatus, &'a Fact)> {
    let mut v = facts_of(entries, FactKind::Check);
    let key = |f: &Fact| match f {
        Fact::Check { item, success, .. } => (*success, item.clone()),
        _ => (true, String::new()),
    };
    v.sort_by_key(|(_, _, f)| key(f));
    v
}

/// `now` in whole seconds, rounded down (ages) and up (time left): neither
/// an age nor a countdown is ever overstated.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub floor: i64,
    pub ceil: i64,
}

impl Now {
    pub fn of(t: SystemTime) -> Self {
        let s = crate::core::clock::unix_seconds(t);
        Now {
            floor: s.floor() as i64,
            ceil: s.ceil() as i64,
        }
    }
}

fn fact_sections(entries: &[Entry<'_>], at: Now) -> Vec<Section> {
    let now = at.floor;
    let mut out = Vec::new();
    let exp = expiries(entries);
    if !exp.is_empty() {
        let mut sec = Section::new(
            "Expiry (earliest first)",
            &["MONITOR", "ITEM", "EXPIRES", "NOT AFTER", "STATE"],
        );
        for (m, _, f) in exp {
            if let Fact::Expiry {
                item, not_after, ..
            } = f
            {
                sec.row([
                    m.to_string(),
                    item.clone(),
                    expiry_phrase(not_after - at.ceil),
                    rfc3339(*not_after),
                    f.urgency(at.ceil).as_str().to_string(),
                ]);
            }
        }
        out.push(sec);
    }
    let fresh = freshness(entries, now);
    if !fresh.is_empty() {
        let mut sec = Section::new(
            "Freshness (oldest first)",
            &["MONITOR", "ITEM", "AGE", "LAST SUCCESS", "MAX AGE", "STATE"],
        );
        for (m, _, f) in fresh {
            if let Fact::Freshness {
                item,
                last_success,
                max_age_seconds,
            } = f
            {
                sec.row([
                    m.to_string(),
                    item.clone(),
                    f.age(now).map(human_secs).unwrap_or_else(|| "never".into()),
                    last_success.map(rfc3339).unwrap_or_else(|| "-".into()),
                    max_age_seconds
                        .map(human_secs)
                        .unwrap_or_else(|| "-".into()),
                    if f.is_late(now) { "late" } else { "ok" }.to_string(),
                ]);
            }
        }
        out.push(sec);
    }
    let ch = checks(entries);
    if !ch.is_empty() {
        let mut sec = Section::new(
            "Checks (failing first)",
            &["MONITOR", "ITEM", "TYPE", "STATE", "TOOK"],
        );
        for (m, _, f) in ch {
            if let Fact::Check {
                item,
                kind,
                success,
                duration_seconds,
            } = f
            {
                sec.row([
                    m.to_string(),
                    item.clone(),
                    kind.clone(),
                    if *success { "ok" } else { "failing" }.to_string(),
                    human_duration(
                        std::time::Duration::try_from_secs_f64(duration_seconds.max(0.0))
                            .unwrap_or_default(),
                    ),
                ]);
            }
        }
        out.push(sec);
    }
    let found = facts_of(entries, FactKind::Finding);
    if !found.is_empty() {
        let mut sec = Section::new(
            "Findings",
            &["MONITOR", "TARGET", "KIND", "SUBJECT", "DETAIL"],
        );
        for (m, t, f) in found {
            if let Fact::Finding {
                kind,
                subject,
                detail,
                ..
            } = f
            {
                sec.row([m, &t.target, kind, subject, detail]);
            }
        }
        out.push(sec);
    }
    out
}

/// The sections of one target in full (`--state-file`).
fn target_sections(monitor: &str, t: &TargetStatus, stale: bool, at: Now) -> Vec<Section> {
    let now = at.floor;
    let mut summary = Section::new(&format!("{monitor} {}", t.target), &["FIELD", "VALUE"]);
    let mut health = t.health.as_str().to_string();
    if t.stale || stale {
        health.push_str(" (stale)");
    }
    summary.row(["health".to_string(), health]);
    if !t.summary.is_empty() {
        summary.row(["summary", t.summary.as_str()]);
    }
    let mut groups: Vec<Section> = Vec::new();
    let mut findings = Section::new("Findings", &["KIND", "SUBJECT", "DETAIL"]);
    findings.empty = match t.health {
        Health::Unchecked => "not checked (see above)".into(),
        Health::Error => "none in what could be read; not clean: see Errors".into(),
        _ => "none".into(),
    };
    for f in &t.facts {
        match f {
            Fact::Detail { field, value } => summary.row([field.clone(), value.to_string()]),
            Fact::Count { group, item, count } => {
                let title = format!("{monitor} {}: {group}", t.target);
                let sec = match groups.iter_mut().position(|s| s.title == title) {
                    Some(i) => &mut groups[i],
                    None => {
                        groups.push(Section::new(&title, &["ITEM", "COUNT"]));
                        let n = groups.len() - 1;
                        &mut groups[n]
                    }
                };
                sec.row([item.clone(), count.to_string()]);
            }
            Fact::Expiry {
                item, not_after, ..
            } => findings_or_detail(
                &mut summary,
                &mut findings,
                f.is_finding(at.ceil),
                [
                    f.urgency(at.ceil).as_str().to_string(),
                    item.clone(),
                    format!(
                        "{} ({})",
                        expiry_phrase(not_after - at.ceil),
                        rfc3339(*not_after)
                    ),
                ],
            ),
            Fact::Freshness { item, .. } => findings_or_detail(
                &mut summary,
                &mut findings,
                f.is_finding(now),
                [
                    if f.is_late(now) { "late" } else { "age" }.to_string(),
                    item.clone(),
                    f.age(now).map(human_secs).unwrap_or_else(|| "never".into()),
                ],
            ),
            Fact::Check {
                item,
                kind,
                success,
                ..
            } => findings_or_detail(
                &mut summary,
                &mut findings,
                !success,
                [
                    "check".to_string(),
                    item.clone(),
                    format!("{kind}: {}", if *success { "ok" } else { "failing" }),
                ],
            ),
            Fact::Finding {
                kind,
                subject,
                detail,
                ..
            } => findings.row([kind, subject, detail]),
            Fact::Problem { .. } => {}
        }
    }
    let mut out = vec![summary];
    out.extend(groups);
    out.push(findings);
    out
}

/// A fact that is a finding goes to the findings table, else to the summary.
fn findings_or_detail(
    summary: &mut Section,
    findings: &mut Section,
    finding: bool,
    [kind, item, what]: [String; 3],
) {
    if finding {
        findings.row([kind, item, what]);
    } else {
        summary.row([item, what]);
    }
}

/// The report of the given monitors' snapshots, for any monitor: `--status`
/// ([`Layout::Overview`]) and `--state-file` ([`Layout::Detailed`]).
/// Nothing monitored is a finding, never "ok".
pub fn snapshot_report(entries: &[Entry<'_>], now: SystemTime, layout: Layout) -> Report {
    let at = Now::of(now);
    let now = at.floor;
    let mut report = Report::default();
    let mut overview = Section::new("Monitors", &["MONITOR", "TARGET", "HEALTH", "SUMMARY"]);
    overview.empty = "no targets found: nothing is monitored".into();
    let mut errors = Section::new("Errors", &["MONITOR", "TARGET", "COMPONENT", "ERROR"]);
    let mut detailed = Vec::new();
    let mut json = Vec::new();
    for (monitor, snap, stale) in entries {
        for t in &snap.targets {
            let mut health = t.health.as_str().to_string();
            if t.stale || *stale {
                health.push_str(" (stale)");
            }
            overview.row([
                monitor.to_string(),
                t.target.clone(),
                health,
                t.summary.clone(),
            ]);
            if layout == Layout::Detailed {
                detailed.extend(target_sections(monitor, t, *stale, at));
            }
            error_rows(&mut errors, monitor, t);
            tally(&mut report, t, now);
            json.push(target_json(monitor, t, *stale, now));
        }
    }
    let nothing = overview.rows.is_empty();
    if nothing {
        report.findings += 1;
    }
    match layout {
        Layout::Overview => {
            report.sections.push(overview);
            report.sections.extend(fact_sections(entries, at));
        }
        Layout::Detailed if nothing => report.sections.push(overview),
        Layout::Detailed => report.sections.extend(detailed),
    }
    if !errors.rows.is_empty() {
        report.sections.push(errors);
    }
    report.json = serde_json::json!({
        "targets": json,
        "nothing_monitored": nothing,
        "findings": report.findings,
        "errors": report.errors,
        "unchecked": report.unchecked,
    });
    report
}

/// A duration as people say it, for reports and `--status`: "400ms", "42s",
/// "5m 3s", "26h", "4 days 23h", "426 days". At most two units, the smaller
/// truncated (a countdown never overstates the time left); hours up to 2 days,
/// then days (hours dropped from 30 days on).
pub fn human_duration(d: std::time::Duration) -> String {
    const MIN: u64 = 60;
    const HOUR: u64 = 3600;
    const DAY: u64 = 86_400;
    let s = d.as_secs();
    let pair = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit} {small}{small_unit}")
        }
    };
    let days = |n: u64| {
        if n == 1 {
            "1 day".to_string()
        } else {
            format!("{n} days")
        }
    };
    if s == 0 {
        let ms = d.subsec_millis();
        return if ms == 0 {
            "0s".into()
        } else {
            format!("{ms}ms")
        };
    }
    if s < MIN {
        format!("{s}s")
    } else if s < HOUR {
        pair(s / MIN, "m", s % MIN, "s")
    } else if s < 2 * DAY {
        pair(s / HOUR, "h", s % HOUR / MIN, "m")
    } else if s < 30 * DAY {
        let h = s % DAY / HOUR;
        if h == 0 {
            days(s / DAY)
        } else {
            format!("{} {h}h", days(s / DAY))
        }
    } else {
        days(s / DAY)
    }
}

/// Plain-text table with padded columns.
pub fn render_table(sec: &Section) -> String {
    let mut out = format!("{}\n", sec.title);
    if sec.rows.is_empty() {
        out.push_str(&format!("  ({})\n", sec.empty));
        return out;
    }
    // File names may hold newlines or terminal escapes: never print them raw.
    let esc = |r: &Vec<String>| -> Vec<String> {
        r.iter()
            .map(|c| crate::core::telemetry::escape_controls(c).into_owned())
            .collect()
    };
    let header = esc(&sec.header);
    let rows: Vec<Vec<String>> = sec.rows.iter().map(esc).collect();
    let cols = header
        .len()
        .max(rows.iter().map(Vec::len).max().unwrap_or(0));
    let mut widths = vec![0usize; cols];
    for row in std::iter::once(&header).chain(rows.iter()) {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |row: &Vec<String>| {
        let mut l = String::from("  ");
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{:<w$}  ", cell, w = widths[i]));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    out.push_str(&line(&header));
    for r in &rows {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        let d = |s: u64| human_duration(std::time::Duration::from_secs(s));
        assert_eq!(d(0), "0s");
        assert_eq!(
            human_duration(std::time::Duration::from_millis(400)),
            "400ms"
        );
        assert_eq!(d(42), "42s");
        assert_eq!(d(60), "1m");
        assert_eq!(d(303), "5m 3s");
        assert_eq!(d(3600), "1h");
        assert_eq!(d(5400), "1h 30m");
        assert_eq!(d(24 * 3600), "24h");
        // "26h", not "1day 2h".
        assert_eq!(d(26 * 3600), "26h");
        assert_eq!(d(47 * 3600 + 59 * 60 + 59), "47h 59m");
        assert_eq!(d(2 * 86_400), "2 days");
        // 4.99 days, not "4 day(s)".
        assert_eq!(d(431_136), "4 days 23h");
        assert_eq!(d(7 * 86_400), "7 days");
        assert_eq!(d(29 * 86_400 + 5 * 3600), "29 days 5h");
        assert_eq!(d(426 * 86_400 + 5 * 3600), "426 days");
    }

    #[test]
    fn configured_durations_show_as_written() {
        use crate::core::config::{parse_duration, HumanDuration};
        let shown = |t: &str| HumanDuration(parse_duration(t).unwrap()).to_string();
        assert_eq!(shown("26h"), "26h");
        assert_eq!(shown("1d"), "24h");
        assert_eq!(shown("7d"), "7 days");
        assert_eq!(shown("90s"), "1m 30s");
        assert_eq!(shown("400ms"), "400ms");
        // Exact even when two units are not enough.
        let odd = shown("2d 3h 4m");
        assert_eq!(parse_duration(&odd), parse_duration("2d 3h 4m"), "{odd}");
    }

    #[test]
    fn table_pads_columns_and_exit_codes_follow_findings() {
        let mut s = Section::new("T", &["A", "LONGER"]);
        s.row(["xxxxx", "y"]);
        let t = render_table(&s);
        assert!(t.contains("  A      LONGER\n"), "{t}");
        assert!(t.contains("  xxxxx  y\n"), "{t}");
        let mut r = Report::default();
        assert_eq!(r.exit_code(), 0);
        r.findings = 1;
        assert_eq!(r.exit_code(), 2);
        r.errors = 1;
        assert_eq!(r.exit_code(), 1);
    }

    /// A monitor the renderer has never heard of: its facts are shown in full.
    #[test]
    fn any_monitors_facts_render_with_counts_and_exit_codes() {
        use crate::core::snapshot::Value;
        let facts = vec![
            Fact::Detail {
                field: "serial".into(),
                value: Value::Int(7),
            },
            Fact::Count {
                group: "widgets".into(),
                item: "blue".into(),
                count: 3,
            },
            Fact::Finding {
                kind: "drift".into(),
                subject: "a.b".into(),
                detail: "update: tags".into(),
                counted: true,
            },
            Fact::Finding {
                kind: "policy warn".into(),
                subject: "a.c".into(),
                detail: "just a warning".into(),
                counted: false,
            },
        ];
        let snap = Snapshot {
            targets: vec![TargetStatus::new("s1", Health::Findings, "1 drifted").with_facts(facts)],
            ..Snapshot::default()
        };
        let r = snapshot_report(
            &[("new_monitor", &snap, false)],
            SystemTime::UNIX_EPOCH,
            Layout::Detailed,
        );
        let t = r.render(ReportFormat::Table);
        assert!(t.contains("new_monitor s1\n"), "{t}");
        assert!(t.contains("  serial   7\n"), "{t}");
        assert!(
            t.contains("new_monitor s1: widgets\n") && t.contains("  blue  3\n"),
            "{t}"
        );
        assert!(t.contains("  drift        a.b      update: tags\n"), "{t}");
        assert!(t.contains("just a warning"), "{t}");
        // The warning is shown but is not a finding.
        assert_eq!((r.findings, r.errors, r.exit_code()), (1, 0, 2), "{t}");
        assert_eq!(r.json["targets"][0]["details"]["serial"], 7);
        assert_eq!(r.json["targets"][0]["finding_count"], 1);
        assert_eq!(r.json["targets"][0]["facts"][1]["kind"], "drift");

        // A problem is an error (exit 1) with its component, even next to findings.
        let snap = Snapshot {
            targets: vec![TargetStatus::new("s2", Health::Ok, "").with_facts(vec![
                Fact::Problem {
                    component: "policy".into(),
                    message: "p.rego: undefined".into(),
                },
            ])],
            ..Snapshot::default()
        };
        let r = snapshot_report(
            &[("new_monitor", &snap, false)],
            SystemTime::UNIX_EPOCH,
            Layout::Overview,
        );
        let t = r.render(ReportFormat::Table);
        assert!(
            t.contains("new_monitor  s2      policy     p.rego: undefined"),
            "{t}"
        );
        assert_eq!((r.errors, r.exit_code()), (1, 1), "{t}");
    }

    /// Every kind of fact gets its table in `--status`, sorted as the page sorts it.
    #[test]
    fn status_tables_per_kind_of_fact() {
        let day = 86_400;
        let exp = |item: &str, at: i64| Fact::Expiry {
            item: item.into(),
            not_after: at,
            warning_seconds: None,
            critical_seconds: None,
        };
        let snap = Snapshot {
            targets: vec![
                TargetStatus::new("t", Health::Findings, "").with_facts(vec![
                    exp("later", 100 * day),
                    exp("gone", -426 * day),
                    Fact::Freshness {
                        item: "nightly".into(),
                        last_success: None,
                        max_age_seconds: Some(day),
                    },
                    Fact::Check {
                        item: "nas".into(),
                        kind: "tcp".into(),
                        success: false,
                        duration_seconds: 0.012,
                    },
                ]),
            ],
            ..Snapshot::default()
        };
        let r = snapshot_report(
            &[("m", &snap, false)],
            SystemTime::UNIX_EPOCH,
            Layout::Overview,
        );
        let t = r.render(ReportFormat::Table);
        assert!(t.find("gone") < t.find("later"), "{t}");
        assert!(
            t.contains("expired 426 days ago") && t.contains("expired"),
            "{t}"
        );
        assert!(t.contains("nightly  never") && t.contains("late"), "{t}");
        assert!(t.contains("nas   tcp   failing  12ms"), "{t}");
        // Expired, late and failing: three findings.
        assert_eq!(r.findings, 3, "{t}");
    }

    #[test]
    fn unchecked_is_not_clean_and_nothing_monitored_is_a_finding() {
        let r = Report {
            unchecked: 1,
            ..Report::default()
        };
        assert_eq!(r.exit_code(), 1);
        assert!(r.render(ReportFormat::Table).contains("1 not checked"));
        let r = snapshot_report(&[], SystemTime::UNIX_EPOCH, Layout::Overview);
        assert_eq!(r.exit_code(), 2);
        assert!(r
            .render(ReportFormat::Table)
            .contains("nothing is monitored"));
        let snap = Snapshot {
            families: Vec::new(),
            targets: vec![crate::core::snapshot::TargetStatus {
                target: "s".into(),
                health: Health::Unchecked,
                summary: String::new(),
                error: None,
                stale: false,
                facts: Vec::new().into(),
            }],
            pending: 0,
        };
        let r = snapshot_report(
            &[("terraform_state", &snap, false)],
            SystemTime::UNIX_EPOCH,
            Layout::Overview,
        );
        assert_eq!((r.unchecked, r.exit_code()), (1, 1));
    }
}

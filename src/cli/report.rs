//! Human and machine reports for the one-shot modes (`--state-file`, `--status`).

use serde::Serialize;

use crate::core::snapshot::{Health, Snapshot};

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

/// One table of every target of the given monitors' snapshots (`--status`).
/// Each entry: (monitor name, snapshot, whether the values are stale).
pub fn targets_report(entries: &[(&str, &Snapshot, bool)]) -> Report {
    let mut sec = Section::new("Monitors", &["MONITOR", "TARGET", "HEALTH", "SUMMARY"]);
    sec.empty = "no targets found: nothing is monitored".into();
    let mut errors = Section::new("Errors", &["MONITOR", "TARGET", "ERROR"]);
    let mut report = Report::default();
    let mut json = Vec::new();
    for (monitor, snap, stale) in entries {
        for t in &snap.targets {
            let mut health = t.health.as_str().to_string();
            if t.stale || *stale {
                health.push_str(" (stale)");
            }
            sec.row([
                monitor.to_string(),
                t.target.clone(),
                health,
                t.summary.clone(),
            ]);
            if let Some(e) = &t.error {
                errors.row([monitor.to_string(), t.target.clone(), e.clone()]);
            }
            match t.health {
                Health::Error => report.errors += 1,
                Health::Findings => report.findings += 1,
                Health::Unchecked => report.unchecked += 1,
                Health::Ok => {}
            }
            json.push(serde_json::json!({
                "monitor": monitor,
                "target": t.target,
                "health": t.health,
                "summary": t.summary,
                "error": t.error,
                "stale": t.stale || *stale,
            }));
        }
    }
    // Nothing monitored is a finding, never "ok".
    let nothing = sec.rows.is_empty();
    if nothing {
        report.findings += 1;
    }
    report.sections.push(sec);
    if !errors.rows.is_empty() {
        report.sections.push(errors);
    }
    report.json = serde_json::json!({ "targets": json, "nothing_monitored": nothing });
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

    #[test]
    fn unchecked_is_not_clean_and_nothing_monitored_is_a_finding() {
        let r = Report {
            unchecked: 1,
            ..Report::default()
        };
        assert_eq!(r.exit_code(), 1);
        assert!(r.render(ReportFormat::Table).contains("1 not checked"));
        let r = targets_report(&[]);
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
            }],
            pending: 0,
        };
        let r = targets_report(&[("terraform_state", &snap, false)]);
        assert_eq!((r.unchecked, r.exit_code()), (1, 1));
    }
}

//! Human and machine reports for the one-shot modes (`--state-file`, `--status`).

use serde::Serialize;

use crate::snapshot::{Health, Snapshot};

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
    /// Exit code: 1 when something could not be read, 2 for findings, 0 when clean.
    pub fn exit_code(&self) -> i32 {
        if self.errors > 0 {
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
                    "Result: {} finding(s), {} error(s)\n",
                    self.findings, self.errors
                ));
                out
            }
        }
    }
}

/// One table of every target of the given monitors' snapshots (`--status`).
/// Each entry: (monitor name, snapshot, whether the values are stale).
pub fn targets_report(entries: &[(&str, &Snapshot, bool)]) -> Report {
    let mut sec = Section::new("Monitors", &["MONITOR", "TARGET", "HEALTH", "SUMMARY"]);
    sec.empty = "no targets found".into();
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
    report.sections.push(sec);
    if !errors.rows.is_empty() {
        report.sections.push(errors);
    }
    report.json = serde_json::json!({ "targets": json });
    report
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
            .map(|c| crate::telemetry::escape_controls(c).into_owned())
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
}

//! The sidecar status file of a drift run (`<report>.status.json`): written
//! by `homelab-monitor drift` after every run, read by the exporter.
//! It never holds a value from Terraform's output: only the phase, the exit
//! code and a redacted excerpt of the diagnostics' headlines.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::core::snapshot::{MetricDef, SnapshotBuilder};

pub const RUN_SUCCESS: MetricDef = MetricDef::gauge(
    "terraform_drift_run_success",
    "1 if the last drift run (homelab-monitor drift) of this state wrote its report, 0 if it failed (the report is then the last good one) or its status file cannot be read.",
);
pub const RUN_LAST: MetricDef = MetricDef::gauge(
    "terraform_drift_run_last_run_timestamp_seconds",
    "When the last drift run of this state finished, successful or not.",
);
pub const RUN_DURATION: MetricDef = MetricDef::gauge(
    "terraform_drift_run_duration_seconds",
    "How long the last drift run of this state took (init, plan and show).",
);
pub const RUN_ERROR: MetricDef = MetricDef::gauge(
    "terraform_drift_run_error_info",
    "Why the last drift run of this state failed: phase (init, plan, show, write, status) and reason; always 1.",
);

/// Phases of a run (bounded label values).
pub const PHASES: [&str; 6] = ["lock", "init", "plan", "show", "write", "status"];
/// Failure reasons (bounded label values).
pub const REASONS: [&str; 7] = [
    "exit_status",
    "timeout",
    "killed",
    "spawn",
    "invalid_output",
    "io",
    "unreadable",
];

/// Largest status file the exporter reads.
const MAX_STATUS_BYTES: u64 = 64 * 1024;
/// Lines of the stderr excerpt kept, and characters per line.
pub const EXCERPT_LINES: usize = 8;
const EXCERPT_LINE_CHARS: usize = 160;

/// The sidecar status file of a drift report.
pub fn status_path(report: &Path) -> PathBuf {
    let mut name = report
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".status.json");
    report.with_file_name(name)
}

/// One run's outcome, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    pub format: u32,
    pub success: bool,
    /// Failed phase (`None` on success).
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    pub started_at: f64,
    pub finished_at: f64,
    pub duration_seconds: f64,
    /// Drift found by a successful run (resource instances).
    #[serde(default)]
    pub drift: Option<usize>,
    /// Pending changes found by a successful normal plan.
    #[serde(default)]
    pub pending: Option<usize>,
    /// Redacted headlines of Terraform's diagnostics (failures only).
    #[serde(default)]
    pub stderr_excerpt: Vec<String>,
}

pub fn unix_f64(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl RunStatus {
    pub fn finished(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs_f64(self.finished_at.max(0.0))
    }

    /// Sane values only: finite, non-negative times; known labels.
    fn sane(&self) -> bool {
        let t = [self.started_at, self.finished_at, self.duration_seconds];
        t.iter().all(|v| v.is_finite() && *v >= 0.0 && *v < 1e11)
            && self.phase.as_deref().is_none_or(|p| PHASES.contains(&p))
            && self.reason.as_deref().is_none_or(|r| REASONS.contains(&r))
            && (self.success || (self.phase.is_some() && self.reason.is_some()))
    }
}

/// What the exporter knows of the last run of one state.
#[derive(Debug, Clone, PartialEq)]
pub enum RunInfo {
    Read(RunStatus),
    /// The status file exists but cannot be read or is not one.
    Unreadable,
}

/// Write `status` beside `report` atomically (temp file + rename).
pub fn write(report: &Path, status: &RunStatus) -> std::io::Result<()> {
    let body = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    super::run::write_atomic(&status_path(report), &body)
}

/// The exporter's read of the status beside `report`: `None` when there is
/// none (no runner writes this report).
pub fn read_beside(report: &Path) -> Option<RunInfo> {
    let path = status_path(report);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        _ => {}
    }
    let parsed = crate::core::safe_open::read_capped(&path, MAX_STATUS_BYTES)
        .ok()
        .and_then(|b| serde_json::from_slice::<RunStatus>(&b).ok())
        .filter(|s| s.format == 1 && s.sane());
    Some(match parsed {
        Some(s) => RunInfo::Read(s),
        None => RunInfo::Unreadable,
    })
}

/// The run series of one state.
pub fn emit(b: &mut SnapshotBuilder, state_file: &str, info: &RunInfo) {
    let sf = [("state_file", state_file)];
    match info {
        RunInfo::Read(s) => {
            b.gauge(&RUN_SUCCESS, &sf, if s.success { 1.0 } else { 0.0 });
            b.gauge(&RUN_LAST, &sf, s.finished_at);
            b.gauge(&RUN_DURATION, &sf, s.duration_seconds);
            if !s.success {
                b.gauge(
                    &RUN_ERROR,
                    &[
                        ("state_file", state_file),
                        ("phase", s.phase.as_deref().unwrap_or("plan")),
                        ("reason", s.reason.as_deref().unwrap_or("exit_status")),
                    ],
                    1.0,
                );
            }
        }
        RunInfo::Unreadable => {
            b.gauge(&RUN_SUCCESS, &sf, 0.0);
            b.gauge(
                &RUN_ERROR,
                &[
                    ("state_file", state_file),
                    ("phase", "status"),
                    ("reason", "unreadable"),
                ],
                1.0,
            );
        }
    }
}

/// A short summary for the status page and `--status`, or `None` when the last run succeeded.
pub fn failure_summary(info: &RunInfo) -> Option<String> {
    match info {
        RunInfo::Read(s) if s.success => None,
        RunInfo::Read(s) => Some(format!(
            "the last drift run failed in {} ({}{}); the drift report is the last good one",
            s.phase.as_deref().unwrap_or("?"),
            s.reason.as_deref().unwrap_or("?"),
            s.exit_code.map(|c| format!(", exit code {c}")).unwrap_or_default()
        )),
        RunInfo::Unreadable => Some(
            "the drift run's status file cannot be read: the last run's outcome is unknown".into(),
        ),
    }
}

/// Redact Terraform's stderr for the status file and logs: keep only the
/// diagnostics' headlines (`Error: ...`, `Warning: ...`) and their
/// `on FILE line N` locations, never their details or source snippets
/// (both can quote variable values); quoted strings, anything after `=`,
/// and every `secrets` value (the child's extra env, `TF_VAR_*`) become `***`.
/// At most [`EXCERPT_LINES`] lines of at most 160 characters.
pub fn redact_excerpt(stderr: &str, secrets: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for raw in stderr.lines() {
        let line = raw
            .trim_start_matches(|c: char| c == '│' || c == '╷' || c == '╵' || c.is_whitespace())
            .trim_end();
        let keep = line.starts_with("Error: ")
            || line.starts_with("Warning: ")
            || (line.starts_with("on ") && line.contains(" line "));
        if !keep {
            continue;
        }
        let mut l = redact_line(line);
        for s in secrets.iter().filter(|s| s.len() >= 3) {
            l = l.replace(s.as_str(), "***");
        }
        if l.chars().count() > EXCERPT_LINE_CHARS {
            l = l.chars().take(EXCERPT_LINE_CHARS).collect::<String>() + "…";
        }
        out.push(l);
        if out.len() == EXCERPT_LINES {
            break;
        }
    }
    out
}

/// Quoted strings and what follows `=` become `***`; control characters go.
fn redact_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                out.push_str("\"***\"");
                // Skip to the closing quote (or the end).
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                }
            }
            '=' => {
                out.push_str("=***");
                break;
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_excerpt_keeps_headlines_and_drops_values() {
        let stderr = "\n╷\n│ Error: Invalid function argument\n│ \n│   on main.tf line 5, in resource \"terraform_data\" \"x\":\n│    5:   input = tonumber(var.x)\n│     ├────────────────\n│     │ var.x is \"CANARY-1\"\n│ \n│ Invalid value for \"v\" parameter: cannot convert \"CANARY-1\" to number.\n╵\n│ Error: provider said token=CANARY-1 was refused for 'CANARY-1'\n│ Error: plain CANARY-2 leak\n";
        let out = redact_excerpt(stderr, &["CANARY-2".into()]);
        assert_eq!(
            out,
            vec![
                "Error: Invalid function argument".to_string(),
                "on main.tf line 5, in resource \"***\" \"***\":".into(),
                "Error: provider said token=***".into(),
                "Error: plain *** leak".into(),
            ]
        );
        let long = "Error: x\n".repeat(50);
        assert_eq!(redact_excerpt(&long, &[]).len(), EXCERPT_LINES);
    }

    #[test]
    fn drift_status_file_round_trips_and_rejects_nonsense() {
        let t = tempfile::tempdir().unwrap();
        let report = t.path().join("drift.json");
        assert_eq!(read_beside(&report), None, "no status file: no run series");
        let s = RunStatus {
            format: 1,
            success: false,
            phase: Some("plan".into()),
            reason: Some("exit_status".into()),
            exit_code: Some(1),
            started_at: 100.0,
            finished_at: 102.5,
            duration_seconds: 2.5,
            drift: None,
            pending: None,
            stderr_excerpt: vec!["Error: x".into()],
        };
        write(&report, &s).unwrap();
        assert_eq!(status_path(&report), t.path().join("drift.json.status.json"));
        assert_eq!(read_beside(&report), Some(RunInfo::Read(s.clone())));
        let mut b = SnapshotBuilder::new();
        emit(&mut b, "a/terraform.tfstate", &RunInfo::Read(s.clone()));
        let text = crate::core::encoder::encode(vec![std::sync::Arc::new(b.build())], crate::core::encoder::Format::Classic).unwrap();
        assert!(text.contains("terraform_drift_run_success{state_file=\"a/terraform.tfstate\"} 0"), "{text}");
        assert!(text.contains("terraform_drift_run_error_info{state_file=\"a/terraform.tfstate\",phase=\"plan\",reason=\"exit_status\"} 1"), "{text}");
        // A label value outside the known set, a failure without a phase,
        // garbage: unreadable, never success.
        for bad in [
            r#"{"format":1,"success":false,"phase":"evil\"}","reason":"x","started_at":1,"finished_at":1,"duration_seconds":0}"#,
            r#"{"format":1,"success":false,"started_at":1,"finished_at":1,"duration_seconds":0}"#,
            r#"{"format":1,"success":true,"started_at":-1,"finished_at":1,"duration_seconds":0}"#,
            "not json",
        ] {
            std::fs::write(status_path(&report), bad).unwrap();
            assert_eq!(read_beside(&report), Some(RunInfo::Unreadable), "{bad}");
        }
        let mut b = SnapshotBuilder::new();
        emit(&mut b, "a", &RunInfo::Unreadable);
        let text = crate::core::encoder::encode(vec![std::sync::Arc::new(b.build())], crate::core::encoder::Format::Classic).unwrap();
        assert!(text.contains("terraform_drift_run_success{state_file=\"a\"} 0"), "{text}");
        assert!(text.contains("phase=\"status\",reason=\"unreadable\"} 1"), "{text}");
    }
}

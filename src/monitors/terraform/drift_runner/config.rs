//! `custom_monitors.terraform_state.drift_runner`: what `homelab-monitor drift`
//! runs, where and how often.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::core::config::values::HumanDuration;

/// When `init` runs before the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitMode {
    /// Only when the working directory has no `.terraform/` folder yet.
    Auto,
    /// Before every plan (picks up new modules and providers).
    Always,
    /// Never (the directory is initialised by someone else).
    Never,
}

/// One working directory: a path, or `{dir, report}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum WorkingDir {
    Path(String),
    Entry(WorkingDirEntry),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkingDirEntry {
    pub dir: String,
    /// Where the drift report is written, relative to the config file's
    /// folder. Default: `drift_report` beside the local state
    /// (`terraform.tfstate`, or `terraform.tfstate.d/<workspace>/`). Needed
    /// for a remote backend: `<remote.reports_dir>/<label folder>/<drift_report>`.
    #[serde(default)]
    pub report: Option<String>,
}

impl WorkingDir {
    pub fn dir(&self) -> &str {
        match self {
            WorkingDir::Path(p) => p,
            WorkingDir::Entry(e) => &e.dir,
        }
    }

    pub fn report(&self) -> Option<&str> {
        match self {
            WorkingDir::Path(_) => None,
            WorkingDir::Entry(e) => e.report.as_deref(),
        }
    }
}

/// `custom_monitors.terraform_state.drift_runner`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftRunnerConfig {
    /// Terraform working directories, relative to the config file's folder.
    #[serde(default)]
    pub working_dirs: Vec<WorkingDir>,
    /// `terraform`, `tofu` (looked up on PATH) or a path to the binary.
    #[serde(default = "DriftRunnerConfig::default_binary")]
    pub binary: String,
    /// A directory is planned again when its last run is older than this;
    /// also the loop's period.
    #[serde(default = "DriftRunnerConfig::default_every")]
    pub every: HumanDuration,
    /// Longest one directory (init + plan + show) may take; then its whole
    /// process group is killed.
    #[serde(default = "DriftRunnerConfig::default_timeout")]
    pub timeout: HumanDuration,
    /// Directories planned at once.
    #[serde(default = "DriftRunnerConfig::default_concurrency")]
    pub concurrency: usize,
    /// `plan -refresh-only` (drift only); `false` runs a normal plan
    /// (drift and pending changes).
    #[serde(default = "crate::core::config::values::yes")]
    pub refresh_only: bool,
    /// Take Terraform's state lock during the plan (`-lock=false` when off).
    #[serde(default = "crate::core::config::values::yes")]
    pub lock: bool,
    /// When `init` runs: auto (no `.terraform/` yet), always, never.
    #[serde(default = "DriftRunnerConfig::default_init")]
    pub init: InitMode,
    /// Extra arguments of `plan` (e.g. `-var-file=prod.tfvars`).
    #[serde(default)]
    pub plan_args: Vec<String>,
    /// Extra environment variables of the child (non-secret: credentials
    /// come from the runner's own environment, which the child inherits).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl DriftRunnerConfig {
    fn default_binary() -> String {
        "terraform".into()
    }
    fn default_every() -> HumanDuration {
        HumanDuration(Duration::from_secs(3600))
    }
    fn default_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(600))
    }
    fn default_concurrency() -> usize {
        2
    }
    fn default_init() -> InitMode {
        InitMode::Auto
    }

    /// Cross-field checks (no I/O); the error is (key below `drift_runner`, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((k.to_string(), m));
        if self.binary.trim().is_empty() {
            return err("binary", "binary is empty: give terraform, tofu or the binary's path".into());
        }
        if self.every.0.is_zero() {
            return err("every", "every must be longer than zero (e.g. 1h)".into());
        }
        if self.timeout.0.is_zero() {
            return err("timeout", "timeout must be longer than zero (e.g. 10m)".into());
        }
        if self.concurrency == 0 || self.concurrency > 64 {
            return err("concurrency", "concurrency must be between 1 and 64".into());
        }
        for (i, w) in self.working_dirs.iter().enumerate() {
            if w.dir().trim().is_empty() {
                return err("working_dirs", format!("working_dirs[{i}] is empty: give a Terraform working directory"));
            }
            if w.report().is_some_and(|r| r.trim().is_empty()) {
                return err("working_dirs", format!("working_dirs[{i}].report is empty: give the drift report's path or remove the key"));
            }
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return err("env", format!("env: {k:?} is not an environment variable name"));
            }
        }
        let forbidden = ["-out", "-json", "-input", "-no-color", "-refresh-only", "-lock", "-detailed-exitcode"];
        for a in &self.plan_args {
            let name = a.split('=').next().unwrap_or(a);
            if forbidden.contains(&name) {
                return err("plan_args", format!("plan_args: {a} is set by the runner (use refresh_only / lock instead); remove it"));
            }
        }
        Ok(())
    }
}

impl Default for DriftRunnerConfig {
    fn default() -> Self {
        Self {
            working_dirs: Vec::new(),
            binary: Self::default_binary(),
            every: Self::default_every(),
            timeout: Self::default_timeout(),
            concurrency: Self::default_concurrency(),
            refresh_only: true,
            lock: true,
            init: Self::default_init(),
            plan_args: Vec::new(),
            env: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(runner: &str) -> Result<DriftRunnerConfig, String> {
        let yaml = format!(
            "custom_monitors:\n  terraform_state:\n    drift_runner:\n{}",
            runner
                .lines()
                .map(|l| format!("      {l}\n"))
                .collect::<String>()
        );
        crate::core::config::parse(&yaml, std::path::Path::new("m.yaml"))
            .map(|f| {
                f.custom_monitors
                    .terraform_state
                    .and_then(|t| t.drift_runner)
                    .unwrap_or_default()
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn drift_runner_config_defaults_entries_and_checks() {
        let c = load("working_dirs: [a, {dir: b, report: reports/b/drift.json}]").unwrap();
        assert_eq!(c.binary, "terraform");
        assert_eq!(c.every.0, Duration::from_secs(3600));
        assert_eq!(c.timeout.0, Duration::from_secs(600));
        assert_eq!((c.concurrency, c.refresh_only, c.lock), (2, true, true));
        assert_eq!(c.init, InitMode::Auto);
        assert_eq!(c.working_dirs[0].dir(), "a");
        assert_eq!(c.working_dirs[1].report(), Some("reports/b/drift.json"));
        let c = load("working_dirs: [a]\nbinary: tofu\nevery: 30m\nconcurrency: 4\nrefresh_only: false\nlock: false\ninit: always\nplan_args: [-var-file=prod.tfvars]\nenv: {TF_LOG: error}").unwrap();
        assert_eq!((c.binary.as_str(), c.concurrency, c.init), ("tofu", 4, InitMode::Always));
        for (bad, says) in [
            ("working_dirs: [a]\nevry: 1h", "evry"),
            ("working_dirs: [{dir: a, reprot: x}]", "working_dirs"),
            ("working_dirs: [a]\nconcurrency: 0", "concurrency"),
            ("working_dirs: [a]\nevery: 0s", "every"),
            ("working_dirs: [a]\ntimeout: 0s", "timeout"),
            ("working_dirs: [a]\nplan_args: [-out=x]", "plan_args"),
            ("working_dirs: [a]\nplan_args: [-lock=false]", "plan_args"),
            ("working_dirs: ['']", "working_dirs"),
            ("working_dirs: [a]\ninit: sometimes", "init"),
        ] {
            let e = load(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}

//! `custom_monitors.terraform_state`: the Terraform monitor's config block,
//! its defaults and checks (remote backends included).

use std::path::Path;
use std::time::Duration;


use crate::core::config::values::monitor_config;
use crate::core::config::values::{ByteSize, GlobPattern, HumanDuration};
use crate::monitors::kind::ConfigIssue;

monitor_config! {
    /// `custom_monitors.terraform_state`.
    pub struct TerraformConfig {
        default check_interval: Duration::from_secs(300);
        /// Globs of state files, relative to the config file's folder.
        #[serde(default)]
        pub state_files: Vec<GlobPattern>,
        /// Folders searched recursively for `*.tfstate` (`.terraform/` skipped).
        #[serde(default)]
        pub state_dirs: Vec<GlobPattern>,
        /// File name of the drift report beside each state (`{stem}` = state file name without `.tfstate`).
        #[serde(default = "TerraformConfig::default_drift_report")]
        pub drift_report: String,
        /// File name of the approved copy beside each state; optional.
        #[serde(default)]
        pub baseline: Option<String>,
        /// Largest file read (state, drift report, baseline; also remote states).
        #[serde(default = "default_max_file_size")]
        pub max_file_size: ByteSize,
        /// Remote state backends (docs/remote-state.md).
        #[serde(default)]
        pub backends: Vec<RemoteBackend>,
        /// Terraform working directories whose `.terraform/terraform.tfstate`
        /// records a backend (http, s3, pg, cloud, remote) to read, relative to the config file's folder.
        #[serde(default)]
        pub working_dirs: Vec<String>,
        /// Timeouts, retries and concurrency of remote backends.
        #[serde(default)]
        pub remote: RemoteOptions,
        /// Rego policies evaluated on every state (docs/policies.md): `.rego`
        /// files or folders of them, relative to the config file's folder.
        #[serde(default)]
        pub policies: Vec<String>,
        /// Longest one policy may run on one state before it is stopped.
        #[serde(default = "TerraformConfig::default_policy_timeout")]
        pub policy_timeout: HumanDuration,
        /// The largest state (and drift report), in bytes of JSON, turned
        /// into a policy input; larger ones fail every policy with reason
        /// `too_large` instead of risking an out-of-memory kill (the engine
        /// holds several times the file size).
        #[serde(default = "TerraformConfig::default_policy_max_input_size")]
        pub policy_max_input_size: ByteSize,
        /// `homelab-monitor drift`: the working directories it plans and how
        /// (see the drift runner in the README). The exporter never runs Terraform.
        #[serde(default)]
        pub drift_runner: Option<super::drift_runner::DriftRunnerConfig>,
    }
}

pub use crate::remote::config::{
    GitlabBackendConfig, HcpBackendConfig, HttpAuth, HttpBackendConfig, PgBackendConfig, RemoteBackend,
    RemoteOptions, S3BackendConfig, SecretRef,
};

fn default_max_file_size() -> ByteSize {
    ByteSize(1 << 30)
}


impl TerraformConfig {
    fn default_drift_report() -> String {
        "drift.json".into()
    }
    fn default_policy_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    fn default_policy_max_input_size() -> ByteSize {
        ByteSize(256 << 20)
    }
}

impl Default for TerraformConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            check_interval: default_check_interval(),
            retry_interval: crate::core::config::values::default_retry(),
            timeout: crate::core::config::values::default_timeout(),
            state_files: Vec::new(),
            state_dirs: Vec::new(),
            drift_report: Self::default_drift_report(),
            baseline: None,
            max_file_size: default_max_file_size(),
            backends: Vec::new(),
            working_dirs: Vec::new(),
            remote: RemoteOptions::default(),
            policies: Vec::new(),
            policy_timeout: Self::default_policy_timeout(),
            policy_max_input_size: Self::default_policy_max_input_size(),
            drift_runner: None,
        }
    }
}

/// Cross-field checks (no I/O). Keys are below `terraform_state`.
pub fn validate(t: &TerraformConfig) -> Result<(), ConfigIssue> {
    for (i, b) in t.backends.iter().enumerate() {
        b.validate()
            .map_err(|m| ("backends".to_string(), format!("backends[{i}]: {m}")))?;
    }
    if t.remote.concurrency == 0 || t.remote.request_timeout.0.is_zero() {
        return Err((
            "remote".into(),
            "remote.concurrency and remote.request_timeout must be above zero".into(),
        ));
    }
    if t.remote
        .reports_dir
        .as_deref()
        .is_some_and(|d| d.trim().is_empty())
    {
        return Err((
            "remote.reports_dir".into(),
            "remote.reports_dir is empty: give the folder (relative to this file) that holds the drift reports and baselines of remote states, or remove the key".into(),
        ));
    }
    for (k, v) in [
        ("drift_report", Some(&t.drift_report)),
        ("baseline", t.baseline.as_ref()),
    ] {
        if let Some(v) = v {
            if v.is_empty() || v.contains('/') || v.contains('\\') {
                return Err((
                    k.to_string(),
                    format!("{k} must be a plain file name beside each state file (placeholders {{stem}} and {{file}} allowed), not a path"),
                ));
            }
        }
    }
    if let Some(d) = &t.drift_runner {
        d.validate().map_err(|(k, m)| {
            (
                format!("drift_runner.{k}"),
                format!("drift_runner.{m}"),
            )
        })?;
    }
    if !t.policies.is_empty() && t.policy_timeout.0.is_zero() {
        return Err((
            "policy_timeout".into(),
            "policy_timeout must be longer than zero".into(),
        ));
    }
    Ok(())
}

/// The policy files exist and compile (relative to `base`, the config
/// file's folder). Reads files: run when the config is loaded for use,
/// never by the parser.
pub fn check_files(t: &TerraformConfig, base: &Path) -> Result<(), ConfigIssue> {
    if t.policies.is_empty() {
        return Ok(());
    }
    super::policy::check_config(base, &t.policies).map_err(|e| ("policies".into(), e.to_string()))
}

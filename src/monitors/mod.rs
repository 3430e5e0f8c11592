//! The monitors, one folder each, and the one place that builds them from config.
//!
//! Adding a monitor: a new module implementing [`crate::monitor::Monitor`] and
//! one line in [`build`]. Monitors never import each other.

pub mod backups;
pub mod certificates;
pub mod health;
pub mod terraform;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, GlobPattern, HumanDuration, TerraformConfig};
use crate::monitor::Monitor;

/// Command-line overrides applied on top of the config file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--state-dir`: replaces the terraform monitor's state_dirs, state_files and
    /// working_dirs (each folder is also read as a working directory).
    pub state_dirs: Vec<String>,
    /// `--state-file`: replaces the terraform monitor's targets with these files.
    pub state_files: Vec<String>,
    /// `--interval`: overrides every monitor's check_interval.
    pub interval: Option<Duration>,
}

/// The terraform config after overrides (also used by the one-shot report).
pub fn terraform_config(config: &Config, ov: &Overrides) -> Option<TerraformConfig> {
    let mut tf = config.file.custom_monitors.terraform_state.clone();
    if !ov.state_dirs.is_empty() || !ov.state_files.is_empty() {
        let mut t = tf.unwrap_or_default();
        t.enabled = true;
        t.state_dirs = ov.state_dirs.iter().cloned().map(GlobPattern).collect();
        t.state_files = ov.state_files.iter().cloned().map(GlobPattern).collect();
        // A folder given with --state-dir may be a Terraform working directory
        // whose .terraform/terraform.tfstate records a remote backend (zero-config).
        t.working_dirs = ov.state_dirs.clone();
        tf = Some(t);
    }
    let mut tf = tf.filter(|t| t.enabled)?;
    if let Some(i) = ov.interval {
        tf.check_interval = HumanDuration(i);
    }
    Some(tf)
}

/// Build every enabled monitor. This is the registry line for each monitor.
pub fn build(config: &Config, ov: &Overrides) -> Vec<Arc<dyn Monitor>> {
    let mut out: Vec<Arc<dyn Monitor>> = Vec::new();
    if let Some(tf) = terraform_config(config, ov) {
        // Paths given on the command line are relative to the working directory.
        let base = if ov.state_files.is_empty() && ov.state_dirs.is_empty() {
            config.base_dir.clone()
        } else {
            std::path::PathBuf::from(".")
        };
        out.push(Arc::new(terraform::TerraformMonitor::new(tf, base)));
    }
    let cm = &config.file.custom_monitors;
    if let Some(c) = cm.certificate_expiry.as_ref().filter(|c| c.enabled) {
        out.push(certificates::monitor(c, ov.interval, &config.base_dir));
    }
    if let Some(b) = cm.backup_validation.as_ref().filter(|c| c.enabled) {
        out.push(Arc::new(
            backups::BackupMonitor::new(b.clone(), config.base_dir.clone())
                .with_interval(ov.interval),
        ));
    }
    if let Some(h) = config.file.health_checks.as_ref() {
        out.extend(health::monitor(h, &config.base_dir, ov.interval));
    }
    out
}

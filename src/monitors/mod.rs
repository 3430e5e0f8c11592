//! The monitors, one folder each, and the one place that registers them.
//!
//! Adding a monitor: a folder `monitors/<name>/` with its config block
//! (`config.rs`, declared with `monitor_config!`), a type implementing
//! [`kind::MonitorKind`] and one that implements [`crate::monitor::Monitor`],
//! then one line in `monitor_kinds!` below. The core loads, checks and
//! builds every registered kind the same way. Monitors never import each other.

pub mod backups;
pub mod certificates;
pub mod health;
pub mod kind;
pub mod terraform;
pub mod zfs;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, TerraformConfig};
use crate::monitor::Monitor;

use self::kind::{BuildContext, ConfigIssue, MonitorKind};

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

/// Declares `CustomMonitors` (the `custom_monitors:` block, one optional
/// field per kind, unknown keys refused) and how it is checked and built.
macro_rules! monitor_kinds {
    ($( $(#[$doc:meta])* $key:ident: $kind:ty ),* $(,)?) => {
        /// `custom_monitors:`: one block per registered monitor kind.
        #[derive(Debug, Clone, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct CustomMonitors {
            $( $(#[$doc])* #[serde(default)] pub $key: Option<<$kind as MonitorKind>::Config>, )*
        }

        $( const _: () = assert!(
            kind::same_key(<$kind as MonitorKind>::KEY, stringify!($key)),
            "a monitor_kinds! field must be its kind's KEY"
        ); )*

        impl CustomMonitors {
            /// Every block's checks (no I/O); the key is full (`custom_monitors.<key>...`).
            pub fn validate(&self) -> Result<(), ConfigIssue> {
                $( if let Some(c) = &self.$key { kind::validate::<$kind>(c)?; } )*
                Ok(())
            }

            /// Every block's file checks (policies compile...), relative to `base_dir`.
            pub fn check_files(&self, base_dir: &std::path::Path) -> Result<(), ConfigIssue> {
                $( if let Some(c) = &self.$key { kind::check_files::<$kind>(c, base_dir)?; } )*
                Ok(())
            }

            fn build(&self, ctx: &BuildContext<'_>, out: &mut Vec<Arc<dyn Monitor>>) {
                $( out.extend(kind::build::<$kind>(self.$key.as_ref(), ctx)); )*
            }
        }
    };
}

monitor_kinds! {
    terraform_state: terraform::TerraformKind,
    certificate_expiry: certificates::CertificateKind,
    backup_validation: backups::BackupKind,
    zfs_scrub: zfs::ZfsKind,
}

/// The terraform config after overrides (also used by the one-shot report).
pub fn terraform_config(config: &Config, ov: &Overrides) -> Option<TerraformConfig> {
    kind::configure::<terraform::TerraformKind>(
        config.file.custom_monitors.terraform_state.as_ref(),
        ov,
    )
}

/// Build every enabled monitor.
pub fn build(config: &Config, ov: &Overrides) -> Vec<Arc<dyn Monitor>> {
    let mut out: Vec<Arc<dyn Monitor>> = Vec::new();
    let ctx = BuildContext {
        base_dir: &config.base_dir,
        overrides: ov,
    };
    config.file.custom_monitors.build(&ctx, &mut out);
    // `health_checks:` is a top-level block of per-check schedules.
    if let Some(h) = config.file.health_checks.as_ref() {
        out.extend(health::monitor(h, &config.base_dir, ov.interval));
    }
    out
}

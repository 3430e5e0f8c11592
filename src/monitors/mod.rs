//! The monitors, one folder each, and the one place that registers them.
//!
//! Adding a monitor: a folder `monitors/<name>/` with its config block
//! (`config.rs`, declared with `monitor_config!`), a type implementing
//! [`kind::MonitorKind`] and one that implements [`crate::core::monitor::Monitor`],
//! then one line in `monitor_kinds!` below (it also declares the module). The core loads, checks and
//! builds every registered kind the same way. Monitors never import each other.

pub mod health;
pub mod kind;

use std::sync::Arc;
use std::time::Duration;

use crate::core::config::{Config, TerraformConfig};
use crate::core::monitor::Monitor;

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

/// Declares each monitor's module, `CustomMonitors` (the `custom_monitors:`
/// block, one optional field per kind, unknown keys refused) and how every
/// block is checked and built.
macro_rules! monitor_kinds {
    ($( $(#[$doc:meta])* $module:ident::$kind:ident as $key:ident ),* $(,)?) => {
        $( pub mod $module; )*

        /// `custom_monitors:`: one block per registered monitor kind.
        #[derive(Debug, Clone, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct CustomMonitors {
            $( $(#[$doc])* #[serde(default)] pub $key: Option<<$module::$kind as MonitorKind>::Config>, )*
        }

        $( const _: () = assert!(
            kind::same_key(<$module::$kind as MonitorKind>::KEY, stringify!($key)),
            "a monitor_kinds! field must be its kind's KEY"
        ); )*

        impl CustomMonitors {
            /// Every block's checks (no I/O); the key is full (`custom_monitors.<key>...`).
            pub fn validate(&self) -> Result<(), ConfigIssue> {
                $( if let Some(c) = &self.$key { kind::validate::<$module::$kind>(c)?; } )*
                Ok(())
            }

            /// Every block's file checks (policies compile...), relative to `base_dir`.
            pub fn check_files(&self, base_dir: &std::path::Path) -> Result<(), ConfigIssue> {
                $( if let Some(c) = &self.$key { kind::check_files::<$module::$kind>(c, base_dir)?; } )*
                Ok(())
            }

            fn build(&self, ctx: &BuildContext<'_>, out: &mut Vec<Arc<dyn Monitor>>) {
                $( out.extend(kind::build::<$module::$kind>(self.$key.as_ref(), ctx)); )*
            }
        }
    };
}

// The registry: `<folder>::<MonitorKind> as <key under custom_monitors:>`.
monitor_kinds! {
    terraform::TerraformKind as terraform_state,
    certificates::CertificateKind as certificate_expiry,
    backups::BackupKind as backup_validation,
    zfs::ZfsKind as zfs_scrub,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    // Every registered kind gets `enabled` and `--interval` the same way.
    #[test]
    fn enabled_and_interval_apply_to_every_kind() {
        let text = "custom_monitors:\n  terraform_state:\n    state_files: [a.tfstate]\n  certificate_expiry:\n    paths: [certs/]\n  backup_validation:\n    enabled: false\n  zfs_scrub:\n    status_files: [zpool.txt]\n";
        let file = crate::core::config::parse(text, Path::new("c.yaml")).unwrap();
        let config = Config {
            file,
            base_dir: ".".into(),
            source: None,
        };
        let ov = Overrides {
            interval: Some(Duration::from_secs(7)),
            ..Overrides::default()
        };
        let built = build(&config, &ov);
        let names: Vec<&str> = built.iter().map(|m| m.name()).collect();
        assert_eq!(
            names,
            vec!["terraform_state", "certificate_expiry", "zfs_scrub"]
        );
        for m in &built {
            assert_eq!(m.check_interval(), Duration::from_secs(7), "{}", m.name());
        }
        // Without --interval each keeps its own default.
        let built = build(&config, &Overrides::default());
        let intervals: Vec<u64> = built.iter().map(|m| m.check_interval().as_secs()).collect();
        assert_eq!(intervals, vec![300, 3600, 300]);
    }

    // The parser does no I/O: policy files are checked when the config is
    // loaded for use (with the key's line), not by `parse`.
    #[test]
    fn policy_files_are_checked_by_load_not_by_parse() {
        let text = "custom_monitors:\n  terraform_state:\n    state_files: [s.tfstate]\n    policies: [nope.rego]\n";
        assert!(crate::core::config::parse(text, Path::new("c.yaml")).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, text).unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.contains("nope.rego"), "{e}");
        assert!(e.contains("line 4"), "{e}");
        assert!(
            e.contains("key `custom_monitors.terraform_state.policies`"),
            "{e}"
        );
        std::fs::write(
            dir.path().join("ok.rego"),
            "package ok\nimport rego.v1\n\ndeny contains msg if {\n  false\n  msg := \"x\"\n}\n",
        )
        .unwrap();
        std::fs::write(&path, text.replace("nope.rego", "ok.rego")).unwrap();
        assert!(Config::load(&path).is_ok());
    }
}

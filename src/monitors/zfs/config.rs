//! `custom_monitors.zfs_scrub`: files holding `zpool status` output.

use std::time::Duration;

use crate::core::config::values::{monitor_config, HumanDuration};
use crate::monitors::kind::ConfigIssue;

monitor_config! {
    /// `custom_monitors.zfs_scrub`.
    pub struct ZfsConfig {
        default check_interval: Duration::from_secs(300);
        /// Files a cron job writes with `zpool status` output, relative to
        /// the config file's folder (one file per host; every pool in it is read).
        #[serde(default)]
        pub status_files: Vec<String>,
        /// Exported as `zfs_pool_scrub_max_age_seconds`; an older finished
        /// scrub (or none) is a finding.
        #[serde(default = "default_max_scrub_age")]
        pub max_scrub_age: HumanDuration,
        /// IANA zone of the dates `zpool status` prints (the host's local
        /// time, without a zone); default: the exporter's local zone.
        #[serde(default)]
        pub timezone: Option<String>,
    }
}

fn default_max_scrub_age() -> HumanDuration {
    HumanDuration(Duration::from_secs(35 * 86400))
}

/// Checks serde cannot express (no I/O). Keys are below `zfs_scrub`.
pub fn validate(cfg: &ZfsConfig) -> Result<(), ConfigIssue> {
    let mut seen = std::collections::HashSet::new();
    for (i, f) in cfg.status_files.iter().enumerate() {
        if f.trim().is_empty() {
            return Err((
                "status_files".into(),
                format!("status_files[{i}] is empty; give the file the cron job writes"),
            ));
        }
        if !seen.insert(f.as_str()) {
            return Err((
                "status_files".into(),
                format!("status_files[{i}] ({f}) is listed twice"),
            ));
        }
    }
    if cfg.max_scrub_age.0.is_zero() {
        return Err((
            "max_scrub_age".into(),
            "max_scrub_age must be longer than zero".into(),
        ));
    }
    if let Some(tz) = &cfg.timezone {
        if jiff::tz::TimeZone::get(tz.trim()).is_err() {
            return Err((
                "timezone".into(),
                "unknown time zone; use an IANA name such as `UTC` or `Europe/Berlin`".into(),
            ));
        }
    }
    Ok(())
}

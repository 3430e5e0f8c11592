//! [`MonitorKind`]: what a monitor tells the core about its config block, so
//! that loading, checking and building work the same way for every monitor.
//!
//! The core reads `custom_monitors.<KEY>` into `Config`, checks it with
//! [`MonitorKind::validate`] (no I/O) and, when the config is loaded for use,
//! [`MonitorKind::check_files`]. The registry ([`super::build`]) then applies
//! `enabled` and `--interval` and calls [`MonitorKind::build`].

use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::core::config::values::MonitorSchedule;
use crate::core::monitor::Monitor;

use super::Overrides;

pub use crate::core::config::values::ConfigIssue;

/// What a monitor is built with.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    /// The folder relative paths are resolved against (the config file's folder).
    pub base_dir: &'a Path,
    /// Command-line overrides (`--interval` is already applied to the config).
    pub overrides: &'a Overrides,
}

/// One kind of monitor, registered with one line in [`super`]'s `monitor_kinds!`.
pub trait MonitorKind {
    /// Its key under `custom_monitors:` (also the `monitor` label).
    const KEY: &'static str;

    /// Its config block, declared with `monitor_config!` (shared schedule
    /// fields, unknown keys refused).
    type Config: MonitorSchedule + DeserializeOwned + Clone + std::fmt::Debug;

    /// Cross-field checks serde cannot express. No I/O: the parser runs it.
    /// The key of an issue is below the monitor's block.
    fn validate(_cfg: &Self::Config) -> Result<(), ConfigIssue> {
        Ok(())
    }

    /// Checks that read files the block names (e.g. policies compile), run
    /// when the config is loaded for use, never by the parser.
    fn check_files(_cfg: &Self::Config, _base_dir: &Path) -> Result<(), ConfigIssue> {
        Ok(())
    }

    /// The block after command-line overrides other than `--interval`
    /// (default: as written).
    fn effective(cfg: Option<&Self::Config>, _overrides: &Overrides) -> Option<Self::Config> {
        cfg.cloned()
    }

    /// The running monitor.
    fn build(cfg: Self::Config, ctx: &BuildContext<'_>) -> Arc<dyn Monitor>;
}

/// The checks every block gets, then the kind's own; keys get the block's prefix.
pub(crate) fn validate<K: MonitorKind>(cfg: &K::Config) -> Result<(), ConfigIssue> {
    let key = |k: &str| format!("custom_monitors.{}.{k}", K::KEY);
    if cfg.check_interval().is_zero() {
        return Err((
            key("check_interval"),
            "check_interval must be longer than zero (it is also the cache lifetime)".into(),
        ));
    }
    K::validate(cfg).map_err(|(k, m)| (key(&k), m))
}

pub(crate) fn check_files<K: MonitorKind>(
    cfg: &K::Config,
    base_dir: &Path,
) -> Result<(), ConfigIssue> {
    K::check_files(cfg, base_dir).map_err(|(k, m)| (format!("custom_monitors.{}.{k}", K::KEY), m))
}

/// The block after overrides, if enabled, with `--interval` applied.
pub(crate) fn configure<K: MonitorKind>(
    cfg: Option<&K::Config>,
    overrides: &Overrides,
) -> Option<K::Config> {
    let mut cfg = K::effective(cfg, overrides).filter(|c| c.enabled())?;
    if let Some(i) = overrides.interval {
        cfg.set_check_interval(i);
    }
    Some(cfg)
}

pub(crate) fn build<K: MonitorKind>(
    cfg: Option<&K::Config>,
    ctx: &BuildContext<'_>,
) -> Option<Arc<dyn Monitor>> {
    configure::<K>(cfg, ctx.overrides).map(|c| K::build(c, ctx))
}

/// `a == b` in a const context (the registry checks each field name is its kind's key).
pub(crate) const fn same_key(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

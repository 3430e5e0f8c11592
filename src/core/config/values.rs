//! Shared config value types every monitor's config uses: durations, sizes,
//! globs, `host:port`, and the schedule fields of a monitor block.
//!
//! This module is a leaf: it imports no monitor, so a monitor's `config.rs`
//! can use it without a cycle back into the core.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// A duration written as humantime (`"5m"`, `"1d 2h"`) or as a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

// Visitors (not an untagged enum): the value is checked while its YAML scalar
// is current, so an error names the line of the key itself, not the first key
// of the mapping around it.
impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"5m\", \"26h\" or a number of seconds")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Ok(HumanDuration(Duration::from_secs(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                u64::try_from(v)
                    .map(|v| HumanDuration(Duration::from_secs(v)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                parse_duration(v).map(HumanDuration).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parse `"300"` (seconds) or a humantime duration (`"5m"`, `"26h"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("invalid duration {t:?} ({e}); write it like \"30s\", \"5m\", \"26h\" or \"1d\"")
    })
}

impl fmt::Display for HumanDuration {
    /// "26h", "7 days" (not humantime's "1day 2h"); humantime's form only when the
    /// short one would round (e.g. 2 days 3h 4m).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let natural = crate::cli::report::human_duration(self.0);
        if parse_duration(&natural) == Ok(self.0) {
            f.write_str(&natural)
        } else {
            write!(f, "{}", humantime::format_duration(self.0))
        }
    }
}

/// A byte size: a number of bytes or `"512MiB"`, `"1GiB"`, `"10MB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"512MiB\", \"1GiB\" or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_size(v).map(ByteSize).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {t:?}; write it like \"512MiB\" or \"1GiB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {t:?}; use B, KiB, MiB, GiB (or KB, MB, GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {t:?} is too large"))
}

/// `Deserialize` for a type checked by `TryFrom<String>`, through a visitor
/// (not `#[serde(try_from = "String")]`): the check runs while the YAML scalar
/// is current, so an error names the value's own line, not the line of the
/// first key of the mapping around it.
macro_rules! deserialize_via_try_from_string {
    ($t:ty, $expecting:literal) => {
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $t;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter) -> ::std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$t, E> {
                        <$t>::try_from(v.to_string()).map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}
pub(crate) use deserialize_via_try_from_string;

/// A validated glob pattern (checked at load).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobPattern(pub String);

deserialize_via_try_from_string!(GlobPattern, "a path or glob pattern");

impl TryFrom<String> for GlobPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("empty path pattern".into());
        }
        glob::Pattern::new(&s).map_err(|e| format!("invalid glob pattern {s:?}: {e}"))?;
        Ok(GlobPattern(s))
    }
}

/// Split `host:port` (`[v6]:port` for IPv6). The message never quotes more than the address.
pub fn split_host_port(address: &str) -> Result<(String, u16), String> {
    let bad = || {
        format!("endpoint address {address:?} must be host:port (e.g. \"grafana.lan:443\", \"[::1]:8443\")")
    };
    let (host, port) = address.trim().rsplit_once(':').ok_or_else(bad)?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']').ok_or_else(bad)?,
        None if host.contains(':') => return Err(bad()),
        None => host,
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// A problem found after parsing: the dotted key (below the monitor's block
/// when a `MonitorKind` returns it) and what is wrong.
pub type ConfigIssue = (String, String);

/// `true`, for `#[serde(default = "...")]`.
pub(crate) fn yes() -> bool {
    true
}

/// Default `retry_interval` of a monitor block.
pub(crate) fn default_retry() -> HumanDuration {
    HumanDuration(Duration::from_secs(15))
}

/// Default `timeout` of a monitor block.
pub(crate) fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

/// The schedule fields every `custom_monitors.<key>` block has.
pub trait MonitorSchedule {
    /// `enabled: false` turns the monitor off without deleting its block.
    fn enabled(&self) -> bool;
    /// `check_interval`: re-check period (also the cache lifetime).
    fn check_interval(&self) -> Duration;
    /// `--interval` overrides `check_interval`.
    fn set_check_interval(&mut self, interval: Duration);
}

/// Declare a monitor's config block: the struct gets the shared schedule
/// fields first (`enabled`, `check_interval`, `retry_interval`, `timeout`),
/// then its own. serde cannot `flatten` into a struct that denies unknown
/// keys, so the fields are written in by this macro instead of copied.
///
/// ```ignore
/// monitor_config! {
///     /// `custom_monitors.zfs_scrub`.
///     pub struct ZfsConfig {
///         default check_interval: Duration::from_secs(3600);
///         /// Files written by `zpool status > FILE`.
///         #[serde(default)]
///         pub status_files: Vec<String>,
///     }
/// }
/// ```
///
/// It also defines `default_check_interval()` in the calling module (one
/// monitor block per `config.rs`).
macro_rules! monitor_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            default check_interval: $default:expr;
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        fn default_check_interval() -> $crate::core::config::values::HumanDuration {
            $crate::core::config::values::HumanDuration($default)
        }

        $(#[$meta])*
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// `false` turns the monitor off without deleting its block.
            #[serde(default = "crate::core::config::values::yes")]
            pub enabled: bool,
            /// Re-check period and cache TTL.
            #[serde(default = "default_check_interval")]
            pub check_interval: $crate::core::config::values::HumanDuration,
            /// How soon a failed read is retried (capped at check_interval).
            #[serde(default = "crate::core::config::values::default_retry")]
            pub retry_interval: $crate::core::config::values::HumanDuration,
            /// How long a scrape waits for this monitor before serving its last values.
            #[serde(default = "crate::core::config::values::default_timeout")]
            pub timeout: $crate::core::config::values::HumanDuration,
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            /// The shared schedule fields, as the registry uses them.
            pub fn cadence(&self) -> $crate::core::monitor::Cadence {
                $crate::core::monitor::Cadence {
                    check_interval: self.check_interval.0,
                    retry_interval: self.retry_interval.0,
                    timeout: self.timeout.0,
                }
            }
        }

        impl $crate::core::config::values::MonitorSchedule for $name {
            fn enabled(&self) -> bool {
                self.enabled
            }
            fn check_interval(&self) -> ::std::time::Duration {
                self.check_interval.0
            }
            fn set_check_interval(&mut self, interval: ::std::time::Duration) {
                self.check_interval = $crate::core::config::values::HumanDuration(interval);
            }
        }
    };
}
pub(crate) use monitor_config;

//! Command-line interface. Every flag can also be set from an environment
//! variable (`HOMELAB_MONITOR_*`). The modes live in [`app`], the one-shot
//! reports in [`report`], `render` in [`render`].

pub mod app;
pub mod render;
pub mod report;
pub mod textfile;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::cli::report::ReportFormat;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Parse `--interval`: seconds (`300`) or humantime (`5m`).
fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = crate::core::config::parse_duration(s)?;
    if d.is_zero() {
        return Err("the interval must be longer than zero".into());
    }
    Ok(d)
}

/// Parse `--clock.fixed`: an RFC 3339 time.
fn parse_time(s: &str) -> Result<std::time::SystemTime, String> {
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
        .map_err(|e| format!("invalid time {s:?} ({e}); use RFC 3339 like 2026-01-01T00:00:00Z"))
}

/// Prometheus exporter for Terraform/OpenTofu state drift, TLS certificate
/// expiry and backup freshness.
///
/// Modes: no mode flag (or --watch) serves /metrics; --state-file checks one
/// state once and exits 0 (clean), 2 (findings) or 1 (error); --status prints
/// every configured monitor's targets once; --once writes the /metrics
/// exposition once (--output FILE for node_exporter's textfile collector).
#[derive(Debug, Clone, Parser)]
#[command(name = "homelab-monitor", version, about, long_about)]
pub struct Cli {
    /// Configuration file (monitoring-config.yaml). Without one, *.tfstate files
    /// under the working directory are discovered.
    #[arg(
        long,
        value_name = "FILE",
        env = "HOMELAB_MONITOR_CONFIG",
        global = true
    )]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,

    /// Check this state file once, print a report and exit (0 clean, 2 findings, 1 error).
    #[arg(
        long = "state-file",
        value_name = "FILE",
        env = "HOMELAB_MONITOR_STATE_FILE"
    )]
    pub state_file: Option<PathBuf>,

    /// Watch every *.tfstate under this folder (recursive); replaces the config's targets.
    #[arg(
        long = "state-dir",
        value_name = "DIR",
        env = "HOMELAB_MONITOR_STATE_DIR",
        value_delimiter = ','
    )]
    pub state_dir: Vec<PathBuf>,

    /// Serve the exporter and re-check every --interval in the background,
    /// logging one structured event per detected change.
    #[arg(long, env = "HOMELAB_MONITOR_WATCH")]
    pub watch: bool,

    /// Re-check period for every monitor: seconds (300) or a duration (5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_interval, env = "HOMELAB_MONITOR_INTERVAL")]
    pub interval: Option<Duration>,

    /// Print every configured monitor's targets, health and last result once, then exit.
    #[arg(long, env = "HOMELAB_MONITOR_STATUS", conflicts_with = "state_file")]
    pub status: bool,

    /// Collect every configured monitor once, write the whole /metrics
    /// exposition (Prometheus text format) to --output or stdout, and exit
    /// 0 (clean), 2 (findings) or 1 (error, or the file could not be written).
    /// For node_exporter's textfile collector.
    #[arg(
        long,
        env = "HOMELAB_MONITOR_ONCE",
        conflicts_with_all = ["state_file", "status", "watch"]
    )]
    pub once: bool,

    /// With --once: write the exposition to this file atomically (a temporary
    /// file in the same folder, renamed over it; mode 0644), e.g.
    /// /var/lib/node_exporter/textfile/homelab.prom. `-` or none: stdout.
    #[arg(
        long,
        value_name = "FILE",
        env = "HOMELAB_MONITOR_OUTPUT",
        requires = "once"
    )]
    pub output: Option<PathBuf>,

    /// Output format of --state-file and --status.
    #[arg(
        long,
        value_enum,
        default_value = "table",
        env = "HOMELAB_MONITOR_FORMAT"
    )]
    pub format: ReportFormat,

    /// Address to listen on (`host:port`, or `:port` for all interfaces).
    #[arg(
        long = "web.listen-address",
        value_name = "ADDR",
        default_value = "127.0.0.1:9877",
        env = "HOMELAB_MONITOR_WEB_LISTEN_ADDRESS"
    )]
    pub listen_address: String,

    /// Path under which to expose metrics.
    #[arg(
        long = "web.telemetry-path",
        value_name = "PATH",
        default_value = "/metrics",
        env = "HOMELAB_MONITOR_WEB_TELEMETRY_PATH"
    )]
    pub telemetry_path: String,

    /// TLS and basic-auth configuration (Prometheus exporter-toolkit format);
    /// re-read when it changes.
    #[arg(
        long = "web.config.file",
        value_name = "FILE",
        env = "HOMELAB_MONITOR_WEB_CONFIG_FILE"
    )]
    pub web_config_file: Option<PathBuf>,

    /// How long a scrape (or the status page) waits for a monitor's first
    /// collection when Prometheus sends no X-Prometheus-Scrape-Timeout-Seconds.
    /// Monitors that have values are always answered from memory at once.
    #[arg(
        long = "web.first-scrape-wait",
        value_name = "DURATION",
        default_value = "5s",
        value_parser = crate::core::config::parse_duration,
        env = "HOMELAB_MONITOR_WEB_FIRST_SCRAPE_WAIT"
    )]
    pub first_scrape_wait: Duration,

    /// Most client connections open at once; at the limit the least active
    /// connection is closed to make room (see README "Security and reliability").
    #[arg(
        long = "web.max-connections",
        value_name = "N",
        default_value_t = crate::server::DEFAULT_MAX_CONNECTIONS,
        value_parser = clap::value_parser!(u32).range(1..),
        env = "HOMELAB_MONITOR_WEB_MAX_CONNECTIONS"
    )]
    pub web_max_connections: u32,

    /// This replica's shard (0 to --total-shards - 1): it reads and exports only
    /// the targets whose key hashes to it (README "Sharding").
    #[arg(long, value_name = "N", env = "HOMELAB_MONITOR_SHARD")]
    pub shard: Option<u32>,

    /// Number of replicas the targets are split between (default 1: all targets).
    #[arg(
        long = "total-shards",
        value_name = "M",
        env = "HOMELAB_MONITOR_TOTAL_SHARDS"
    )]
    pub total_shards: Option<u32>,

    /// StatefulSet pod name (downward API metadata.name): the shard is its ordinal
    /// (`homelab-monitor-2` is shard 2); without --total-shards the total is the
    /// pod's StatefulSet's replicas, read and watched through the Kubernetes API.
    #[arg(long, value_name = "NAME", env = "HOMELAB_MONITOR_POD")]
    pub pod: Option<String>,

    /// The pod's namespace (downward API metadata.namespace); logged with the shard.
    #[arg(
        long = "pod-namespace",
        value_name = "NS",
        env = "HOMELAB_MONITOR_POD_NAMESPACE"
    )]
    pub pod_namespace: Option<String>,

    /// Kubeconfig for reading the StatefulSet (--pod without --total-shards)
    /// outside a cluster; default: the pod's service account.
    #[arg(
        long = "kubeconfig",
        value_name = "FILE",
        env = "HOMELAB_MONITOR_KUBECONFIG"
    )]
    pub kubeconfig: Option<PathBuf>,

    /// Log level.
    #[arg(
        long = "log.level",
        value_enum,
        global = true,
        default_value = "info",
        env = "HOMELAB_MONITOR_LOG_LEVEL"
    )]
    pub log_level: LogLevel,

    /// Log format: text for people, json for Loki and friends.
    #[arg(
        long = "log.format",
        value_enum,
        global = true,
        default_value = "text",
        env = "HOMELAB_MONITOR_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    /// Freeze the clock at this time (tests and golden files).
    #[arg(long = "clock.fixed", value_name = "RFC3339", value_parser = parse_time, env = "HOMELAB_MONITOR_CLOCK_FIXED", hide = true)]
    pub clock_fixed: Option<std::time::SystemTime>,
}

/// Subcommands (the exporter itself needs none).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Render prometheus.yml, alertmanager.yml and Grafana provisioning from
    /// the config's `monitoring:` block into --out DIR.
    Render(crate::cli::render::RenderArgs),
    /// Run `terraform plan -refresh-only` in each working directory of
    /// `custom_monitors.terraform_state.drift_runner` (or --dir) and write the
    /// drift reports the exporter reads.
    Drift(crate::monitors::terraform::drift_runner::DriftArgs),
}

impl Cli {
    /// The shard from --shard/--total-shards/--pod, validated.
    pub fn shard(&self) -> Result<crate::core::shard::Shard, crate::core::shard::ShardError> {
        crate::core::shard::Shard::from_flags(self.shard, self.total_shards, self.pod.as_deref())
    }

    /// What the sharding flags ask for (--pod alone: the total from the StatefulSet).
    pub fn shard_plan(
        &self,
    ) -> Result<crate::core::shard::ShardPlan, crate::core::shard::ShardError> {
        crate::core::shard::Shard::plan(self.shard, self.total_shards, self.pod.as_deref())
    }

    /// The listen address with the `:port` shorthand expanded.
    pub fn listen_address(&self) -> String {
        if self.listen_address.starts_with(':') {
            format!("0.0.0.0{}", self.listen_address)
        } else {
            self.listen_address.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_invocations_parse() {
        let c = Cli::try_parse_from([
            "homelab-monitor",
            "--state-file",
            "terraform/terraform.tfstate",
            "--config",
            "monitoring-config.yaml",
        ])
        .unwrap();
        assert_eq!(
            c.state_file.unwrap(),
            PathBuf::from("terraform/terraform.tfstate")
        );
        let c = Cli::try_parse_from([
            "homelab-monitor",
            "--watch",
            "--interval",
            "300",
            "--state-dir",
            "terraform/",
        ])
        .unwrap();
        assert!(c.watch);
        assert_eq!(c.interval, Some(Duration::from_secs(300)));
        assert_eq!(c.state_dir, vec![PathBuf::from("terraform/")]);
        let c = Cli::try_parse_from(["homelab-monitor", "--status"]).unwrap();
        assert!(c.status);
        let c = Cli::try_parse_from([
            "homelab-monitor",
            "--interval",
            "5m",
            "--web.listen-address",
            ":9000",
        ])
        .unwrap();
        assert_eq!(c.interval, Some(Duration::from_secs(300)));
        assert_eq!(c.listen_address(), "0.0.0.0:9000");
        assert!(Cli::try_parse_from(["homelab-monitor", "--interval", "0"]).is_err());
        assert!(Cli::try_parse_from(["homelab-monitor", "--status", "--state-file", "x"]).is_err());
    }

    #[test]
    fn shard_flags_parse_and_validate() {
        let c = Cli::try_parse_from(["homelab-monitor", "--shard", "1", "--total-shards", "3"])
            .unwrap();
        assert_eq!(c.shard(), crate::core::shard::Shard::new(1, 3));
        let c = Cli::try_parse_from([
            "homelab-monitor",
            "--pod",
            "homelab-monitor-2",
            "--pod-namespace",
            "monitoring",
            "--total-shards",
            "3",
        ])
        .unwrap();
        assert_eq!(c.shard(), crate::core::shard::Shard::new(2, 3));
        assert_eq!(c.pod_namespace.as_deref(), Some("monitoring"));
        let c = Cli::try_parse_from(["homelab-monitor"]).unwrap();
        assert_eq!(c.shard(), Ok(crate::core::shard::Shard::default()));
        assert!(Cli::try_parse_from(["homelab-monitor", "--shard", "-1"]).is_err());
    }
}

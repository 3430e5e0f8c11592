//! Wiring of the modes: serve (optionally `--watch`), `--state-file`, `--status`,
//! `--once` (the exposition once, for node_exporter's textfile collector).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cli::report::{snapshot_report, Layout};
use crate::cli::Cli;
use crate::core::clock::{FixedClock, SharedClock, SystemClock};
use crate::core::config::{Config, ConfigError};
use crate::core::monitor::CollectContext;
use crate::core::registry::Registry;
use crate::monitors::{self, Overrides};
use crate::server::web_config::{WebConfigError, WebConfigWatcher};
use crate::server::{self, ServerConfig};

/// Start-up failures (everything later is per target and never fatal).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The OS error is in the message only (not a `source`), so that a
    /// rendered error chain does not print it twice.
    #[error("cannot listen on {addr}: {error}; pick another --web.listen-address")]
    Listen { addr: String, error: std::io::Error },
    #[error(transparent)]
    WebConfig(#[from] WebConfigError),
    #[error("{0}")]
    Usage(String),
    #[error("the check failed: {0}")]
    Check(String),
    #[error(transparent)]
    Output(#[from] crate::cli::textfile::TextfileError),
    #[error("encoding the metrics failed: {0}")]
    Encode(std::fmt::Error),
}

impl AppError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            AppError::Config(c) => c.metric_label(),
            AppError::Listen { .. } => "listen",
            AppError::WebConfig(w) => w.metric_label(),
            AppError::Usage(_) => "usage",
            AppError::Check(_) => "check",
            AppError::Output(_) => "output",
            AppError::Encode(_) => "encode",
        }
    }
}

fn clock(cli: &Cli) -> SharedClock {
    match cli.clock_fixed {
        Some(t) => Arc::new(FixedClock(t)),
        None => Arc::new(SystemClock),
    }
}

/// The file `--status` reads from the working directory when no --config is given.
pub const DEFAULT_CONFIG: &str = "monitoring-config.yaml";

/// The config: --config; for `--status` without one, `monitoring-config.yaml`
/// in the working directory when there is one; else discovery.
fn load_config(cli: &Cli) -> Result<Config, AppError> {
    match &cli.config {
        Some(p) => Ok(Config::load(p)?),
        None if cwd_config(cli) => Ok(Config::load(Path::new(DEFAULT_CONFIG))?),
        None => Ok(Config::discovery(PathBuf::from("."))),
    }
}

/// `--status` with no --config (and no --state-dir) in a folder that has a
/// `monitoring-config.yaml`: that file is the config.
fn cwd_config(cli: &Cli) -> bool {
    cli.status
        && cli.config.is_none()
        && cli.state_dir.is_empty()
        && Path::new(DEFAULT_CONFIG).is_file()
}

fn overrides(cli: &Cli) -> Overrides {
    Overrides {
        state_dirs: cli
            .state_dir
            .iter()
            .map(|p| p.to_string_lossy().to_string())
            .collect(),
        state_files: cli
            .state_file
            .iter()
            .map(|p| p.to_string_lossy().to_string())
            .collect(),
        interval: cli.interval,
    }
}

/// Run the mode selected by `cli`; returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32, AppError> {
    if let Some(crate::cli::Command::Render(args)) = &cli.command {
        return render(&cli, args);
    }
    if let Some(crate::cli::Command::Drift(args)) = &cli.command {
        return drift(&cli, args).await;
    }
    let plan = cli
        .shard_plan()
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let config = load_config(&cli)?;
    if let Some(src) = &config.source {
        tracing::info!(config = %src.display(), "configuration loaded");
    } else if cli.state_file.is_none() && cli.state_dir.is_empty() {
        tracing::info!("no --config given: discovering *.tfstate under the working directory");
    }
    let clock = clock(&cli);
    let ov = overrides(&cli);
    if cli.state_file.is_some() {
        return one_shot_state(&cli, &config, &ov, &clock).await;
    }
    // The one-shot --state-file check reads its one file whatever the shard.
    let shard = match plan {
        crate::core::shard::ShardPlan::Fixed(shard) => {
            crate::core::shard::install(shard);
            shard
        }
        // Issue 19: the total from the pod's StatefulSet, followed at run time;
        // no total known at start-up: refuse to start (never an empty shard).
        crate::core::shard::ShardPlan::FromStatefulSet { index, pod } => {
            crate::core::shard_kube::start(
                &pod,
                index,
                cli.pod_namespace.as_deref(),
                cli.kubeconfig.as_deref(),
            )
            .await
            .map_err(|e| AppError::Usage(e.to_string()))?
        }
    };
    if shard.total() > 1 {
        tracing::info!(
            shard = shard.index(),
            total_shards = shard.total(),
            pod = cli.pod.as_deref().unwrap_or(""),
            namespace = cli.pod_namespace.as_deref().unwrap_or(""),
            "sharded: this replica reads and exports only its part of the targets"
        );
    }
    let monitors = monitors::build(&config, &ov);
    if monitors.is_empty() {
        tracing::warn!(
            "no monitor is enabled; /metrics will only carry the exporter's own metrics"
        );
    }
    let registry = Arc::new(Registry::new(monitors, clock));
    if cli.status {
        return Ok(status(&cli, &registry).await);
    }
    if cli.once {
        return once(&cli, &registry).await;
    }
    // `/probe` (opt-in: certificate_expiry `modules:` or `probe:`).
    let probe = config
        .file
        .custom_monitors
        .certificate_expiry
        .as_ref()
        .and_then(|c| {
            crate::monitors::certificates::modules::ProbeService::from_config(c, &config.base_dir)
        })
        .map(Arc::new);
    serve(&cli, registry, probe).await
}

/// `render`: write the stack's config files from the `monitoring:` block.
fn render(cli: &Cli, args: &crate::cli::render::RenderArgs) -> Result<i32, AppError> {
    if cli.config.is_none() {
        return Err(AppError::Usage(
            "render needs --config monitoring-config.yaml".into(),
        ));
    }
    let config = load_config(cli)?;
    let files = crate::cli::render::render(config.file.monitoring.as_ref(), args)
        .and_then(|f| crate::cli::render::write(&args.out, &f).map(|()| f))
        .map_err(|e| AppError::Usage(e.to_string()))?;
    for (p, _) in &files {
        println!("{}", args.out.join(p).display());
    }
    Ok(0)
}

async fn one_shot_state(
    cli: &Cli,
    config: &Config,
    ov: &Overrides,
    clock: &SharedClock,
) -> Result<i32, AppError> {
    // Only the terraform monitor: the others' start-up warnings (a
    // certificate block without paths...) are not this mode's business.
    let only_terraform = Config {
        file: crate::core::config::ConfigFile {
            custom_monitors: monitors::CustomMonitors {
                terraform_state: config.file.custom_monitors.terraform_state.clone(),
                ..Default::default()
            },
            health_checks: None,
            ..config.file.clone()
        },
        ..config.clone()
    };
    let monitors = monitors::build(&only_terraform, ov);
    let tf = monitors
        .iter()
        .find(|m| m.name() == "terraform_state")
        .ok_or_else(|| AppError::Usage("the terraform monitor is not available".into()))?;
    let now = clock.now();
    let snap = tf
        .collect_complete(CollectContext { now })
        .await
        .map_err(|e| AppError::Check(e.to_string()))?;
    let report = snapshot_report(&[(tf.name(), &snap, false)], now, Layout::Detailed);
    print!("{}", report.render(cli.format));
    Ok(report.exit_code())
}

async fn status(cli: &Cli, registry: &Registry) -> i32 {
    let outcomes = registry.gather().await;
    let mut report = outcome_report(registry, &outcomes);
    let from_cwd = cwd_config(cli);
    if let serde_json::Value::Object(m) = &mut report.json {
        let config = match &cli.config {
            Some(p) => Some(p.to_string_lossy().to_string()),
            None if from_cwd => Some(DEFAULT_CONFIG.to_string()),
            None => None,
        };
        m.insert("config".into(), config.into());
    }
    if from_cwd && cli.format == crate::cli::report::ReportFormat::Table {
        println!("Config: {DEFAULT_CONFIG} (found in the working directory; no --config given)\n");
    }
    print!("{}", report.render(cli.format));
    report.exit_code()
}

/// `--once`: every monitor collected once, the exposition written to
/// --output (atomically) or stdout; the exit code of `--status`.
async fn once(cli: &Cli, registry: &Registry) -> Result<i32, AppError> {
    use crate::core::encoder::{encode_cached_part, encode_part, finish, Format};
    let outcomes = registry.gather().await;
    let report = outcome_report(registry, &outcomes);
    let snaps: Vec<Arc<crate::core::snapshot::Snapshot>> =
        outcomes.iter().map(|o| o.snapshot.clone()).collect();
    let mut body = encode_cached_part(snaps, Format::Classic).map_err(AppError::Encode)?;
    let own = encode_part(
        vec![Arc::new(registry.self_metrics(&outcomes))],
        Format::Classic,
    )
    .map_err(AppError::Encode)?;
    body.push_str(&own);
    finish(&mut body, Format::Classic).map_err(AppError::Encode)?;
    match cli.output.as_deref() {
        Some(path) if path != Path::new("-") => {
            crate::cli::textfile::write_atomic(path, body.as_bytes())?;
            tracing::info!(output = %path.display(), bytes = body.len(), "exposition written");
        }
        _ => print!("{body}"),
    }
    Ok(report.exit_code())
}

/// The `--status` report of `outcomes`, a failed monitor counted as an error
/// (and named on stderr).
fn outcome_report(
    registry: &Registry,
    outcomes: &[Arc<crate::core::registry::Outcome>],
) -> crate::cli::report::Report {
    let entries: Vec<(&str, &crate::core::snapshot::Snapshot, bool)> = outcomes
        .iter()
        .map(|o| (o.monitor, o.snapshot.as_ref(), o.stale))
        .collect();
    let mut report = snapshot_report(&entries, registry.clock().now(), Layout::Overview);
    for o in outcomes {
        if let Some(e) = o.error.as_ref().filter(|_| !o.success) {
            report.errors += 1;
            eprintln!(
                "monitor {} failed: {}",
                o.monitor,
                crate::core::telemetry::escape_controls(&e.to_string())
            );
        }
    }
    report
}

async fn serve(
    cli: &Cli,
    registry: Arc<Registry>,
    probe: Option<Arc<crate::monitors::certificates::modules::ProbeService>>,
) -> Result<i32, AppError> {
    let web = Arc::new(WebConfigWatcher::new(cli.web_config_file.clone())?);
    let addr = cli.listen_address();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|error| AppError::Listen {
            addr: addr.clone(),
            error,
        })?;
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
    let names: Vec<&str> = registry
        .entries()
        .iter()
        .map(|e| e.monitor().name())
        .collect();
    tracing::info!(address = %local, path = %cli.telemetry_path, monitors = ?names, watch = cli.watch, "listening");

    // First collection in the background: /readyz turns 200 when it is done.
    let warm = registry.clone();
    tokio::spawn(async move {
        warm.gather().await;
        tracing::info!("first collection done");
    });
    if cli.watch {
        let period = cli.interval.unwrap_or_else(|| {
            registry
                .entries()
                .iter()
                .map(|e| e.monitor().check_interval())
                .min()
                .unwrap_or(Duration::from_secs(300))
        });
        let w = registry.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                w.gather().await;
            }
        });
    }
    server::serve(
        listener,
        registry,
        ServerConfig {
            telemetry_path: cli.telemetry_path.clone(),
            first_scrape_wait: cli.first_scrape_wait,
            max_connections: cli.web_max_connections as usize,
            probe,
        },
        web,
        server::shutdown_signal(),
    )
    .await;
    Ok(0)
}

/// `drift`: plan the working directories and write their drift reports.
async fn drift(
    cli: &Cli,
    args: &crate::monitors::terraform::drift_runner::DriftArgs,
) -> Result<i32, AppError> {
    let config = load_config(cli)?;
    crate::monitors::terraform::drift_runner::run_command(&config, args)
        .await
        .map_err(|e| AppError::Usage(e.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_are_printed_once() {
        let e = AppError::Listen {
            addr: "127.0.0.1:9877".into(),
            error: std::io::Error::from_raw_os_error(98),
        };
        let text = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(text.matches("os error 98").count(), 1, "{text}");
    }
}

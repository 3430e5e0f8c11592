//! homelab-monitor: a Prometheus exporter for Terraform/OpenTofu state drift,
//! TLS certificate expiry and backup freshness.
//!
//! Layout (see README "Adding a monitor"):
//! - [`monitor`]: the `Monitor` trait every monitor implements.
//! - [`snapshot`]: the plain-value result of one collection (never secrets).
//! - [`registry`]: the monitors, each behind a single-flight TTL cache.
//! - [`encoder`]: the only place that knows the exposition formats.
//! - [`server`]: the HTTP endpoints.
//! - [`monitors`]: one folder per monitor.
//! - [`config`], [`cli`], [`report`], [`telemetry`], [`clock`].

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod encoder;
pub mod monitor;
pub mod monitors;
pub mod net;
pub mod registry;
pub mod remote;
pub mod render;
pub mod report;
pub mod safe_open;
pub mod server;
pub mod snapshot;
pub mod stamp;
pub mod status_page;
pub mod targets;
pub mod telemetry;
pub mod tls;
pub mod web_config;

/// The crate version, as exported in `homelab_monitor_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

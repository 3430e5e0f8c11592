//! homelab-monitor: a Prometheus exporter for Terraform/OpenTofu state drift,
//! TLS certificate expiry and backup freshness.
//!
//! Layout, one folder per layer (README "Source layout", "Adding a monitor"):
//! - [`cli`]: the command line: flags, the modes (`app`), one-shot reports, `render`.
//! - [`server`]: the HTTP endpoints, `--web.config.file`, the status page.
//! - [`core`]: what every monitor shares: the `Monitor` trait, snapshots,
//!   the registry and per-target scheduler, the encoder, config loading,
//!   clock, logging, safe file opens.
//! - [`net`]: the one HTTP client and TLS builder.
//! - [`remote`]: remote-state sources (HTTP, GitLab, S3, PostgreSQL, HCP).
//! - [`monitors`]: one folder per monitor.

pub mod cli;
pub mod core;
pub mod monitors;
pub mod net;
pub mod remote;
pub mod server;

/// The crate version, as exported in `homelab_monitor_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

//! The core every monitor shares: the [`monitor::Monitor`] trait, the
//! plain-value [`snapshot`]s monitors produce, the [`registry`] (single-flight,
//! stale-while-revalidate) and per-target scheduler ([`targets`]), the
//! [`encoder`] (the only code that knows the exposition formats), config
//! loading, the injected [`clock`], logging and safe file opens.

pub mod clock;
pub mod command;
pub mod compress;
pub mod config;
pub mod encoder;
pub mod monitor;
pub mod registry;
pub mod safe_open;
pub mod shard;
pub mod shard_kube;
pub mod snapshot;
pub mod stamp;
pub mod targets;
pub mod telemetry;

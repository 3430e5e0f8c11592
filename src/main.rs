//! `homelab-monitor`: parse the command line, start logging, run.

use std::process::ExitCode;

use clap::Parser;
use homelab_monitor::cli::{app, Cli};
use homelab_monitor::core::telemetry;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_level, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(app::run(cli));
    // Do not wait for blocking threads still stuck in a read (a stalled
    // filesystem): the process must end when asked to.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            let e = anyhow::Error::from(e);
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

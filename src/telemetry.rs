//! Logging (tracing) set-up: text or JSON to stderr.

use tracing_subscriber::EnvFilter;

use crate::cli::{LogFormat, LogLevel};

/// aws-config and the AWS SDK crates log raw HTTP requests and responses
/// (credentials among them) at debug/trace and in some warnings: errors only;
/// the exporter reports their failures itself.
const AWS_CAP: &str = "aws_config=error,aws_runtime=error,aws_sdk_sts=error,aws_sdk_sso=error,aws_sdk_ssooidc=error,aws_smithy_runtime=error,aws_smithy_runtime_api=error,aws_smithy_http_client=error,aws_smithy_types=error";

/// Install the global subscriber. `RUST_LOG`, when set, refines the level.
pub fn init(level: LogLevel, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{},{AWS_CAP}", level.as_str())));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true);
    let res = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    if let Err(e) = res {
        eprintln!("logging was already initialised: {e}");
    }
}

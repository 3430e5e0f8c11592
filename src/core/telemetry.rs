//! Logging (tracing) set-up: text or JSON to stderr.
//!
//! Two guarantees, whatever `--log.level` or `RUST_LOG` say:
//! - third-party crates (HTTP clients and servers, TLS, PostgreSQL, AWS signing,
//!   the policy engine...) never log below [`THIRD_PARTY_MAX`]: their debug and
//!   trace output dumps request/response headers and bodies (tokens, state
//!   contents). The cap is a second filter that no directive can lift;
//! - text logs escape control characters in field values and messages (a file
//!   name with a newline cannot forge a log line, ANSI escapes do not reach a
//!   terminal). JSON logs are escaped by the JSON encoder.

use tracing::{Level, Metadata};
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::filter::{EnvFilter, FilterExt, FilterFn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::cli::{LogFormat, LogLevel};

/// The most verbose level any crate other than this one may log at.
pub const THIRD_PARTY_MAX: Level = Level::WARN;

/// Whether an event or span with this metadata may be logged at all (before
/// the level filter): this crate at any level, everything else at most
/// [`THIRD_PARTY_MAX`].
pub fn allowed(meta: &Metadata<'_>) -> bool {
    allowed_target(meta.target(), *meta.level())
}

/// aws-config and the AWS SDK crates log raw HTTP requests and responses
/// (credentials among them) at debug/trace and in some warnings: errors only;
/// the exporter reports their failures itself.
const AWS_TARGETS: [&str; 1] = ["aws_"];

/// [`allowed`] on a target and level.
pub fn allowed_target(target: &str, level: Level) -> bool {
    let ours = target == "homelab_monitor" || target.starts_with("homelab_monitor::");
    if ours {
        return true;
    }
    // Level ordering in tracing: TRACE > DEBUG > INFO > WARN > ERROR (more verbose is greater).
    if AWS_TARGETS.iter().any(|p| target.starts_with(p)) {
        return level <= Level::ERROR;
    }
    level <= THIRD_PARTY_MAX
}

/// Escape control characters (C0, DEL, C1) as `\u{..}`; `\n`, `\r`, `\t` as
/// their usual escapes. Everything else is kept.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Events of this target carry list fields as JSON text ([`LIST_FIELDS`]).
pub const CHANGE_TARGET: &str = "homelab_monitor::change";

/// Fields of [`CHANGE_TARGET`] events holding a JSON array as text (tracing
/// records strings, numbers and booleans only): JSON logs carry them as real
/// arrays, text logs as the JSON text.
pub const LIST_FIELDS: [&str; 3] = ["added", "removed", "changed"];

/// The JSON log layer (one object per line) writing to `writer`.
pub fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    let inner = tracing_subscriber::fmt::format()
        .json()
        .with_ansi(false)
        .with_target(true)
        .flatten_event(true)
        .with_current_span(false);
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false)
        .json()
        .event_format(ListFields(inner))
}

/// The JSON event format, with [`LIST_FIELDS`] of change events turned from
/// JSON text into arrays.
struct ListFields<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for ListFields<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        if event.metadata().target() != CHANGE_TARGET {
            return self.0.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.0.format_event(
            ctx,
            tracing_subscriber::fmt::format::Writer::new(&mut line),
            event,
        )?;
        let Ok(serde_json::Value::Object(obj)) =
            serde_json::from_str::<serde_json::Value>(line.trim_end())
        else {
            return writer.write_str(&line);
        };
        // Replace each `"key":"<JSON text>"` by `"key":<the array>` in the
        // line itself, so the other keys keep their order.
        for key in LIST_FIELDS {
            let Some(serde_json::Value::String(text)) = obj.get(key) else {
                continue;
            };
            let Ok(list @ serde_json::Value::Array(_)) = serde_json::from_str(text) else {
                continue;
            };
            let (Ok(quoted_key), Ok(quoted)) =
                (serde_json::to_string(key), serde_json::to_string(text))
            else {
                continue;
            };
            let was = format!("{quoted_key}:{quoted}");
            if line.matches(&was).count() == 1 {
                line = line.replacen(&was, &format!("{quoted_key}:{list}"), 1);
            }
        }
        writer.write_str(&line)
    }
}

/// The level filter: `RUST_LOG` when set and valid, else `--log.level`.
fn env_filter(level: LogLevel) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level.as_str()))
}

/// Install the global subscriber. `RUST_LOG`, when set, refines the level
/// (for this crate only; see [`THIRD_PARTY_MAX`]).
pub fn init(level: LogLevel, format: LogFormat) {
    let filter = env_filter(level).and(FilterFn::new(allowed));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let res = match format {
        LogFormat::Text => {
            let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
                if field.name().starts_with("log.") {
                    // tracing-log's bookkeeping fields (the default formatter hides them too).
                    return Ok(());
                }
                let v = format!("{value:?}");
                let v = escape_controls(&v);
                if field.name() == "message" {
                    write!(w, "{v}")
                } else {
                    write!(w, "{}={v}", field.name())
                }
            })
            .delimited(" ");
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .with_target(true)
                .fmt_fields(fields)
                .with_filter(filter);
            tracing_subscriber::registry().with(layer).try_init()
        }
        LogFormat::Json => {
            let layer = json_layer(std::io::stderr).with_filter(filter);
            tracing_subscriber::registry().with(layer).try_init()
        }
    };
    if let Err(e) = res {
        eprintln!("logging was already initialised: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn third_party_targets_are_capped_whatever_the_level() {
        for t in [
            "hyper",
            "hyper_util::client",
            "h2::codec",
            "rustls::conn",
            "ureq::unversioned::transport::tcp",
            "ureq_proto",
            "reqwest::connect",
            "tokio_postgres::query",
            "postgres",
            "regorus",
            "log",
            "homelab_monitorx",
        ] {
            for l in [Level::TRACE, Level::DEBUG, Level::INFO] {
                assert!(!allowed_target(t, l), "{t} at {l}");
            }
            assert!(allowed_target(t, Level::WARN), "{t}");
            assert!(allowed_target(t, Level::ERROR), "{t}");
        }
        // AWS crates print raw exchanges even in warnings: errors only.
        for t in [
            "aws_sigv4::http_request::sign",
            "aws_credential_types",
            "aws_config::imds",
            "aws_smithy_runtime::client",
            "aws_sdk_sts",
        ] {
            for l in [Level::TRACE, Level::DEBUG, Level::INFO, Level::WARN] {
                assert!(!allowed_target(t, l), "{t} at {l}");
            }
            assert!(allowed_target(t, Level::ERROR), "{t}");
        }
        assert!(allowed_target("homelab_monitor", Level::TRACE));
        assert!(allowed_target(
            "homelab_monitor::monitors::terraform",
            Level::TRACE
        ));
    }

    /// A writer into a shared buffer, for the JSON layer.
    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn change_event_lists_are_json_arrays_in_json_logs() {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::registry().with(json_layer(move || w.clone()));
        tracing::subscriber::with_default(sub, || {
            tracing::info!(
                target: "homelab_monitor::change",
                event = "terraform_state_changed",
                added = %r#"["null_resource.new","a \"quoted\" one"]"#,
                removed = %"[]",
                changed = %r#"["aws_instance.web[0] (instance_type)"]"#,
                "terraform state changed"
            );
            // Other targets are left alone, even with a field of that name.
            tracing::info!(added = %r#"["x"]"#, "something else");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(
            v["added"],
            serde_json::json!(["null_resource.new", "a \"quoted\" one"]),
            "{text}"
        );
        assert_eq!(v["removed"], serde_json::json!([]));
        assert_eq!(
            v["changed"],
            serde_json::json!(["aws_instance.web[0] (instance_type)"])
        );
        assert_eq!(v["event"], "terraform_state_changed");
        assert_eq!(v["message"], "terraform state changed");
        assert_eq!(v["target"], "homelab_monitor::change");
        assert!(v["timestamp"].is_string() && v["level"] == "INFO", "{text}");
        // The fields keep their order (timestamp first, lists where they were).
        assert!(lines[0].starts_with("{\"timestamp\":"), "{text}");
        let pos = |k: &str| lines[0].find(&format!("\"{k}\":")).unwrap();
        assert!(
            pos("event") < pos("added") && pos("added") < pos("removed"),
            "{text}"
        );
        let other: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(other["added"], r#"["x"]"#);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain/ü.tfstate"), "plain/ü.tfstate");
        assert_eq!(
            escape_controls("a\nERROR forged\x1b[31m\u{9b}"),
            "a\\nERROR forged\\u{1b}[31m\\u{9b}"
        );
    }
}

//! `monitoring-config.yaml`: loading, validation and clear errors.
//!
//! The seed's file loads unchanged: its `monitoring:` block (the wider stack's
//! settings) is accepted as-is; `custom_monitors:` drives the exporter. Each
//! monitor owns its block's schema, defaults and checks (`monitors/<name>/config.rs`,
//! registered in `monitors/mod.rs`); this module parses the file (no I/O),
//! runs every block's checks and renders errors with file, line, key and a
//! did-you-mean. Shared value types are in [`values`]. Every struct denies
//! unknown keys, and every value is validated at load time, never at scrape time.

pub mod values;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::monitors::CustomMonitors;
use values::ConfigIssue;
pub use values::{parse_duration, split_host_port, ByteSize, GlobPattern, HumanDuration};
// Each monitor's block lives in its folder (`monitors/<name>/config.rs`);
// re-exported here for the paths callers already use.
pub use crate::monitors::backups::config::{
    BackupConfig, BackupFormat, BackupSourceConfig, TimeZoneName, VerifyMode,
};
pub use crate::monitors::certificates::config::{
    CertificateConfig, EndpointDetails, EndpointSpec, StartTls,
};
pub use crate::monitors::terraform::config::{
    GitlabBackendConfig, HcpBackendConfig, HttpAuth, HttpBackendConfig, PgBackendConfig,
    RemoteBackend, RemoteOptions, S3BackendConfig, SecretRef, TerraformConfig,
};

/// A configuration error, rendered as one message naming file, line, key and a fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The OS error is part of the message and deliberately not a `source()`:
    /// an error chain (`{:#}`) would print it twice.
    #[error("cannot read config file {path}: {error}; check the path given with --config")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Box<InvalidConfig>),
}

/// Where and why a config file is invalid.
#[derive(Debug)]
pub struct InvalidConfig {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub key: String,
    pub message: String,
    pub suggestion: Option<String>,
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render_invalid(
            &self.path,
            &self.line,
            &self.column,
            &self.key,
            &self.message,
            &self.suggestion,
        ))
    }
}

impl ConfigError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "read",
            ConfigError::Invalid(_) => "invalid",
        }
    }
}

fn render_invalid(
    path: &Path,
    line: &Option<usize>,
    column: &Option<usize>,
    key: &str,
    message: &str,
    suggestion: &Option<String>,
) -> String {
    let mut s = format!("invalid config file {}", path.display());
    if let Some(l) = line {
        s.push_str(&format!(", line {l}"));
        if let Some(c) = column {
            s.push_str(&format!(", column {c}"));
        }
    }
    if !key.is_empty() {
        s.push_str(&format!(", key `{key}`"));
    }
    s.push_str(": ");
    s.push_str(message);
    if let Some(sugg) = suggestion {
        s.push_str(&format!("; did you mean `{sugg}`?"));
    }
    s
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The wider stack's settings (Prometheus, Grafana, Alertmanager): accepted, not used by the exporter.
    #[serde(default)]
    pub monitoring: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    pub custom_monitors: CustomMonitors,
    /// Health checks (http, tcp, dns, disk, file_age, command); see `docs/health-checks.md`.
    #[serde(default)]
    pub health_checks: Option<crate::monitors::health::config::HealthChecksConfig>,
}

/// A loaded configuration and the folder its relative paths are resolved against.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: ConfigFile,
    /// The config file's folder (or the working directory without a config file).
    pub base_dir: PathBuf,
    /// Where it came from, for messages; `None` when running without a config file.
    pub source: Option<PathBuf>,
}

impl Config {
    /// No config file: discover `*.tfstate` under `base_dir`.
    pub fn discovery(base_dir: PathBuf) -> Self {
        let tf = TerraformConfig {
            state_dirs: vec![GlobPattern(".".into())],
            // A backend recorded in ./.terraform/terraform.tfstate is read too.
            working_dirs: vec![".".into()],
            ..TerraformConfig::default()
        };
        Config {
            file: ConfigFile {
                monitoring: None,
                custom_monitors: CustomMonitors {
                    terraform_state: Some(tf),
                    ..CustomMonitors::default()
                },
                health_checks: None,
            },
            base_dir,
            source: None,
        }
    }

    /// Load and validate a config file, including the files it names.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            crate::core::safe_open::read_to_string(path).map_err(|error| ConfigError::Read {
                path: path.to_path_buf(),
                error,
            })?;
        let file = parse(&text, path)?;
        let base_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // Files the blocks name (policies) exist and compile: checked here,
        // once the config is loaded for use, not by the parser.
        file.custom_monitors
            .check_files(&base_dir)
            .map_err(|issue| located(&text, path, issue))?;
        Ok(Config {
            file,
            base_dir,
            source: Some(path.to_path_buf()),
        })
    }
}

/// A check's issue as an error at the key's line.
fn located(text: &str, path: &Path, (key, message): ConfigIssue) -> ConfigError {
    ConfigError::Invalid(Box::new(InvalidConfig {
        path: path.to_path_buf(),
        line: line_of_key(text, &key),
        column: None,
        key,
        message,
        suggestion: None,
    }))
}

/// Parse config text and run every block's checks; `path` is only used in
/// messages. No I/O: files a block names (policies) are checked by [`Config::load`].
pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
    if text.trim().is_empty() {
        return Ok(ConfigFile::default());
    }
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let file: ConfigFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let inner = e.into_inner();
        let (line, column) = match inner.location() {
            Some(loc) => (Some(loc.line()), Some(loc.column())),
            None => (None, None),
        };
        let raw = strip_location(&inner.to_string());
        // serde_yaml_ng may prefix the message with the path already reported as `key`.
        let raw = match raw.strip_prefix(&format!("{key}: ")) {
            Some(rest) if !key.is_empty() => rest.to_string(),
            _ => raw,
        };
        let (message, suggestion) = explain(&raw);
        ConfigError::Invalid(Box::new(InvalidConfig {
            path: path.to_path_buf(),
            line,
            column,
            key,
            message,
            suggestion,
        }))
    })?;
    validate(&file).map_err(|issue| located(text, path, issue))?;
    Ok(file)
}

/// Cross-field checks that serde cannot express.
/// Cross-field checks that serde cannot express (no I/O).
fn validate(file: &ConfigFile) -> Result<(), ConfigIssue> {
    if let Some(h) = &file.health_checks {
        h.validate()
            .map_err(|(k, m)| (format!("health_checks.{k}"), m))?;
    }
    file.custom_monitors.validate()
}

/// Line of a dotted key such as `custom_monitors.backup_validation.sources[1].name`
/// (for checks that run after parsing and have no location). The path is
/// followed through block mappings and lists, so a key used in several places
/// (`name:`, `path:`) is found in its own entry; a path into a flow collection
/// (`{ ... }`, `[ ... ]`) or a scalar stops at that line. Falls back to the
/// first line with the last key's name.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    follow_path(&lines, key).or_else(|| {
        let leaf = key.rsplit('.').next()?.split('[').next()?;
        lines
            .iter()
            .position(|l| l.trim_start().starts_with(&format!("{leaf}:")))
            .map(|i| i + 1)
    })
}

fn follow_path(lines: &[&str], key: &str) -> Option<usize> {
    enum Step<'a> {
        Key(&'a str),
        Index(usize),
    }
    let mut steps = Vec::new();
    for part in key.split('.') {
        let mut it = part.split('[');
        steps.push(Step::Key(it.next()?));
        for idx in it {
            steps.push(Step::Index(idx.strip_suffix(']')?.parse().ok()?));
        }
    }
    let indent = |l: &str| l.len() - l.trim_start_matches(' ').len();
    let content = |l: &str| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    };
    // Where a line's key starts, after any `- ` list markers.
    fn key_col(l: &str) -> (usize, &str) {
        let indent = l.len() - l.trim_start_matches(' ').len();
        let mut col = indent;
        let mut rest = &l[col..];
        while let Some(r) = rest.strip_prefix("- ") {
            let r2 = r.trim_start_matches(' ');
            col += rest.len() - r2.len();
            rest = r2;
        }
        (col, rest)
    }
    // The block: lines after `from` (and `from` itself when it is a list
    // entry's first line) indented deeper than `parent`.
    let (mut from, mut parent, mut entry_line) = (0usize, None::<usize>, false);
    let mut found = None;
    for (n, step) in steps.iter().enumerate() {
        let block: Vec<usize> = (from..lines.len())
            .take_while(|&i| {
                (entry_line && i == from)
                    || content(lines[i])
                    || parent.is_none_or(|p| indent(lines[i]) > p)
            })
            .filter(|&i| !content(lines[i]))
            .collect();
        match step {
            Step::Key(k) => {
                let child = block
                    .iter()
                    .map(|&i| key_col(lines[i]))
                    .find(|(_, rest)| *rest != "-")?
                    .0;
                let i = block.iter().copied().find(|&i| {
                    let (col, rest) = key_col(lines[i]);
                    col == child
                        && rest
                            .strip_prefix(k)
                            .is_some_and(|r| r.trim_start().starts_with(':'))
                })?;
                found = Some(i);
                let value = key_col(lines[i]).1.split_once(':')?.1.trim();
                if n + 1 < steps.len() && !value.is_empty() && !value.starts_with('#') {
                    return Some(i + 1);
                }
                (from, parent, entry_line) = (i + 1, Some(key_col(lines[i]).0), false);
            }
            Step::Index(want) => {
                let dash = block.first().map(|&i| indent(lines[i]))?;
                let i = block
                    .iter()
                    .copied()
                    .filter(|&i| indent(lines[i]) == dash && lines[i].trim_start().starts_with('-'))
                    .nth(*want)?;
                found = Some(i);
                if key_col(lines[i]).1.starts_with(['{', '[']) {
                    return Some(i + 1);
                }
                (from, parent, entry_line) = (i, Some(dash), true);
            }
        }
    }
    found.map(|i| i + 1)
}

fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Turn a serde message into a user message and a did-you-mean. Quoted input
/// values are removed: a config may hold secrets (SMTP passwords...).
fn explain(raw: &str) -> (String, Option<String>) {
    // serde_yaml_ng prefixes the path ("a.b: unknown field ..."); drop it, the key is reported separately.
    let raw = match raw.find(": ") {
        Some(i) if !raw[..i].contains(' ') && raw[..i].contains('.') => &raw[i + 2..],
        _ => raw,
    };
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let unknown = rest.split('`').next().unwrap_or_default().to_string();
        let expected: Vec<&str> = rest
            .split('`')
            .skip(1)
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| s)
            .collect();
        let suggestion = expected
            .iter()
            .map(|k| (strsim::jaro_winkler(&unknown, k), *k))
            .filter(|(score, _)| *score > 0.75)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, k)| k.to_string());
        let valid = if expected.is_empty() {
            "no keys are allowed here".to_string()
        } else {
            format!("valid keys here: {}", expected.join(", "))
        };
        return (format!("unknown key `{unknown}` ({valid})"), suggestion);
    }
    (plain_words(&redact_quoted(raw)), None)
}

/// Where the program's own hint starts in a message (`write it like "30s", "5m"`,
/// `a duration such as "30s"`): its quoted examples are kept.
const HINT_MARKERS: [&str; 2] = ["write it like ", "such as "];

/// Replace `"..."` segments (input values, written with `{:?}`, so `\"` inside is
/// escaped) with `"…"`, up to the program's own hint (see [`HINT_MARKERS`]),
/// which is kept as it is. Markers are only looked for outside quotes.
pub(crate) fn redact_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    let mut escaped = false;
    for (i, c) in msg.char_indices() {
        if inside {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                out.push_str("…\"");
                inside = false;
            }
            continue;
        }
        if HINT_MARKERS.iter().any(|m| msg[i..].starts_with(m)) {
            out.push_str(&msg[i..]);
            return out;
        }
        out.push(c);
        if c == '"' {
            inside = true;
        }
    }
    out
}

/// serde's messages name Rust types (`expected struct HealthChecksConfig`,
/// `expected u32`); say what to write instead.
fn plain_words(msg: &str) -> String {
    static RULES: std::sync::LazyLock<Vec<(regex::Regex, &'static str)>> =
        std::sync::LazyLock::new(|| {
            [
                (r"missing field `", "missing key `"),
                (
                    r"\bexpected (?:tuple )?struct \w+",
                    "expected a mapping (`key: value` lines)",
                ),
                (r"\bexpected enum \w+", "expected one of the allowed values"),
                (
                    r"\bexpected (?:u8|u16|u32|u64|u128|usize)\b",
                    "expected a whole number (0 or more)",
                ),
                (
                    r"\bexpected (?:i8|i16|i32|i64|i128|isize)\b",
                    "expected a whole number",
                ),
                (r"\bexpected (?:f32|f64)\b", "expected a number"),
                (r"\bexpected a sequence\b", "expected a list"),
                (
                    r"\bexpected a map\b",
                    "expected a mapping (`key: value` lines)",
                ),
                (r"invalid type: map\b", "invalid type: a mapping"),
                (r"invalid type: sequence\b", "invalid type: a list"),
                (
                    r"invalid type: unit value\b",
                    "invalid type: an empty value",
                ),
                (
                    r"data did not match any variant of untagged enum \w+",
                    "the value has none of the accepted forms",
                ),
            ]
            .into_iter()
            .filter_map(|(re, to)| regex::Regex::new(re).ok().map(|r| (r, to)))
            .collect()
        });
    let mut out = msg.to_string();
    for (re, to) in RULES.iter() {
        out = re.replace_all(&out, *to).into_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::values::parse_size;
    use super::*;
    use std::time::Duration;

    fn err(text: &str) -> String {
        parse(text, Path::new("cfg.yaml")).unwrap_err().to_string()
    }

    #[test]
    fn unknown_key_names_file_line_key_and_suggests() {
        let e = err(
            "custom_monitors:\n  terraform_state:\n    enabled: true\n    stat_files: [\"a\"]\n",
        );
        assert!(e.contains("cfg.yaml"), "{e}");
        assert!(e.contains("line 4"), "{e}");
        assert!(e.contains("custom_monitors.terraform_state"), "{e}");
        assert!(e.contains("unknown key `stat_files`"), "{e}");
        assert!(e.contains("did you mean `state_files`?"), "{e}");
    }

    #[test]
    fn unknown_top_level_key_suggests() {
        let e = err("custom_monitor:\n  terraform_state: {}\n");
        assert!(e.contains("did you mean `custom_monitors`?"), "{e}");
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn bad_duration_names_key_and_line() {
        let e = err("custom_monitors:\n  terraform_state:\n    check_interval: \"5 parsecs\"\n");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("check_interval"), "{e}");
        assert!(e.contains("invalid duration"), "{e}");
    }

    #[test]
    fn wrong_type_names_key_without_quoting_value() {
        let e =
            err("custom_monitors:\n  certificate_expiry:\n    warning_days: \"s3cr3t-canary\"\n");
        assert!(e.contains("warning_days"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(!e.contains("s3cr3t-canary"), "{e}");
    }

    #[test]
    fn thresholds_are_checked() {
        let e = err(
            "custom_monitors:\n  certificate_expiry:\n    warning_days: 3\n    critical_days: 7\n",
        );
        assert!(e.contains("critical_days (7) must not be larger"), "{e}");
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("300").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_size("2MiB").unwrap(), 2 << 20);
        assert_eq!(parse_size("10").unwrap(), 10);
        assert!(parse_size("3 parsecs").is_err());
    }

    // issue 13: a duration or size deep in a mapping named the mapping's first
    // key's line (3), not its own (7).
    #[test]
    fn bad_duration_or_size_names_its_own_line() {
        let head = "monitoring: {}\ncustom_monitors:\n  terraform_state:\n    enabled: true\n    state_files: [\"a\"]\n    drift_report: drift.json\n";
        let e = err(&format!("{head}    check_interval: \"5 parsecs\"\n"));
        assert!(e.contains(", line 7, column 21,"), "{e}");
        assert!(
            e.contains("custom_monitors.terraform_state.check_interval"),
            "{e}"
        );
        let e = err(&format!("{head}    max_file_size: \"lots\"\n"));
        assert!(e.contains(", line 7, column 20,"), "{e}");
        assert!(e.contains("invalid size"), "{e}");
        // Numbers still work, negative ones are refused on their line.
        let e = err(&format!("{head}    retry_interval: -5\n"));
        assert!(
            e.contains("line 7") && e.contains("cannot be negative"),
            "{e}"
        );
        let ok = parse(
            &format!(
                "{head}    check_interval: 300\n    max_file_size: 1024\n    timeout: \"2m\"\n"
            ),
            Path::new("cfg.yaml"),
        )
        .unwrap();
        let t = ok.custom_monitors.terraform_state.unwrap();
        assert_eq!(t.check_interval.0, Duration::from_secs(300));
        assert_eq!(t.max_file_size.0, 1024);
        assert_eq!(t.timeout.0, Duration::from_secs(120));
    }

    // The same for values checked by TryFrom<String> (backup format, time
    // zone, glob): their own line, not the first key of their mapping.
    #[test]
    fn checked_strings_name_their_own_line() {
        let e = err("custom_monitors:\n  backup_validation:\n    check_interval: 1h\n    sources:\n      - name: a\n        path: x\n        format: resticc\n");
        assert!(e.contains(", line 7, column 17,"), "{e}");
        assert!(e.contains("did you mean `restic`?"), "{e}");
        let e = err("custom_monitors:\n  backup_validation:\n    sources:\n      - name: a\n        format: borg\n        path: x\n        timezone: Mars/Base\n");
        assert!(e.contains(", line 7, column 19,"), "{e}");
        let e = err("custom_monitors:\n  terraform_state:\n    enabled: true\n    state_dirs:\n      - \"[a\"\n");
        assert!(e.contains(", line 5, column 9,"), "{e}");
        assert!(e.contains("invalid glob pattern"), "{e}");
        // The key is named once, not repeated at the start of the message.
        let e = err("custom_monitors: [1]\n");
        assert!(
            e.contains("key `custom_monitors`: invalid type: a list"),
            "{e}"
        );
    }

    // issue 13: the redaction of quoted input values also blanked the hint's
    // own examples (`write it like "…", "…"`).
    #[test]
    fn hint_examples_survive_redaction_but_the_value_does_not() {
        let e =
            err("custom_monitors:\n  terraform_state:\n    check_interval: \"s3cr3t-canary\"\n");
        assert!(!e.contains("s3cr3t-canary"), "{e}");
        assert!(
            e.contains(r#"write it like "30s", "5m", "26h" or "1d""#),
            "{e}"
        );
        let e = err("custom_monitors:\n  terraform_state:\n    max_file_size: \"s3cr3t-canary\"\n");
        assert!(!e.contains("s3cr3t-canary"), "{e}");
        assert!(e.contains(r#"write it like "512MiB" or "1GiB""#), "{e}");
        // A wrong type: the value is hidden, the visitor's examples are shown.
        let e =
            err("custom_monitors:\n  terraform_state:\n    check_interval: [\"s3cr3t-canary\"]\n");
        assert!(!e.contains("s3cr3t-canary"), "{e}");
        assert!(e.contains(r#"a duration such as "30s""#), "{e}");
        // An escaped quote inside a value does not end the redaction early,
        // and a marker inside a value is not a hint.
        let r = redact_quoted(r#"invalid duration "a\"b such as pw" (x); write it like "30s""#);
        assert_eq!(r, r#"invalid duration "…" (x); write it like "30s""#);
    }

    // issue 13: "expected struct HealthChecksConfig", "expected u32".
    #[test]
    fn messages_name_no_rust_types() {
        for (text, want) in [
            ("health_checks: \"x\"\n", "expected a mapping (`key: value` lines)"),
            (
                "custom_monitors:\n  certificate_expiry:\n    warning_days: \"abc\"\n",
                "expected a whole number (0 or more)",
            ),
            (
                "custom_monitors:\n  terraform_state:\n    state_files: \"a\"\n",
                "expected a list",
            ),
            (
                "custom_monitors:\n  backup_validation:\n    sources:\n      - { name: a, path: b }\n",
                "missing key `format`",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(want), "{text:?}: {e}");
            for rust in ["struct ", "enum ", "u32", "usize", "Config", "sequence", "missing field"] {
                assert!(!e.contains(rust), "{text:?} shows {rust:?}: {e}");
            }
        }
    }

    // issue 13: the OS error was both in the message and its source, so
    // `error: {e:#}` printed it twice.
    #[test]
    fn read_error_prints_the_os_error_once() {
        let dir = tempfile::tempdir().unwrap();
        let e = Config::load(&dir.path().join("missing.yaml")).unwrap_err();
        let os = std::io::Error::from(std::io::ErrorKind::NotFound).to_string();
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert!(chain.contains("missing.yaml"), "{chain}");
        assert!(
            chain.contains("check the path given with --config"),
            "{chain}"
        );
        let os_error = "(os error 2)";
        assert_eq!(chain.matches(os_error).count(), 1, "{chain} ({os})");
    }

    // issue 16: the first `name:` of the file was named for any source's name.
    #[test]
    fn checks_name_the_line_of_their_own_entry() {
        let e = err("custom_monitors:\n  backup_validation:\n    sources:\n      - name: a\n        format: restic\n        path: x\n      # the copy\n      - name: a\n        format: restic\n        path: y\n");
        assert!(e.contains(", line 8,"), "{e}");
        assert!(e.contains("sources[1].name"), "{e}");
        let text = "custom_monitors:\n  backup_validation:\n    sources:\n      - name: a\n        format: restic\n        path: x\n      -\n        name: b\n        format: borg\n        path: y\n        pattern: \"*\"\n";
        let e = err(text);
        assert!(e.contains(", line 11,"), "{e}");
        // Flow entries: the entry's line.
        let e = err("custom_monitors:\n  backup_validation:\n    sources:\n      - { name: a, format: restic, path: x }\n      - { name: b, format: restic, path: \" \" }\n");
        assert!(e.contains(", line 5,"), "{e}");
        assert_eq!(line_of_key("a:\n  b: 1\n", "a.c"), None);
        assert_eq!(line_of_key("x:\n  c: 1\na:\n  c: 2\n", "a.c"), Some(4));
    }

    #[test]
    fn empty_file_is_valid() {
        let f = parse("", Path::new("x")).unwrap();
        assert!(f.custom_monitors.terraform_state.is_none());
    }

    #[test]
    fn paths_must_be_file_names() {
        let e = err("custom_monitors:\n  terraform_state:\n    drift_report: ../x.json\n");
        assert!(e.contains("plain file name"), "{e}");
    }
}

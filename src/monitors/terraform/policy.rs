//! Configuration compliance: Rego policies evaluated on the live state and its
//! drift report with the embedded `regorus` engine.
//!
//! Input contract (conftest-compatible): `input` is the state file's JSON
//! exactly as Terraform wrote it; `data.drift` is the drift report beside it
//! (the `terraform show -json` plan), when there is one. Rules: `deny` and
//! `warn` sets (conftest's `violation` too) of strings or objects with `msg`,
//! `address` and `severity`.
//!
//! Values: the state's values are in memory only while a target is
//! evaluated, then dropped. Everything that leaves an evaluation (messages,
//! addresses, errors) goes through a [`Redactor`] built from the state's
//! sensitive values first. Metrics carry no message at all.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use regorus::{Engine, Value};

use super::source::{SourceError, Stamp, StateSource};
use crate::snapshot::MetricDef;

pub const VIOLATIONS: MetricDef = MetricDef::gauge(
    "terraform_state_policy_violations",
    "Violations found by a Rego policy in the live state (and its drift report), by severity.",
);
pub const EVALUATION_SUCCESS: MetricDef = MetricDef::gauge(
    "terraform_state_policy_evaluation_success",
    "1 if the policy was evaluated on this state on the last evaluation, 0 if it failed to load, errored or ran too long.",
);

/// Severity label values, most severe first (bounded: never a policy's raw text).
pub const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

/// What the policy layer reports. Messages quote paths, never values.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy {path}: {message}")]
    Read { path: String, message: String },
    #[error("policy {path} line {line}: {message}")]
    Parse {
        path: String,
        line: u32,
        message: String,
    },
    #[error("policy {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("policy {policy} on {state}: {message}")]
    Eval {
        policy: String,
        state: String,
        message: String,
    },
    #[error("policy {policy} on {state}: stopped after {limit_ms} ms (policy_timeout)")]
    Timeout {
        policy: String,
        state: String,
        limit_ms: u128,
    },
}

impl PolicyError {
    /// A bounded reason label.
    pub fn reason(&self) -> &'static str {
        match self {
            PolicyError::Read { .. } => "read",
            PolicyError::Parse { .. } => "parse",
            PolicyError::Invalid { .. } => "invalid",
            PolicyError::Eval { .. } => "eval",
            PolicyError::Timeout { .. } => "timeout",
        }
    }
}

/// Which rule produced a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    Deny,
    Warn,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Deny => "deny",
            RuleKind::Warn => "warn",
        }
    }
    fn default_severity(self) -> &'static str {
        match self {
            RuleKind::Deny => "high",
            RuleKind::Warn => "low",
        }
    }
}

/// One violation, already redacted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Violation {
    pub rule: RuleKind,
    pub severity: &'static str,
    pub address: Option<String>,
    pub msg: String,
}

/// The result of one policy on one state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PolicyResult {
    pub policy: String,
    pub file: String,
    pub ok: bool,
    pub error: Option<String>,
    #[serde(skip)]
    pub reason: Option<&'static str>,
    pub violations: Vec<Violation>,
    pub duration_ms: u64,
}

impl PolicyResult {
    pub fn denies(&self) -> usize {
        self.violations
            .iter()
            .filter(|v| v.rule == RuleKind::Deny)
            .count()
    }
}

/// Every policy's result on one state.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PolicyOutcome {
    pub results: Vec<PolicyResult>,
}

impl PolicyOutcome {
    pub fn denies(&self) -> usize {
        self.results.iter().map(PolicyResult::denies).sum()
    }
    pub fn violations(&self) -> usize {
        self.results.iter().map(|r| r.violations.len()).sum()
    }
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| !r.ok).count()
    }
}

/// Per-target cache: re-evaluated only when the state, drift report or policies change.
#[derive(Debug, Clone)]
pub struct PolicyCache {
    key: (Stamp, Option<Stamp>, u64),
    pub outcome: Arc<PolicyOutcome>,
}

/// One loaded policy file.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    /// The `policy` label: the file name without `.rego`.
    pub name: String,
    /// The path as shown in messages.
    pub display: String,
    stamp: Option<(u64, Option<SystemTime>)>,
    /// Source text and whether it needs Rego v0 syntax, or why it cannot be used.
    compiled: Result<(Arc<str>, bool), PolicyError>,
}

/// Policy files from config, re-read when they change.
#[derive(Debug)]
pub struct PolicySet {
    entries: Vec<String>,
    base: PathBuf,
    timeout: Duration,
    loaded: Mutex<(Vec<LoadedPolicy>, u64)>,
}

fn file_stamp(p: &Path) -> Option<(u64, Option<SystemTime>)> {
    std::fs::metadata(p)
        .ok()
        .map(|m| (m.len(), m.modified().ok()))
}

/// Resolve configured entries to policy files: a `.rego` file, or a folder
/// whose `*.rego` files (not `*_test.rego`) are all loaded.
pub fn resolve(base: &Path, entries: &[String]) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for e in entries {
        let p = base.join(e);
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&p)
                .map(|rd| {
                    rd.filter_map(|d| d.ok().map(|d| d.path()))
                        .filter(|f| {
                            let n = f.file_name().map(|n| n.to_string_lossy().to_string());
                            n.is_some_and(|n| n.ends_with(".rego") && !n.ends_with("_test.rego"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            for f in files {
                let name = f
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                let display = format!("{}/{}", e.trim_end_matches('/'), name);
                out.push((f, display));
            }
        } else {
            out.push((p, e.clone()));
        }
    }
    out
}

fn policy_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
        .trim_end_matches(".rego")
        .to_string()
}

/// Turn a regorus error into one line naming file and line.
fn parse_error(display: &str, err: &anyhow::Error) -> PolicyError {
    let text = err.to_string();
    let mut line = 0u32;
    let mut message = String::new();
    for l in text.lines() {
        let t = l.trim();
        if let Some(loc) = t.strip_prefix("-->") {
            let mut parts = loc.trim().rsplitn(3, ':');
            let _col = parts.next();
            line = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        } else if let Some(m) = t.strip_prefix("error:") {
            message = m.trim().to_string();
        }
    }
    if message.is_empty() {
        message = text.lines().last().unwrap_or("").trim().to_string();
    }
    if line == 0 {
        PolicyError::Invalid {
            path: display.to_string(),
            message,
        }
    } else {
        PolicyError::Parse {
            path: display.to_string(),
            line,
            message,
        }
    }
}

/// A fresh engine with our extensions, the time limit and the policy loaded.
fn engine_for(
    display: &str,
    source: &str,
    v0: bool,
    timeout: Duration,
) -> Result<Engine, anyhow::Error> {
    let mut engine = Engine::new();
    engine.set_rego_v0(v0);
    add_extensions(&mut engine)?;
    engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
        limit: timeout,
        check_interval: std::num::NonZeroU32::new(32).unwrap_or(std::num::NonZeroU32::MIN),
    });
    engine.add_policy(display.to_string(), source.to_string())?;
    Ok(engine)
}

/// Parse a policy file: Rego v1 first, then v0 (conftest's older syntax).
/// The error quoted is the v1 one.
pub fn compile(display: &str, source: &str) -> Result<bool, PolicyError> {
    let t = Duration::from_secs(1);
    match engine_for(display, source, false, t) {
        Ok(_) => Ok(false),
        Err(e1) => match engine_for(display, source, true, t) {
            Ok(_) => Ok(true),
            Err(_) => Err(parse_error(display, &e1)),
        },
    }
}

/// Load-time check of configured policies (config validation): every file
/// exists and parses, names are unique. `base` is the config file's folder.
pub fn check_config(base: &Path, entries: &[String]) -> Result<(), PolicyError> {
    let mut names = std::collections::HashSet::new();
    let files = resolve(base, entries);
    if files.is_empty() && !entries.is_empty() {
        return Err(PolicyError::Invalid {
            path: entries.join(", "),
            message: "no .rego files found".into(),
        });
    }
    for (path, display) in files {
        let source = crate::safe_open::read_to_string(&path).map_err(|e| PolicyError::Read {
            path: display.clone(),
            message: e.to_string(),
        })?;
        compile(&display, &source)?;
        let name = policy_name(&path);
        if !names.insert(name.clone()) {
            return Err(PolicyError::Invalid {
                path: display,
                message: format!("a second policy named {name:?} (policy names are file names without .rego and must be unique)"),
            });
        }
    }
    Ok(())
}

impl PolicySet {
    pub fn new(entries: Vec<String>, base: PathBuf, timeout: Duration) -> Self {
        PolicySet {
            entries,
            base,
            timeout,
            loaded: Mutex::new((Vec::new(), 0)),
        }
    }

    /// Re-read policy files whose stamp changed; returns them and a fingerprint.
    pub fn refresh(&self) -> (Vec<LoadedPolicy>, u64) {
        let mut guard = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let mut old: BTreeMap<String, LoadedPolicy> =
            guard.0.drain(..).map(|p| (p.display.clone(), p)).collect();
        let mut out = Vec::new();
        let mut h = DefaultHasher::new();
        for (path, display) in resolve(&self.base, &self.entries) {
            let stamp = file_stamp(&path);
            display.hash(&mut h);
            stamp.hash(&mut h);
            if let Some(p) = old.remove(&display) {
                if p.stamp == stamp && stamp.is_some() {
                    out.push(p);
                    continue;
                }
            }
            let compiled = match crate::safe_open::read_to_string(&path) {
                Ok(src) => compile(&display, &src).map(|v0| (Arc::<str>::from(src), v0)),
                Err(e) => Err(PolicyError::Read {
                    path: display.clone(),
                    message: e.to_string(),
                }),
            };
            if let Err(e) = &compiled {
                let shown = &display;
                tracing::warn!(monitor = "terraform_state", policy = %shown, reason = e.reason(), "{e}");
            }
            out.push(LoadedPolicy {
                name: policy_name(&path),
                display,
                stamp,
                compiled,
            });
        }
        let fp = h.finish();
        *guard = (out.clone(), fp);
        (out, fp)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Read a whole document (bounded by the source's max size).
fn read_json(src: &dyn StateSource) -> Result<(serde_json::Value, Stamp), String> {
    let (mut r, stamp) = src.open().map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    r.read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {}: {e}", src.label()))?;
    let v = serde_json::from_slice(&buf)
        .map_err(|e| format!("{} is not valid JSON (line {})", src.label(), e.line()))?;
    Ok((v, stamp))
}

/// Evaluate every policy on one target, reusing the cache when nothing changed.
/// `state_stamp` is the stamp of the last good state parse; encrypted states are skipped.
pub fn evaluate_target(
    set: &PolicySet,
    state: &dyn StateSource,
    drift: Option<&dyn StateSource>,
    cache: &mut Option<PolicyCache>,
) -> Option<Arc<PolicyOutcome>> {
    let (policies, fp) = set.refresh();
    // Unreadable now: keep the last results (the state monitor reports the error).
    let Ok(state_stamp) = state.stamp() else {
        return cache.as_ref().map(|c| c.outcome.clone());
    };
    let drift_stamp = drift.and_then(|d| d.stamp().ok());
    let key = (state_stamp, drift_stamp, fp);
    if let Some(c) = cache {
        if c.key == key {
            return Some(c.outcome.clone());
        }
    }
    let (input, stamp) = match read_json(state) {
        Ok(v) => v,
        // The state monitor already reports read errors; keep the last outcome.
        Err(_) => return cache.as_ref().map(|c| c.outcome.clone()),
    };
    if input.get("encrypted_data").is_some() || input.get("encryption_version").is_some() {
        *cache = None;
        return None;
    }
    let drift_doc = drift.and_then(|d| match read_json(d) {
        Ok((v, _)) => Some(v),
        Err(e) => match d.stamp() {
            Err(SourceError::NotFound(_)) => None,
            _ => {
                tracing::debug!(
                    monitor = "terraform_state",
                    "drift report not given to policies: {e}"
                );
                None
            }
        },
    });
    let outcome = Arc::new(evaluate(
        &policies,
        state.label(),
        input,
        drift_doc,
        set.timeout,
    ));
    *cache = Some(PolicyCache {
        key: (stamp, drift_stamp, fp),
        outcome: outcome.clone(),
    });
    Some(outcome)
}

/// Evaluate policies on one document. The values are dropped on return
/// (abandoned evaluations drop theirs when their thread ends).
pub fn evaluate(
    policies: &[LoadedPolicy],
    state_label: &str,
    input: serde_json::Value,
    drift: Option<serde_json::Value>,
    timeout: Duration,
) -> PolicyOutcome {
    let redactor = Arc::new(Redactor::from_documents(&input, drift.as_ref()));
    let input = Value::from(input);
    let data = match drift {
        Some(d) => Value::from(serde_json::json!({ "drift": d })),
        None => Value::new_object(),
    };
    let mut results = Vec::new();
    for p in policies {
        let started = Instant::now();
        let res = match &p.compiled {
            Err(e) => Err((e.reason(), redactor.redact(&e.to_string()))),
            Ok((src, v0)) => run_bounded(p, src.clone(), *v0, &input, &data, timeout, state_label)
                .map_err(|e| (e.reason(), redactor.redact(&e.to_string()))),
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        let result = match res {
            Ok((raw, prints)) => {
                for line in prints {
                    tracing::debug!(monitor = "terraform_state", state_file = %state_label, policy = %p.name, "print: {}", redactor.redact(&line));
                }
                let mut violations: Vec<Violation> = raw
                    .into_iter()
                    .map(|(rule, v)| to_violation(rule, &v, &redactor))
                    .collect();
                violations.sort();
                violations.dedup();
                PolicyResult {
                    policy: p.name.clone(),
                    file: p.display.clone(),
                    ok: true,
                    error: None,
                    reason: None,
                    violations,
                    duration_ms,
                }
            }
            Err((reason, message)) => {
                tracing::warn!(monitor = "terraform_state", state_file = %state_label, policy = %p.name, reason, "{message}");
                PolicyResult {
                    policy: p.name.clone(),
                    file: p.display.clone(),
                    ok: false,
                    error: Some(message),
                    reason: Some(reason),
                    violations: Vec::new(),
                    duration_ms,
                }
            }
        };
        results.push(result);
    }
    PolicyOutcome { results }
}

type RawViolations = Vec<(RuleKind, Value)>;
/// Violations and the policy's print() output.
type RawResult = (RawViolations, Vec<String>);

/// Run one policy in its own thread with a deadline: regorus' execution timer
/// stops long evaluations cooperatively; if it does not, the thread is abandoned.
fn run_bounded(
    p: &LoadedPolicy,
    src: Arc<str>,
    v0: bool,
    input: &Value,
    data: &Value,
    timeout: Duration,
    state_label: &str,
) -> Result<RawResult, PolicyError> {
    let (tx, rx) = mpsc::channel();
    let (input, data, display) = (input.clone(), data.clone(), p.display.clone());
    let spawned = std::thread::Builder::new()
        .name("policy-eval".into())
        .spawn(move || {
            let _ = tx.send(eval_in_engine(&display, &src, v0, input, data, timeout));
        });
    let eval_err = |message: String| PolicyError::Eval {
        policy: p.name.clone(),
        state: state_label.to_string(),
        message,
    };
    if let Err(e) = spawned {
        return Err(eval_err(format!("cannot start evaluation thread: {e}")));
    }
    let timed_out = || PolicyError::Timeout {
        policy: p.name.clone(),
        state: state_label.to_string(),
        limit_ms: timeout.as_millis(),
    };
    match rx.recv_timeout(timeout + Duration::from_millis(500)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            let text = e.to_string();
            if text.contains("execution exceeded time limit") || text.contains("time limit") {
                Err(timed_out())
            } else {
                let PolicyError::Parse { line, message, .. } = parse_error(&p.display, &e) else {
                    let one = text.lines().last().unwrap_or("").trim().to_string();
                    return Err(eval_err(one));
                };
                Err(eval_err(format!("line {line}: {message}")))
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => Err(timed_out()),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err(eval_err("evaluation thread panicked".into()))
        }
    }
}

fn eval_in_engine(
    display: &str,
    src: &str,
    v0: bool,
    input: Value,
    data: Value,
    timeout: Duration,
) -> Result<RawResult, anyhow::Error> {
    let mut engine = engine_for(display, src, v0, timeout)?;
    // print() would otherwise go straight to stderr, unredacted.
    engine.set_gather_prints(true);
    engine.add_data(data)?;
    engine.set_input(input);
    let packages = engine.get_packages()?;
    let mut out = Vec::new();
    for pkg in packages {
        for (rule, kind) in [
            ("deny", RuleKind::Deny),
            ("violation", RuleKind::Deny),
            ("warn", RuleKind::Warn),
        ] {
            let declared = engine
                .has_declared_rule_rooted_at(display, rule)
                .unwrap_or(true);
            if !declared {
                continue;
            }
            let results = engine.eval_query(format!("{pkg}.{rule}"), false)?;
            for r in results.result {
                for e in r.expressions {
                    collect_values(kind, &e.value, &mut out);
                }
            }
        }
    }
    Ok((out, engine.take_prints().unwrap_or_default()))
}

fn collect_values(kind: RuleKind, v: &Value, out: &mut RawViolations) {
    match v {
        Value::Set(s) => out.extend(s.iter().map(|x| (kind, x.clone()))),
        Value::Array(a) => out.extend(a.iter().map(|x| (kind, x.clone()))),
        // A boolean `deny` (deny if {...}) counts once when true.
        Value::Bool(true) => out.push((kind, Value::from(kind.as_str()))),
        Value::Undefined | Value::Null | Value::Bool(false) => {}
        other => out.push((kind, other.clone())),
    }
}

fn to_violation(rule: RuleKind, v: &Value, r: &Redactor) -> Violation {
    let text = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.to_string()),
            Value::Undefined => None,
            other => other.to_json_str().ok(),
        }
    };
    match v {
        Value::Object(o) => {
            let get = |k: &str| o.get(&Value::from(k)).and_then(text);
            let severity = get("severity")
                .map(|s| s.to_ascii_lowercase())
                .and_then(|s| SEVERITIES.iter().find(|x| **x == s).copied())
                .unwrap_or(rule.default_severity());
            let msg = get("msg").or_else(|| text(v)).unwrap_or_default();
            Violation {
                rule,
                severity,
                address: get("address").map(|a| r.redact(&a)),
                msg: r.redact(&msg),
            }
        }
        other => Violation {
            rule,
            severity: rule.default_severity(),
            address: None,
            msg: r.redact(&text(other).unwrap_or_default()),
        },
    }
}

// ---------------------------------------------------------------- redaction

/// Replaces every sensitive value of a state (and its drift report) in text.
pub struct Redactor {
    matcher: Option<aho_corasick::AhoCorasick>,
}

/// What a redacted value is replaced with.
pub const REDACTED: &str = "(redacted)";

/// Attribute names whose values are always treated as secrets.
const SECRET_NAMES: [&str; 12] = [
    "password",
    "secret",
    "token",
    "private_key",
    "access_key",
    "secret_key",
    "api_key",
    "credentials",
    "passphrase",
    "key_material",
    "client_key",
    "sensitive_content",
];

/// Shortest value redacted (shorter ones would mangle every message).
const MIN_SECRET_LEN: usize = 4;

fn secret_name(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    SECRET_NAMES.iter().any(|s| k.contains(s))
}

fn leaves(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) if s.len() >= MIN_SECRET_LEN => out.push(s.clone()),
        serde_json::Value::Number(n) if n.to_string().len() >= 6 => out.push(n.to_string()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| leaves(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| leaves(x, out)),
        _ => {}
    }
}

/// Values under secret-looking attribute names, anywhere.
fn by_name(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                if secret_name(k) {
                    leaves(x, out);
                } else {
                    by_name(x, out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| by_name(x, out)),
        _ => {}
    }
}

/// Follow one `sensitive_attributes` path (`[{type: get_attr|index, value}]`).
fn at_path<'a>(
    mut v: &'a serde_json::Value,
    path: &serde_json::Value,
) -> Option<&'a serde_json::Value> {
    let steps = path.as_array()?;
    for s in steps {
        let key = s.get("value")?;
        // Newer states wrap index keys: {"type": "index", "value": {"value": 0, "type": "number"}}.
        let key = match key.get("value") {
            Some(inner) if key.is_object() => inner,
            _ => key,
        };
        v = match (v, key) {
            (serde_json::Value::Object(o), serde_json::Value::String(k)) => o.get(k)?,
            (serde_json::Value::Array(a), serde_json::Value::Number(n)) => {
                a.get(usize::try_from(n.as_u64()?).ok()?)?
            }
            _ => return None,
        };
    }
    Some(v)
}

/// Values masked `true` in a plan's `*_sensitive` shadow structure.
fn by_mask(v: &serde_json::Value, mask: &serde_json::Value, out: &mut Vec<String>) {
    match (v, mask) {
        (_, serde_json::Value::Bool(true)) => leaves(v, out),
        (serde_json::Value::Object(o), serde_json::Value::Object(m)) => {
            for (k, mv) in m {
                if let Some(x) = o.get(k) {
                    by_mask(x, mv, out);
                }
            }
        }
        (serde_json::Value::Array(a), serde_json::Value::Array(m)) => {
            for (x, mv) in a.iter().zip(m) {
                by_mask(x, mv, out);
            }
        }
        _ => {}
    }
}

impl Redactor {
    /// Collect sensitive values: `sensitive_attributes` paths, secret-looking
    /// attribute names, `private`, sensitive outputs; in the drift report,
    /// values masked by `before_sensitive`/`after_sensitive` and secret names.
    pub fn from_documents(state: &serde_json::Value, drift: Option<&serde_json::Value>) -> Self {
        let mut secrets = Vec::new();
        if let Some(outputs) = state.get("outputs").and_then(|o| o.as_object()) {
            for o in outputs.values() {
                if o.get("sensitive").and_then(|s| s.as_bool()) == Some(true) {
                    if let Some(v) = o.get("value") {
                        leaves(v, &mut secrets);
                    }
                }
            }
        }
        let empty = Vec::new();
        let resources = state
            .get("resources")
            .and_then(|r| r.as_array())
            .unwrap_or(&empty);
        for r in resources {
            let instances = r
                .get("instances")
                .and_then(|i| i.as_array())
                .unwrap_or(&empty);
            for i in instances {
                if let Some(p) = i.get("private") {
                    leaves(p, &mut secrets);
                }
                let Some(attrs) = i.get("attributes") else {
                    continue;
                };
                by_name(attrs, &mut secrets);
                for path in i
                    .get("sensitive_attributes")
                    .and_then(|s| s.as_array())
                    .unwrap_or(&empty)
                {
                    // Terraform < 1.10: a list of paths; newer: the same, or a single path.
                    let found = if path
                        .as_array()
                        .is_some_and(|a| a.iter().all(|s| s.is_object()))
                    {
                        at_path(attrs, path)
                    } else {
                        at_path(attrs, &serde_json::Value::Array(vec![path.clone()]))
                    };
                    if let Some(v) = found {
                        leaves(v, &mut secrets);
                    }
                }
            }
        }
        if let Some(d) = drift {
            by_name(d, &mut secrets);
            for list in ["resource_drift", "resource_changes"] {
                for c in d.get(list).and_then(|l| l.as_array()).unwrap_or(&empty) {
                    let Some(ch) = c.get("change") else { continue };
                    for (val, mask) in
                        [("before", "before_sensitive"), ("after", "after_sensitive")]
                    {
                        if let (Some(v), Some(m)) = (ch.get(val), ch.get(mask)) {
                            by_mask(v, m, &mut secrets);
                        }
                    }
                }
            }
        }
        secrets.sort_unstable_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        let matcher = if secrets.is_empty() {
            None
        } else {
            aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .build(&secrets)
                .ok()
        };
        Redactor { matcher }
    }

    /// The text with every sensitive value replaced by `(redacted)`.
    pub fn redact(&self, text: &str) -> String {
        match &self.matcher {
            Some(m) => {
                let mut out = String::with_capacity(text.len());
                m.replace_all_with(text, &mut out, |_, _, dst| {
                    dst.push_str(REDACTED);
                    true
                });
                out
            }
            None => text.to_string(),
        }
    }
}

// ------------------------------------------------------- custom functions

/// Functions Terraform policies need that regorus lacks, under `homelab.`.
fn add_extensions(engine: &mut Engine) -> Result<(), anyhow::Error> {
    engine.add_extension(
        "homelab.cidr_intersects".into(),
        2,
        Box::new(|args: Vec<Value>| {
            let (a, b) = (cidr_arg(&args, 0)?, cidr_arg(&args, 1)?);
            Ok(Value::from(
                a.contains(&b.network()) || b.contains(&a.network()),
            ))
        }),
    )?;
    engine.add_extension(
        "homelab.cidr_is_public".into(),
        1,
        Box::new(|args: Vec<Value>| {
            let n = cidr_arg(&args, 0)?;
            Ok(Value::from(is_world(&n)))
        }),
    )?;
    engine.add_extension(
        "homelab.address".into(),
        2,
        Box::new(|args: Vec<Value>| {
            let (r, i) = match (args.first(), args.get(1)) {
                (Some(r), Some(i)) => (r, i),
                _ => anyhow::bail!("homelab.address needs a resource and an instance"),
            };
            Ok(Value::from(address_of(r, i)))
        }),
    )?;
    engine.add_extension(
        "homelab.port_in_range".into(),
        3,
        Box::new(|args: Vec<Value>| {
            let num = |i: usize| -> anyhow::Result<f64> {
                args.get(i).and_then(|v| v.as_f64().ok()).ok_or_else(|| {
                    anyhow::anyhow!("homelab.port_in_range: argument {} is not a number", i + 1)
                })
            };
            let (port, from, to) = (num(0)?, num(1)?, num(2)?);
            // from_port = to_port = 0 with protocol -1 means all ports in AWS.
            Ok(Value::from(
                (from == 0.0 && to == 0.0) || (from <= port && port <= to),
            ))
        }),
    )?;
    Ok(())
}

fn field<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    v.as_object().ok().and_then(|o| o.get(&Value::from(k)))
}

fn field_str(v: &Value, k: &str) -> String {
    field(v, k)
        .and_then(|x| x.as_string().ok())
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// The instance's Terraform address: `module.m["a"].aws_instance.web[0]`.
fn address_of(r: &Value, i: &Value) -> String {
    let mut out = String::new();
    let module = field_str(r, "module");
    if !module.is_empty() {
        out.push_str(&module);
        out.push('.');
    }
    if field_str(r, "mode") == "data" {
        out.push_str("data.");
    }
    out.push_str(&field_str(r, "type"));
    out.push('.');
    out.push_str(&field_str(r, "name"));
    match field(i, "index_key") {
        Some(Value::String(k)) => {
            out.push_str(&format!("[{}]", super::state::hcl_quoted(k.as_ref())));
        }
        Some(Value::Number(n)) => {
            if let Some(n) = n.as_u64() {
                out.push_str(&format!("[{n}]"));
            }
        }
        _ => {}
    }
    out
}

fn cidr_arg(args: &[Value], i: usize) -> anyhow::Result<ipnet::IpNet> {
    let s = args
        .get(i)
        .and_then(|v| v.as_string().ok())
        .ok_or_else(|| anyhow::anyhow!("argument {} is not a CIDR string", i + 1))?;
    let s: &str = s;
    if let Ok(n) = s.parse::<ipnet::IpNet>() {
        return Ok(n);
    }
    s.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| anyhow::anyhow!("argument {} is not a CIDR", i + 1))
}

/// A range that reaches (part of) the public Internet: not inside private,
/// loopback, link-local or ULA space.
fn is_world(n: &ipnet::IpNet) -> bool {
    const PRIVATE: [&str; 8] = [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "fc00::/7",
        "fe80::/10",
    ];
    let inside = PRIVATE
        .iter()
        .filter_map(|p| p.parse::<ipnet::IpNet>().ok())
        .any(|p| p.contains(n));
    !inside && !matches!(n, ipnet::IpNet::V6(v) if v.network().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redactor_replaces_sensitive_values() {
        let state = serde_json::json!({
            "outputs": {"pw": {"value": "CANARY-out", "sensitive": true}},
            "resources": [{"instances": [{"attributes": {"db": {"pass": "CANARY-path"}, "password": "CANARY-name", "name": "web"},
                "sensitive_attributes": [[{"type": "get_attr", "value": "db"}, {"type": "get_attr", "value": "pass"}]]}]}]
        });
        let r = Redactor::from_documents(&state, None);
        let out = r.redact("a CANARY-out b CANARY-path c CANARY-name d web");
        assert_eq!(out, "a (redacted) b (redacted) c (redacted) d web");
    }

    #[test]
    fn redactor_uses_drift_sensitivity_masks_and_wrapped_index_keys() {
        let state = serde_json::json!({"resources": [{"instances": [{"attributes": {"list": ["CANARY-idx"]},
            "sensitive_attributes": [[{"type": "get_attr", "value": "list"}, {"type": "index", "value": {"value": 0, "type": "number"}}]]}]}]});
        let drift = serde_json::json!({"resource_drift": [{"address": "a.b", "change": {
            "before": {"conn": "CANARY-before", "name": "plain"}, "before_sensitive": {"conn": true},
            "after": {"conn": "CANARY-after"}, "after_sensitive": {"conn": true}}}]});
        let r = Redactor::from_documents(&state, Some(&drift));
        assert_eq!(
            r.redact("CANARY-idx CANARY-before CANARY-after plain"),
            "(redacted) (redacted) (redacted) plain"
        );
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        let e = compile(
            "p.rego",
            "package p\n\ndeny contains msg if {\n  msg := \n}\n",
        )
        .unwrap_err();
        assert!(matches!(e, PolicyError::Parse { line: 4 | 5, .. }), "{e}");
        assert!(e.to_string().starts_with("policy p.rego line"), "{e}");
    }

    #[test]
    fn v0_policies_are_accepted() {
        assert_eq!(
            compile("p.rego", "package main\ndeny[msg] { msg := \"x\" }\n").ok(),
            Some(true)
        );
    }

    #[test]
    fn world_cidrs() {
        let w = |s: &str| is_world(&s.parse().unwrap());
        assert!(w("0.0.0.0/0"));
        assert!(w("8.8.8.0/24"));
        assert!(!w("10.1.0.0/16"));
        assert!(w("::/0"));
        assert!(!w("fd00::/8"));
    }
}

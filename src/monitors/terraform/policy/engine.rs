//! One policy on one document in a fresh `regorus` engine, in its own thread
//! with a deadline.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use regorus::{Engine, Value};

use super::builtins::add_extensions;
use super::load::{parse_error, LoadedPolicy};
use super::{PolicyError, RuleKind};

/// A fresh engine with our extensions, the time limit and the policy loaded.
pub(super) fn engine_for(
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

pub(super) type RawViolations = Vec<(RuleKind, Value)>;
/// Violations and the policy's print() output.
pub(super) type RawResult = (RawViolations, Vec<String>);

/// Run one policy in its own thread with a deadline: regorus' execution timer
/// stops long evaluations cooperatively; if it does not, the thread is abandoned.
pub(super) fn run_bounded(
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
        Ok(Err(e)) => Err(eval_error(p, state_label, timeout, &e)),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(timed_out()),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err(eval_err("evaluation thread panicked".into()))
        }
    }
}

/// What an evaluation error is: the time limit, or an error at a line.
pub(super) fn eval_error(
    p: &LoadedPolicy,
    state_label: &str,
    timeout: Duration,
    e: &anyhow::Error,
) -> PolicyError {
    let text = e.to_string();
    if text.contains("execution exceeded time limit") || text.contains("time limit") {
        return PolicyError::Timeout {
            policy: p.name.clone(),
            state: state_label.to_string(),
            limit_ms: timeout.as_millis(),
        };
    }
    let message = match parse_error(&p.display, e) {
        PolicyError::Parse { line, message, .. } => format!("line {line}: {message}"),
        _ => text.lines().last().unwrap_or("").trim().to_string(),
    };
    PolicyError::Eval {
        policy: p.name.clone(),
        state: state_label.to_string(),
        message,
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
    let mut engine = prepared_engine(display, src, v0, data, timeout)?;
    engine.set_input(input);
    let out = eval_rules(&mut engine, display)?;
    Ok((out, engine.take_prints().unwrap_or_default()))
}

/// An engine with the policy and `data` loaded, ready for inputs
/// ([`eval_rules`] after each `set_input`).
pub(super) fn prepared_engine(
    display: &str,
    src: &str,
    v0: bool,
    data: Value,
    timeout: Duration,
) -> Result<Engine, anyhow::Error> {
    let mut engine = engine_for(display, src, v0, timeout)?;
    // print() would otherwise go straight to stderr, unredacted.
    engine.set_gather_prints(true);
    engine.add_data(data)?;
    Ok(engine)
}

/// Every `deny`/`violation`/`warn` value of the policy on the engine's input.
pub(super) fn eval_rules(engine: &mut Engine, display: &str) -> Result<RawViolations, anyhow::Error> {
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
    Ok(out)
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

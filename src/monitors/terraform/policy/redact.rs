//! Redaction: every sensitive value of a state (and its drift report) is
//! replaced before any text leaves an evaluation.

use regorus::Value;

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

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object().ok()?.get(&Value::from(key))
}

fn array(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a.as_slice(),
        _ => &[],
    }
}

fn leaves(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.len() >= MIN_SECRET_LEN => out.push(s.to_string()),
        Value::Number(_) => {
            if let Ok(n) = v.to_json_str() {
                if n.len() >= 6 {
                    out.push(n);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| leaves(x, out)),
        Value::Object(o) => o.values().for_each(|x| leaves(x, out)),
        _ => {}
    }
}

/// Values under secret-looking attribute names, anywhere.
fn by_name(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter() {
                if k.as_string().is_ok_and(|k| secret_name(k)) {
                    leaves(x, out);
                } else {
                    by_name(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| by_name(x, out)),
        _ => {}
    }
}

/// Follow one `sensitive_attributes` path (`[{type: get_attr|index, value}]`).
fn at_path<'a>(mut v: &'a Value, steps: &[Value]) -> Option<&'a Value> {
    for s in steps {
        let key = get(s, "value")?;
        // Newer states wrap index keys: {"type": "index", "value": {"value": 0, "type": "number"}}.
        let key = match key {
            Value::Object(_) => get(key, "value")?,
            _ => key,
        };
        v = match (v, key) {
            (Value::Object(o), Value::String(_)) => o.get(key)?,
            (Value::Array(a), Value::Number(_)) => {
                a.get(usize::try_from(key.as_u64().ok()?).ok()?)?
            }
            _ => return None,
        };
    }
    Some(v)
}

/// Values masked `true` in a plan's `*_sensitive` shadow structure.
fn by_mask(v: &Value, mask: &Value, out: &mut Vec<String>) {
    match (v, mask) {
        (_, Value::Bool(true)) => leaves(v, out),
        (Value::Object(o), Value::Object(m)) => {
            for (k, mv) in m.iter() {
                if let Some(x) = o.get(k) {
                    by_mask(x, mv, out);
                }
            }
        }
        (Value::Array(a), Value::Array(m)) => {
            for (x, mv) in a.iter().zip(m.iter()) {
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
    /// Both documents are the policy engine's values (the policy input).
    pub fn from_documents(state: &Value, drift: Option<&Value>) -> Self {
        Self::from_secrets(secrets_of(state, drift))
    }

    /// A redactor for values collected with [`secrets_of`].
    pub fn from_secrets(mut secrets: Vec<String>) -> Self {
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
}

/// Every sensitive value of a state (and its drift report): see
/// [`Redactor::from_documents`].
pub fn secrets_of(state: &Value, drift: Option<&Value>) -> Vec<String> {
        let mut secrets = Vec::new();
        if let Some(Value::Object(outputs)) = get(state, "outputs") {
            for o in outputs.values() {
                if get(o, "sensitive") == Some(&Value::Bool(true)) {
                    if let Some(v) = get(o, "value") {
                        leaves(v, &mut secrets);
                    }
                }
            }
        }
        let resources = get(state, "resources").map(array).unwrap_or_default();
        for r in resources {
            for i in get(r, "instances").map(array).unwrap_or_default() {
                if let Some(p) = get(i, "private") {
                    leaves(p, &mut secrets);
                }
                let Some(attrs) = get(i, "attributes") else {
                    continue;
                };
                by_name(attrs, &mut secrets);
                for path in get(i, "sensitive_attributes")
                    .map(array)
                    .unwrap_or_default()
                {
                    // Terraform < 1.10: a list of paths; newer: the same, or a single path.
                    let steps = array(path);
                    let found = if matches!(path, Value::Array(_))
                        && steps.iter().all(|s| matches!(s, Value::Object(_)))
                    {
                        at_path(attrs, steps)
                    } else {
                        at_path(attrs, std::slice::from_ref(path))
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
                for c in get(d, list).map(array).unwrap_or_default() {
                    let Some(ch) = get(c, "change") else { continue };
                    for (val, mask) in
                        [("before", "before_sensitive"), ("after", "after_sensitive")]
                    {
                        if let (Some(v), Some(m)) = (get(ch, val), get(ch, mask)) {
                            by_mask(v, m, &mut secrets);
                        }
                    }
                }
            }
        }
        secrets
}

impl Redactor {
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
        let r = Redactor::from_documents(&Value::from(state), None);
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
        let r = Redactor::from_documents(&Value::from(state), Some(&Value::from(drift)));
        assert_eq!(
            r.redact("CANARY-idx CANARY-before CANARY-after plain"),
            "(redacted) (redacted) (redacted) plain"
        );
    }
}

//! Redaction: every sensitive value of a state (and its drift report) is
//! replaced before any text leaves an evaluation.

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
}

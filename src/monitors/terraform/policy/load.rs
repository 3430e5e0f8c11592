//! Policy files: resolving configured entries, reading and compiling them
//! (Rego v1, then v0), and re-reading them when they change.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::engine::engine_for;
use super::scope::{scope_of, Scope};
use super::PolicyError;

/// One loaded policy file.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    /// The `policy` label: the file name without `.rego`.
    pub name: String,
    /// The path as shown in messages.
    pub display: String,
    pub(super) stamp: Option<(u64, Option<SystemTime>)>,
    /// Source text and whether it needs Rego v0 syntax, or why it cannot be used.
    pub(super) compiled: Result<(Arc<str>, bool), PolicyError>,
    /// Whole state, or resources a batch at a time (`# policy-scope: resource`).
    pub scope: Scope,
}

/// Policy files from config, re-read when they change.
#[derive(Debug)]
pub struct PolicySet {
    entries: Vec<String>,
    base: PathBuf,
    pub(super) timeout: Duration,
    /// `policy_max_input_size`: the most JSON text (per document) turned
    /// into a policy input.
    pub(super) max_input: u64,
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
pub(super) fn parse_error(display: &str, err: &anyhow::Error) -> PolicyError {
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
        let source = crate::core::safe_open::read_to_string(&path).map_err(|e| PolicyError::Read {
            path: display.clone(),
            message: e.to_string(),
        })?;
        compile(&display, &source)?;
        scope_of(&display, &source)?;
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
            max_input: u64::MAX,
            loaded: Mutex::new((Vec::new(), 0)),
        }
    }

    /// Bound each policy input to `bytes` of JSON text (`policy_max_input_size`).
    pub fn with_max_input(mut self, bytes: u64) -> Self {
        self.max_input = bytes.max(1);
        self
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
            let mut scope = Scope::State;
            let compiled = match crate::core::safe_open::read_to_string(&path) {
                Ok(src) => compile(&display, &src)
                    .and_then(|v0| {
                        scope = scope_of(&display, &src)?;
                        Ok(v0)
                    })
                    .map(|v0| (Arc::<str>::from(src), v0)),
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
                scope,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

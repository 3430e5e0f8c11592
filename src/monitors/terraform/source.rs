//! Where state bytes come from. Local files today; remote backends (HTTP, S3,
//! pg, HCP) implement the same [`StateSource`] trait later.
//!
//! Target discovery is separate from reading so that a fleet can be split
//! between replicas (`--shard`) over the discovered list.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use crate::core::stamp::Stamp;

/// Why a source could not be read. Messages quote paths, never content.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{0}: permission denied; give the exporter's user read access")]
    PermissionDenied(String),
    #[error("{0} is a directory or special file, not a regular file")]
    NotAFile(String),
    #[error("{0} is a folder, not a state file: to check every state under it use --state-dir {0} (state_dirs in the config)")]
    IsAFolder(String),
    #[error("{path} is {size} bytes, over the {limit}-byte limit (raise max_file_size if it is genuine)")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("{path}: symbolic link loop")]
    SymlinkLoop { path: String },
    #[error("cannot read {path}: {kind}")]
    Io { path: String, kind: String },
    /// A remote backend failed; `reason` is a bounded label, the message
    /// names the source and never holds credentials or content.
    #[error("{label}: {message}")]
    Remote {
        label: String,
        reason: &'static str,
        message: String,
    },
}

impl SourceError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            SourceError::NotFound(_) => "not_found",
            SourceError::PermissionDenied(_) => "permission_denied",
            SourceError::NotAFile(_) | SourceError::IsAFolder(_) => "not_a_file",
            SourceError::TooLarge { .. } => "too_large",
            SourceError::SymlinkLoop { .. } => "symlink_loop",
            SourceError::Io { .. } => "io",
            SourceError::Remote { reason, .. } => reason,
        }
    }

    fn from_io(path: &Path, e: &std::io::Error) -> Self {
        let p = path.display().to_string();
        match e.kind() {
            std::io::ErrorKind::NotFound => SourceError::NotFound(p),
            std::io::ErrorKind::PermissionDenied => SourceError::PermissionDenied(p),
            _ if e.raw_os_error() == Some(40) => SourceError::SymlinkLoop { path: p }, // ELOOP
            _ => SourceError::Io {
                path: p,
                kind: e.kind().to_string(),
            },
        }
    }
}

/// A readable source of state-like documents.
pub trait StateSource: Send + Sync {
    /// The `state_file` label value.
    fn label(&self) -> &str;
    /// Cheap check of the current version.
    fn stamp(&self) -> Result<Stamp, SourceError>;
    /// Open for reading; also returns the stamp of what is read.
    fn open(&self) -> Result<(Box<dyn Read + Send>, Stamp), SourceError>;

    /// True when `stamp` cannot prove later that the content is unchanged, so
    /// the content must be read again next time (default: stamps are exact).
    fn racy(&self, _stamp: &Stamp) -> bool {
        false
    }
}

/// A file on local disk.
#[derive(Debug, Clone)]
pub struct LocalFile {
    pub label: String,
    pub path: PathBuf,
    pub max_size: u64,
}

impl LocalFile {
    fn check(&self) -> Result<(std::fs::Metadata, Stamp), SourceError> {
        let md = std::fs::metadata(&self.path).map_err(|e| SourceError::from_io(&self.path, &e))?;
        if md.is_dir() {
            return Err(SourceError::IsAFolder(self.path.display().to_string()));
        }
        if !md.is_file() {
            // Directories, FIFOs, sockets and devices are never opened: a FIFO would block.
            return Err(SourceError::NotAFile(self.path.display().to_string()));
        }
        let stamp = Stamp::of(&md);
        if md.len() > self.max_size {
            return Err(SourceError::TooLarge {
                path: self.path.display().to_string(),
                size: md.len(),
                limit: self.max_size,
            });
        }
        Ok((md, stamp))
    }
}

impl StateSource for LocalFile {
    fn label(&self) -> &str {
        &self.label
    }

    fn racy(&self, stamp: &Stamp) -> bool {
        !stamp.settled(SystemTime::now())
    }

    fn stamp(&self) -> Result<Stamp, SourceError> {
        self.check().map(|(_, s)| s)
    }

    fn open(&self) -> Result<(Box<dyn Read + Send>, Stamp), SourceError> {
        let (_, before) = self.check()?;
        let f =
            crate::core::safe_open::open(&self.path).map_err(|e| SourceError::from_io(&self.path, &e))?;
        // Stamp of the opened file itself (it may have been swapped by a rename since the check).
        let md = f
            .metadata()
            .map_err(|e| SourceError::from_io(&self.path, &e))?;
        if !md.is_file() {
            return Err(SourceError::NotAFile(self.path.display().to_string()));
        }
        let stamp = if md.len() == before.size {
            before
        } else {
            Stamp::of(&md)
        };
        // Never read past the cap even if the file grows while we read.
        Ok((Box::new(f.take(self.max_size)), stamp))
    }
}

/// A local target found by discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTarget {
    pub label: String,
    pub path: PathBuf,
}

/// A discovered target as kept between collections (for one whose
/// discovery times out): its label, and its path only when that is not the
/// base folder joined with the label (or with `.` and the label: a
/// `state_dirs` entry `.`), byte for byte (issue 21: one small allocation
/// per target instead of two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptTarget {
    label: Box<str>,
    path: KeptPath,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum KeptPath {
    /// `base/label`
    Joined,
    /// `base/./label`
    JoinedDot,
    Own(Box<Path>),
}

impl KeptTarget {
    /// The compact form of `t`, found under `base`.
    pub fn new(base: &Path, t: &LocalTarget) -> Self {
        let is = |p: PathBuf| p.as_os_str() == t.path.as_os_str();
        let path = if is(base.join(&t.label)) {
            KeptPath::Joined
        } else if is(base.join(".").join(&t.label)) {
            KeptPath::JoinedDot
        } else {
            KeptPath::Own(t.path.as_path().into())
        };
        KeptTarget {
            label: t.label.as_str().into(),
            path,
        }
    }

    /// The target again (`base`: the one given to [`KeptTarget::new`]).
    pub fn target(&self, base: &Path) -> LocalTarget {
        LocalTarget {
            label: self.label.to_string(),
            path: match &self.path {
                KeptPath::Joined => base.join(&*self.label),
                KeptPath::JoinedDot => base.join(".").join(&*self.label),
                KeptPath::Own(p) => p.to_path_buf(),
            },
        }
    }

    /// Heap bytes kept (the label, and the path when kept).
    pub fn heap_bytes(&self) -> usize {
        self.label.len()
            + match &self.path {
                KeptPath::Own(p) => p.as_os_str().len(),
                _ => 0,
            }
    }
}

/// A pattern or folder that could not be searched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryProblem {
    pub label: String,
    pub reason: &'static str,
    pub message: String,
}

/// Targets found, plus configured entries that could not be searched.
#[derive(Debug, Default, Clone)]
pub struct Discovery {
    pub targets: Vec<LocalTarget>,
    pub problems: Vec<DiscoveryProblem>,
}

fn has_glob_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// Label of `path`: relative to `base` when inside it, with `/` separators.
fn label_for(base: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(base).unwrap_or(path);
    let s = rel.to_string_lossy().replace('\\', "/");
    s.strip_prefix("./").map(str::to_string).unwrap_or(s)
}

/// Expand `state_files` globs and walk `state_dirs` under `base`.
/// Literal (non-glob) files are always targets, so a missing one is reported.
pub fn discover(base: &Path, state_files: &[String], state_dirs: &[String]) -> Discovery {
    let mut d = Discovery::default();
    let mut seen_real: HashSet<PathBuf> = HashSet::new();
    let mut seen_label: HashSet<String> = HashSet::new();
    let mut add = |d: &mut Discovery, path: PathBuf| {
        let label = label_for(base, &path);
        // The same file reached by two paths (symlinks) is one target.
        let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if seen_real.insert(real) {
            if seen_label.insert(label.clone()) {
                d.targets.push(LocalTarget { label, path });
            } else {
                // Two files, one label (`a\\b.tfstate` and `a/b.tfstate`): report, never drop silently.
                d.problems.push(DiscoveryProblem {
                    message: format!(
                        "{} has the same label {label:?} as another state file (a `\\` in a file name reads as `/`); rename one of them",
                        path.display()
                    ),
                    label,
                    reason: "label_collision",
                });
            }
        }
    };
    for pat in state_files {
        let full = base.join(pat);
        if !has_glob_meta(pat) {
            add(&mut d, full);
            continue;
        }
        let full_s = full.to_string_lossy().to_string();
        match glob::glob(&full_s) {
            Ok(paths) => {
                for p in paths {
                    match p {
                        Ok(p) if p.is_file() => add(&mut d, p),
                        Ok(_) => {}
                        Err(e) => d.problems.push(unreadable(base, e.path(), e.error())),
                    }
                }
            }
            Err(e) => d.problems.push(DiscoveryProblem {
                label: pat.clone(),
                reason: "invalid_pattern",
                message: format!("state_files pattern {pat:?} is invalid: {e}"),
            }),
        }
    }
    for dir in state_dirs {
        let root = base.join(dir);
        if !root.is_dir() {
            d.problems.push(DiscoveryProblem {
                label: label_for(base, &root),
                reason: if root.exists() {
                    "not_a_directory"
                } else {
                    "not_found"
                },
                message: format!(
                    "state_dirs entry {} is not a readable directory",
                    root.display()
                ),
            });
            continue;
        }
        let walker = walkdir::WalkDir::new(&root)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                let name = e.file_name().to_string_lossy();
                !(e.file_type().is_dir()
                    && e.depth() > 0
                    && (name == ".terraform" || name == ".git"))
            });
        for entry in walker {
            match entry {
                Ok(e) => {
                    let name = e.file_name().to_string_lossy();
                    if e.file_type().is_file() && name.ends_with(".tfstate") {
                        add(&mut d, e.into_path());
                    }
                }
                // Symlink loops are skipped; an unreadable folder is a discovery error
                // (what is below it is unknown, never silently "no state").
                Err(e) => match (e.loop_ancestor(), e.io_error()) {
                    (None, Some(io)) => {
                        d.problems
                            .push(unreadable(base, e.path().unwrap_or(&root), io))
                    }
                    _ => {
                        tracing::debug!(dir = %root.display(), error = %e, "skipping during state discovery")
                    }
                },
            }
        }
    }
    d.targets.sort_by(|a, b| a.label.cmp(&b.label));
    d
}

/// A folder or file discovery could not read.
fn unreadable(base: &Path, path: &Path, e: &std::io::Error) -> DiscoveryProblem {
    DiscoveryProblem {
        label: label_for(base, path),
        reason: "unreadable",
        message: format!(
            "cannot search {}: {e}; states below it are not monitored",
            path.display()
        ),
    }
}

/// Render a sibling file name (`{stem}`: state file name without `.tfstate`; `{file}`: full name).
pub fn sibling_path(state: &Path, template: &str) -> PathBuf {
    let file = state
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = file.strip_suffix(".tfstate").unwrap_or(&file).to_string();
    let name = template.replace("{stem}", &stem).replace("{file}", &file);
    match state.parent() {
        Some(p) => p.join(name),
        None => PathBuf::from(name),
    }
}

#[cfg(test)]
mod tests {
    /// A kept target gives back the very label and path discovery found,
    /// whether or not its path is the base joined with its label.
    #[test]
    fn kept_targets_give_back_what_discovery_found() {
        let base = Path::new("/srv/states");
        let cases = [
            ("a/terraform.tfstate", "/srv/states/a/terraform.tfstate", false),
            // Outside the base (an absolute state_files entry).
            ("/elsewhere/x.tfstate", "/elsewhere/x.tfstate", false),
            // A `\\` in a file name reads as `/` in the label.
            ("a/b.tfstate", "/srv/states/a\\b.tfstate", true),
            // `state_dirs: ["."]`: the walk's root is `base/.`.
            ("a/c.tfstate", "/srv/states/./a/c.tfstate", false),
            // Not a joined path byte for byte.
            ("a/d.tfstate", "/srv/states//a/d.tfstate", true),
            ("a/e.tfstate", "/srv/states/././a/e.tfstate", true),
        ];
        for (label, path, kept_path) in cases {
            let t = LocalTarget {
                label: label.into(),
                path: path.into(),
            };
            let k = KeptTarget::new(base, &t);
            assert_eq!(k.target(base), t, "{label}");
            assert_eq!(matches!(k.path, KeptPath::Own(_)), kept_path, "{label}");
            let path_bytes = if kept_path { path.len() } else { 0 };
            assert_eq!(k.heap_bytes(), label.len() + path_bytes);
        }
    }

    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "{}").unwrap();
    }

    #[test]
    fn discovery_globs_dirs_skips_dot_terraform_and_dedups_links() {
        let t = tempfile::tempdir().unwrap();
        let b = t.path();
        touch(&b.join("terraform/terraform.tfstate"));
        touch(&b.join("terraform/environments/prod/terraform.tfstate"));
        touch(&b.join("terraform/environments/dev/terraform.tfstate"));
        touch(&b.join("terraform/.terraform/terraform.tfstate"));
        touch(&b.join("terraform/terraform.tfstate.backup"));
        std::os::unix::fs::symlink(b.join("terraform/environments"), b.join("terraform/link"))
            .unwrap();
        std::os::unix::fs::symlink(b.join("terraform"), b.join("terraform/environments/loop"))
            .unwrap();
        let d = discover(b, &[], &["terraform".into()]);
        let labels: Vec<&str> = d.targets.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(
            labels,
            vec![
                "terraform/environments/dev/terraform.tfstate",
                "terraform/environments/prod/terraform.tfstate",
                "terraform/terraform.tfstate"
            ]
        );
        let d = discover(
            b,
            &[
                "terraform/terraform.tfstate".into(),
                "terraform/environments/*/terraform.tfstate".into(),
                "missing.tfstate".into(),
            ],
            &["nope".into()],
        );
        assert_eq!(d.targets.len(), 4, "{:?}", d.targets);
        assert!(d.targets.iter().any(|t| t.label == "missing.tfstate"));
        assert_eq!(d.problems.len(), 1);
        assert_eq!(d.problems[0].reason, "not_found");
    }

    #[test]
    fn local_file_errors() {
        let t = tempfile::tempdir().unwrap();
        let dir = LocalFile {
            label: "d".into(),
            path: t.path().to_path_buf(),
            max_size: 10,
        };
        assert_eq!(dir.stamp().unwrap_err().metric_label(), "not_a_file");
        let big = t.path().join("big");
        std::fs::write(&big, vec![b' '; 11]).unwrap();
        let f = LocalFile {
            label: "b".into(),
            path: big,
            max_size: 10,
        };
        assert_eq!(f.open().err().unwrap().metric_label(), "too_large");
        let lp = t.path().join("loop");
        std::os::unix::fs::symlink(&lp, &lp).unwrap();
        let l = LocalFile {
            label: "l".into(),
            path: lp,
            max_size: 10,
        };
        assert_eq!(l.stamp().unwrap_err().metric_label(), "symlink_loop");
        let fifo = t.path().join("fifo");
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            let f = LocalFile {
                label: "f".into(),
                path: fifo,
                max_size: 10,
            };
            assert_eq!(f.open().err().unwrap().metric_label(), "not_a_file");
        }
    }

    #[test]
    fn sibling_names() {
        assert_eq!(
            sibling_path(Path::new("a/b/prod.tfstate"), "{stem}.drift.json"),
            PathBuf::from("a/b/prod.drift.json")
        );
        assert_eq!(
            sibling_path(Path::new("a/terraform.tfstate"), "{file}.approved"),
            PathBuf::from("a/terraform.tfstate.approved")
        );
        assert_eq!(
            sibling_path(Path::new("a/terraform.tfstate"), "drift.json"),
            PathBuf::from("a/drift.json")
        );
    }
}

//! Certificate files on disk: discovery (files, globs, folders searched
//! recursively with symlinks followed) and reading. Blocking I/O: run it off
//! the async runtime.
//!
//! A file reached through several paths (certbot `live/` links, Kubernetes
//! `..data` secret mounts, hard links) is read and reported once, under its
//! most stable name. Folder symlink loops are survived (skipped); a path that
//! is itself a loop or a dangling link is reported as a failed source.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use walkdir::WalkDir;

use super::parse::{is_kubeconfig_text, parse_file, ParseError, Parsed};

/// File name extensions read when searching a folder.
pub const CERT_EXTENSIONS: &[&str] = &[
    "pem",
    "crt",
    "cer",
    "cert",
    "der",
    "p12",
    "pfx",
    "jks",
    "jceks",
    "kubeconfig",
];

/// ELOOP on Linux and the BSDs/macOS.
fn is_loop(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(40) | Some(62))
}

/// Why a file source failed. Quotes paths, never contents.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}: no such file or folder")]
    NotFound(String),
    #[error("{0}: pattern matched no file")]
    NoMatches(String),
    #[error("{0}: dangling symlink (its target does not exist)")]
    DanglingSymlink(String),
    #[error("{0}: symlink loop")]
    SymlinkLoop(String),
    #[error("{0}: permission denied; give the exporter's user read access")]
    PermissionDenied(String),
    #[error("{path}: {size} bytes is larger than max_file_size ({max} bytes)")]
    TooLarge { path: String, size: u64, max: u64 },
    #[error("{0}: `~` cannot be expanded: the exporter's HOME is not set; write the full path")]
    NoHome(String),
    #[error(
        "{0}: only `~/` (the exporter's own home) is expanded, not `~user/`; write the full path"
    )]
    TildeUser(String),
    #[error("{0}: not a regular file")]
    NotAFile(String),
    #[error(
        "{0}: folder holds no certificate files (.pem, .crt, .cer, .cert, .der, .p12, .pfx, .jks, .jceks, .kubeconfig, or a kubeconfig by content)"
    )]
    NoFiles(String),
    #[error("{dir}: folder holds no readable certificate file; {file} could not be opened to check whether it is a kubeconfig (permission denied): give the exporter's user read access")]
    NoReadableFiles { dir: String, file: String },
    #[error("{path}: cannot read ({kind})")]
    Io {
        path: String,
        kind: std::io::ErrorKind,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: ParseError,
    },
    #[error("{path}: PKCS#12 passphrase unavailable: {reason}")]
    Passphrase { path: String, reason: String },
}

impl FileError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            FileError::NotFound(_)
            | FileError::NoMatches(_)
            | FileError::NoHome(_)
            | FileError::TildeUser(_) => "not_found",
            FileError::DanglingSymlink(_) => "dangling_symlink",
            FileError::SymlinkLoop(_) => "symlink_loop",
            FileError::PermissionDenied(_) | FileError::NoReadableFiles { .. } => {
                "permission_denied"
            }
            FileError::TooLarge { .. } => "too_large",
            FileError::NotAFile(_) => "not_a_file",
            FileError::NoFiles(_) => "no_files",
            FileError::Io { .. } => "io",
            FileError::Parse { source, .. } => source.metric_label(),
            FileError::Passphrase { .. } => "passphrase_unavailable",
        }
    }

    fn from_io(label: &str, e: &std::io::Error, was_symlink: bool) -> FileError {
        let label = label.to_string();
        if is_loop(e) {
            return FileError::SymlinkLoop(label);
        }
        match e.kind() {
            std::io::ErrorKind::NotFound if was_symlink => FileError::DanglingSymlink(label),
            std::io::ErrorKind::NotFound => FileError::NotFound(label),
            std::io::ErrorKind::PermissionDenied => FileError::PermissionDenied(label),
            kind => FileError::Io { path: label, kind },
        }
    }
}

/// One file to read: its label (as configured/discovered, relative to the base) and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTarget {
    pub label: String,
    pub path: PathBuf,
}

/// The result of discovery: files to read, and sources that failed already.
#[derive(Debug, Default)]
pub struct Discovery {
    pub files: Vec<FileTarget>,
    pub problems: Vec<(String, FileError)>,
    /// Paths skipped because they were reached a second time (link farms).
    pub duplicates: usize,
}

struct Candidate {
    label: String,
    path: PathBuf,
    key: (u64, u64),
}

/// Where a configured path is anchored: `~/` at the exporter's home, a relative
/// path at the config file's folder, an absolute path nowhere.
enum Anchor {
    Home(PathBuf),
    Base(PathBuf),
    Absolute,
}

/// `~` or `~/...`: the rest after `~/` (empty for `~` alone). `~user/` is not expanded.
fn home_relative(pat: &str) -> Option<&str> {
    if pat == "~" {
        Some("")
    } else {
        pat.strip_prefix("~/")
    }
}

/// `~user/...`: another user's home, which is not expanded (a file named
/// `~backup.pem` is just a relative path).
fn names_another_home(pat: &str) -> bool {
    match pat.strip_prefix('~').and_then(|r| r.split_once('/')) {
        Some((user, _)) => {
            !user.is_empty()
                && user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        }
        None => false,
    }
}

/// The exporter's own home folder (`HOME`), used to expand a leading `~/`.
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// A configured file path (`ca_file`, `pkcs12_passphrase_file`): `~/` expands to
/// `home`, a relative path is under `base`.
pub fn resolve(base: &Path, home: Option<&Path>, path: &str) -> PathBuf {
    match (home_relative(path), home) {
        (Some(rest), Some(h)) => h.join(rest),
        _ => base.join(path),
    }
}

/// Find every certificate file named by `patterns` (files, globs, folders).
/// `home` expands a leading `~/` (the exporter's own home, not the config file owner's).
pub fn discover(
    base: &Path,
    home: Option<&Path>,
    patterns: &[String],
    max_depth: usize,
) -> Discovery {
    let mut cands: Vec<Candidate> = Vec::new();
    let mut out = Discovery::default();
    for pat in patterns {
        if names_another_home(pat) {
            out.problems
                .push((pat.clone(), FileError::TildeUser(pat.clone())));
            continue;
        }
        let (anchor, rel) = match (home_relative(pat), home) {
            (Some(rest), Some(h)) => (Anchor::Home(h.to_path_buf()), rest),
            (Some(_), None) => {
                out.problems
                    .push((pat.clone(), FileError::NoHome(pat.clone())));
                continue;
            }
            (None, _) if Path::new(pat).is_absolute() => (Anchor::Absolute, pat.as_str()),
            (None, _) => (Anchor::Base(base.to_path_buf()), pat.as_str()),
        };
        let full = match &anchor {
            Anchor::Home(h) => h.join(rel),
            Anchor::Base(b) => b.join(rel),
            Anchor::Absolute => PathBuf::from(rel),
        };
        let label_of = |p: &Path| -> String {
            match &anchor {
                Anchor::Absolute => p.display().to_string(),
                Anchor::Base(b) => {
                    let s = p.strip_prefix(b).unwrap_or(p).display().to_string();
                    if s.is_empty() {
                        ".".into()
                    } else {
                        s
                    }
                }
                Anchor::Home(h) => match p.strip_prefix(h) {
                    Ok(r) if r.as_os_str().is_empty() => "~".into(),
                    Ok(r) => format!("~/{}", r.display()),
                    Err(_) => p.display().to_string(),
                },
            }
        };
        if pat.contains(['*', '?', '[']) {
            // The base folder is literal: only the configured part is a pattern.
            let pattern = match &anchor {
                Anchor::Absolute => pat.clone(),
                Anchor::Base(dir) | Anchor::Home(dir) => {
                    let b = glob::Pattern::escape(&dir.to_string_lossy());
                    format!("{}/{}", b.trim_end_matches('/'), rel)
                }
            };
            let Ok(paths) = glob::glob(&pattern) else {
                // Validated at load; only a non-UTF-8 base could get here.
                out.problems
                    .push((pat.clone(), FileError::NoMatches(pat.clone())));
                continue;
            };
            let mut any = false;
            for entry in paths {
                any = true;
                match entry {
                    Ok(p) => add_path(
                        &p,
                        &label_of(&p),
                        max_depth,
                        &label_of,
                        &mut cands,
                        &mut out,
                    ),
                    Err(e) => {
                        let l = label_of(e.path());
                        let err = FileError::from_io(&l, e.error(), false);
                        out.problems.push((l, err));
                    }
                }
            }
            if !any {
                out.problems
                    .push((pat.clone(), FileError::NoMatches(pat.clone())));
            }
        } else {
            // Keep the label as written ("certs/" stays "certs/").
            add_path(&full, pat, max_depth, &label_of, &mut cands, &mut out);
        }
    }
    // One file, one report: group by (device, inode), keep the most stable name.
    let mut groups: HashMap<(u64, u64), Vec<Candidate>> = HashMap::new();
    for c in cands {
        groups.entry(c.key).or_default().push(c);
    }
    for (_, mut group) in groups {
        group.sort_by_cached_key(rank);
        out.duplicates += group.len() - 1;
        if let Some(best) = group.into_iter().next() {
            out.files.push(FileTarget {
                label: best.label,
                path: best.path,
            });
        }
    }
    out.files.sort_by(|a, b| a.label.cmp(&b.label));
    let mut seen = std::collections::HashSet::new();
    out.problems.retain(|(l, _)| seen.insert(l.clone()));
    out.problems.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Lower is better: no hidden (`..data`, `.x`) folder, reached through a link
/// (a stable name such as certbot's `live/`), shallow, then by name.
fn rank(c: &Candidate) -> (bool, bool, usize, String) {
    let label = Path::new(&c.label);
    let hidden = label.components().any(|comp| match comp {
        Component::Normal(s) => s.to_string_lossy().starts_with('.'),
        _ => false,
    });
    let via_link = match (std::fs::canonicalize(&c.path), std::path::absolute(&c.path)) {
        (Ok(canon), Ok(abs)) => canon != abs,
        _ => false,
    };
    (
        hidden,
        !via_link,
        label.components().count(),
        c.label.clone(),
    )
}

fn add_path(
    p: &Path,
    label: &str,
    max_depth: usize,
    label_of: &dyn Fn(&Path) -> String,
    cands: &mut Vec<Candidate>,
    out: &mut Discovery,
) {
    let lmeta = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) => {
            out.problems
                .push((label.to_string(), FileError::from_io(label, &e, false)));
            return;
        }
    };
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) => {
            let err = FileError::from_io(label, &e, lmeta.file_type().is_symlink());
            out.problems.push((label.to_string(), err));
            return;
        }
    };
    if meta.is_file() {
        cands.push(Candidate {
            label: label.to_string(),
            path: p.to_path_buf(),
            key: file_key(&meta),
        });
    } else if meta.is_dir() {
        walk(p, label, max_depth, label_of, cands, out);
    } else {
        out.problems
            .push((label.to_string(), FileError::NotAFile(label.to_string())));
    }
}

fn walk(
    dir: &Path,
    dir_label: &str,
    max_depth: usize,
    label_of: &dyn Fn(&Path) -> String,
    cands: &mut Vec<Candidate>,
    out: &mut Discovery,
) {
    let before = cands.len();
    let mut errors = 0usize;
    // A file that could not be opened to check for a kubeconfig (e.g. a 0600 ~/.kube/config).
    let mut denied: Option<String> = None;
    let walker = WalkDir::new(dir)
        .follow_links(true)
        .max_depth(max_depth.max(1))
        .sort_by_file_name();
    for entry in walker {
        match entry {
            Ok(e) => {
                if e.file_type().is_file() {
                    let wanted = is_cert_name(e.path())
                        || match e.metadata().map(|m| kubeconfig_sniff(e.path(), m.len())) {
                            Ok(Sniff::Kubeconfig) => true,
                            Ok(Sniff::Denied) => {
                                denied.get_or_insert_with(|| label_of(e.path()));
                                false
                            }
                            _ => false,
                        };
                    if !wanted {
                        continue;
                    }
                    match e.metadata() {
                        Ok(m) => cands.push(Candidate {
                            label: label_of(e.path()),
                            path: e.path().to_path_buf(),
                            key: file_key(&m),
                        }),
                        Err(err) => {
                            let l = label_of(e.path());
                            if let Some(io) = err.io_error() {
                                out.problems
                                    .push((l.clone(), FileError::from_io(&l, io, false)));
                                errors += 1;
                            }
                        }
                    }
                }
            }
            Err(err) => {
                if let Some(ancestor) = err.loop_ancestor() {
                    // A folder link back up the tree: everything below was already seen.
                    tracing::debug!(monitor = "certificate_expiry", path = %err.path().map(|p| p.display().to_string()).unwrap_or_default(), ancestor = %ancestor.display(), "skipping a folder symlink loop");
                    continue;
                }
                let Some(path) = err.path() else { continue };
                let is_root = path == dir;
                if !is_root && !is_cert_name(path) {
                    // Unreadable entries that would not be read anyway (a dangling `README` link).
                    let is_dir_error = err
                        .io_error()
                        .map(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
                        .unwrap_or(false);
                    if !is_dir_error {
                        continue;
                    }
                }
                let l = if is_root {
                    dir_label.to_string()
                } else {
                    label_of(path)
                };
                let was_link = std::fs::symlink_metadata(path)
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(false);
                let fe = match err.io_error() {
                    Some(io) => FileError::from_io(&l, io, was_link),
                    None => FileError::Io {
                        path: l.clone(),
                        kind: std::io::ErrorKind::Other,
                    },
                };
                out.problems.push((l, fe));
                errors += 1;
            }
        }
    }
    if cands.len() == before && errors == 0 {
        let err = match denied {
            // Not "no certificates here": a file that may be one could not be opened.
            Some(file) => FileError::NoReadableFiles {
                dir: dir_label.to_string(),
                file,
            },
            None => FileError::NoFiles(dir_label.to_string()),
        };
        out.problems.push((dir_label.to_string(), err));
    }
}

/// Largest file read to recognise a kubeconfig by its content (`~/.kube/config`,
/// `k3s.yaml`); larger files without a certificate name are not opened.
pub const KUBECONFIG_SNIFF_MAX: u64 = 1 << 20;

#[derive(Debug, PartialEq, Eq)]
enum Sniff {
    Kubeconfig,
    Other,
    /// Permission denied: it cannot be told.
    Denied,
}

/// A kubeconfig whatever its name: small, text, `kind: Config` with `apiVersion`
/// and `clusters` or `users`.
fn kubeconfig_sniff(path: &Path, size: u64) -> Sniff {
    if size == 0 || size > KUBECONFIG_SNIFF_MAX {
        return Sniff::Other;
    }
    match crate::core::safe_open::open(path) {
        Ok(file) if is_kubeconfig_file(&file) => Sniff::Kubeconfig,
        Ok(_) => Sniff::Other,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Sniff::Denied,
        Err(_) => Sniff::Other,
    }
}

fn is_kubeconfig_file(file: &std::fs::File) -> bool {
    let mut buf = Vec::new();
    let mut file = file.take(KUBECONFIG_SNIFF_MAX);
    // Binary files (NUL bytes in the first 4 KiB) are not read further.
    if (&mut file).take(4096).read_to_end(&mut buf).is_err() || buf.contains(&0) {
        buf.fill(0);
        return false;
    }
    let found = file.read_to_end(&mut buf).is_ok()
        && std::str::from_utf8(&buf).is_ok_and(is_kubeconfig_text);
    // Kubeconfigs hold client keys and tokens: do not leave them in freed memory.
    buf.fill(0);
    found
}

fn is_cert_name(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if name == "kubeconfig" {
        return true;
    }
    match name.rsplit_once('.') {
        Some((_, ext)) => CERT_EXTENSIONS.contains(&ext),
        None => false,
    }
}

#[cfg(unix)]
fn file_key(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn file_key(m: &std::fs::Metadata) -> (u64, u64) {
    // No inode: fall back to size and mtime (content dedup is best-effort there).
    let t = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (m.len(), t)
}

/// A file's bytes, at most `max_size` (else `too_large`). `label` names it in errors.
pub(super) fn read_bounded(path: &Path, label: &str, max_size: u64) -> Result<Vec<u8>, FileError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        // The name exists but what it points to does not: a dangling link.
        let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        FileError::from_io(label, &e, link)
    })?;
    if !meta.is_file() {
        return Err(FileError::NotAFile(label.to_string()));
    }
    if meta.len() > max_size {
        return Err(FileError::TooLarge {
            path: label.to_string(),
            size: meta.len(),
            max: max_size,
        });
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    let file = crate::core::safe_open::open(path).map_err(|e| FileError::from_io(label, &e, false))?;
    file.take(max_size + 1)
        .read_to_end(&mut buf)
        .map_err(|e| FileError::from_io(label, &e, false))?;
    if buf.len() as u64 > max_size {
        buf.fill(0);
        return Err(FileError::TooLarge {
            path: label.to_string(),
            size: buf.len() as u64,
            max: max_size,
        });
    }
    Ok(buf)
}

fn extension(p: &Path) -> Option<String> {
    p.extension().map(|e| e.to_string_lossy().to_lowercase())
}

/// Read and parse one file. `passphrase`: `Ok(None)` none configured, `Err` configured but unavailable.
pub fn read_target(
    t: &FileTarget,
    max_size: u64,
    passphrase: &Result<Option<String>, String>,
) -> Result<Parsed, FileError> {
    let label = t.label.as_str();
    let mut buf = read_bounded(&t.path, label, max_size)?;
    let pass = passphrase.as_ref().ok().and_then(|p| p.as_deref());
    let result = parse_file(&buf, extension(&t.path).as_deref(), pass);
    // Files may hold private keys: do not leave them in freed memory.
    buf.fill(0);
    let mut parsed = result.map_err(|source| match (&source, passphrase) {
        (ParseError::PassphraseRequired, Err(reason)) => FileError::Passphrase {
            path: label.to_string(),
            reason: reason.clone(),
        },
        _ => FileError::Parse {
            path: label.to_string(),
            source,
        },
    })?;
    // A kubeconfig that names certificate files (minikube) is checked through them,
    // as kubectl reads them: relative to the kubeconfig's folder.
    let dir = t.path.parent().unwrap_or(Path::new("."));
    for r in std::mem::take(&mut parsed.file_refs) {
        let shown: String = r.path.chars().take(256).collect();
        let what = format!("{label}: kubeconfig {} {} {shown}", r.entry, r.field);
        let path = dir.join(&r.path);
        let mut bytes = read_bounded(&path, &what, max_size)?;
        let result = parse_file(&bytes, extension(&path).as_deref(), None);
        bytes.fill(0);
        let offset = parsed.certs.len();
        let more = result.map_err(|source| FileError::Parse {
            path: what,
            source: super::parse::shift_index(source, offset),
        })?;
        parsed.certs.extend(more.certs);
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_searched_in_folders() {
        for yes in [
            "a.pem",
            "b.CRT",
            "x/y.der",
            "k.p12",
            "kubeconfig",
            "c.kubeconfig",
            "tls.crt",
        ] {
            assert!(is_cert_name(Path::new(yes)), "{yes}");
        }
        for no in ["a.key", "README", "x.yaml", "pem"] {
            assert!(!is_cert_name(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn glob_metacharacters_in_the_base_folder_are_literal() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("we[ir]d*");
        std::fs::create_dir(&base).unwrap();
        std::fs::write(base.join("a.pem"), b"x").unwrap();
        std::fs::write(base.join("b.crt"), b"x").unwrap();
        let found = discover(&base, None, &["*.pem".into(), "missing/*.pem".into()], 4);
        let labels: Vec<_> = found.files.iter().map(|f| f.label.as_str()).collect();
        assert_eq!(labels, ["a.pem"]);
        assert_eq!(found.problems.len(), 1);
        assert_eq!(found.problems[0].1.metric_label(), "not_found");
    }

    #[cfg(unix)]
    #[test]
    fn link_farm_is_reported_once_under_the_stable_name() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("secret/..2024_01_01")).unwrap();
        std::fs::write(root.join("secret/..2024_01_01/tls.crt"), b"x").unwrap();
        symlink("..2024_01_01", root.join("secret/..data")).unwrap();
        symlink("..data/tls.crt", root.join("secret/tls.crt")).unwrap();
        symlink("..", root.join("secret/loop")).unwrap();
        let found = discover(root, None, &["secret".into()], 16);
        let labels: Vec<_> = found.files.iter().map(|f| f.label.as_str()).collect();
        assert_eq!(labels, ["secret/tls.crt"]);
        assert!(found.duplicates >= 2, "{}", found.duplicates);
        assert!(found.problems.is_empty(), "{:?}", found.problems);
    }

    #[test]
    fn tilde_is_the_exporters_home() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let base = d.path().join("etc");
        std::fs::create_dir_all(home.join(".kube")).unwrap();
        std::fs::create_dir_all(home.join("certs")).unwrap();
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(home.join(".kube/config"), b"x").unwrap();
        std::fs::write(home.join("certs/a.pem"), b"x").unwrap();
        let pats = [
            "~/.kube/config".to_string(),
            "~/certs/*.pem".into(),
            "~/certs".into(),
        ];
        let found = discover(&base, Some(&home), &pats, 4);
        assert!(found.problems.is_empty(), "{:?}", found.problems);
        let labels: Vec<_> = found.files.iter().map(|f| f.label.as_str()).collect();
        assert_eq!(labels, ["~/.kube/config", "~/certs/a.pem"]);
        assert_eq!(found.files[0].path, home.join(".kube/config"));
        // No HOME, or another user's home: a clear failure, never a silent skip.
        let found = discover(&base, None, &pats[..1], 4);
        assert_eq!(found.problems[0].1.metric_label(), "not_found");
        assert!(
            found.problems[0].1.to_string().contains("HOME is not set"),
            "{}",
            found.problems[0].1
        );
        let found = discover(&base, Some(&home), &["~root/x.pem".into()], 4);
        assert!(found.problems[0].1.to_string().contains("~user/"));
        // A file whose name starts with `~` is an ordinary relative path.
        std::fs::write(base.join("~old.pem"), b"x").unwrap();
        let found = discover(&base, Some(&home), &["~old.pem".into()], 4);
        assert_eq!(found.files[0].path, base.join("~old.pem"));
        assert_eq!(resolve(&base, Some(&home), "~/ca.pem"), home.join("ca.pem"));
        assert_eq!(resolve(&base, Some(&home), "ca.pem"), base.join("ca.pem"));
    }

    #[test]
    fn kubeconfigs_in_folders_are_found_by_content_not_name() {
        let d = tempfile::tempdir().unwrap();
        let kube = d.path().join(".kube");
        std::fs::create_dir_all(kube.join("cache/discovery/127.0.0.1_6443/v1")).unwrap();
        let config = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n  name: home\nkind: Config\nusers: []\n";
        std::fs::write(kube.join("config"), config).unwrap();
        std::fs::write(kube.join("k3s.yaml"), config).unwrap();
        std::fs::write(
            kube.join("cache/discovery/127.0.0.1_6443/v1/serverresources.json"),
            r#"{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"v1","resources":[]}"#,
        )
        .unwrap();
        std::fs::write(kube.join("notes.txt"), "clusters and users\n").unwrap();
        // Too large to be opened by content (it would match if read).
        let mut big = config.as_bytes().to_vec();
        big.resize(KUBECONFIG_SNIFF_MAX as usize + 1, b'#');
        std::fs::write(kube.join("big"), big).unwrap();
        let found = discover(d.path(), None, &[".kube".into()], 16);
        let labels: Vec<_> = found.files.iter().map(|f| f.label.as_str()).collect();
        assert_eq!(labels, [".kube/config", ".kube/k3s.yaml"]);
        assert!(found.problems.is_empty(), "{:?}", found.problems);
    }
}

//! PostgreSQL `backup_manifest` (written by `pg_basebackup`, PostgreSQL 13+).
//!
//! `path` is a manifest file, a backup folder holding `backup_manifest`, or a
//! glob matching several (`pg/*/backup_manifest`, one folder per backup). Each
//! manifest is one backup (`pg_basebackup` writes the manifest last, so a
//! failed run leaves none); its size and file count are the sums over the
//! files it lists.
//!
//! **Time.** A backup's time is when it *started*, as the server recorded it:
//! the `Last-Modified` (GMT) of the `backup_label` entry in the manifest, which
//! the server stamps when it creates the label at the start of the backup.
//! PostgreSQL records no end time. The manifest file's own mtime is used only
//! when it is earlier (clock skew between hosts) or when the manifest has no
//! `backup_label` entry, so copying a backup without keeping times (`cp`
//! without `-p`, some sync tools) does not make an old backup look fresh.
//!
//! The newest manifest is verified:
//! - always: its own `Manifest-Checksum`, a SHA-256 over the file up to and
//!   including the newline before the `"Manifest-Checksum"` line;
//! - `verify: sizes`: every listed file exists in the manifest's folder with the
//!   listed size, and, like `pg_verifybackup`, every file in the folder is
//!   listed ("present on disk but not in the manifest" fails);
//! - `verify: checksums`: and its content matches the listed checksum (CRC32C,
//!   SHA224/256/384/512), hashing at most `verify_max_bytes` per check; results
//!   are cached by size and mtime, so unchanged files are hashed once.
//!
//! Like `pg_verifybackup`, `backup_manifest`, `pg_wal/` (WAL is not parsed
//! here: `pg_verifybackup` does that with `pg_waldump`) and the files that
//! `pg_basebackup -R` writes (`postgresql.auto.conf`, `standby.signal`,
//! `recovery.signal`) in the backup's top folder are not checked. Keep logs
//! and marker files outside the backup folder. File checks need a
//! plain-format (`-Fp`) backup. A manifest that cannot be read or parsed
//! makes `backup_verification_success` 0.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha2::Digest;

use super::files::{expand, Cache};
use super::verify::{hex_decode, verify_files, Algorithm, HashCache, ListedFile};
use super::{from_json, BackupError, BackupRecord, ParseError, SourceCtx, SourceRead};

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct PgManifest {
    pub version: u64,
    pub files: Vec<ListedFile>,
    /// The `Manifest-Checksum` matches the file's content.
    pub checksum_ok: bool,
    pub wal_ranges: usize,
    /// When the backup started: the `Last-Modified` of its `backup_label` entry.
    pub started: Option<f64>,
}

impl PgManifest {
    pub fn total_size(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |a, f| a.saturating_add(f.size))
    }
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "PostgreSQL-Backup-Manifest-Version")]
    version: u64,
    #[serde(rename = "Files")]
    files: Vec<RawFile>,
    #[serde(rename = "WAL-Ranges", default)]
    wal_ranges: Vec<serde_json::Value>,
    #[serde(rename = "Manifest-Checksum")]
    checksum: String,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(rename = "Path", default)]
    path: Option<String>,
    #[serde(rename = "Encoded-Path", default)]
    encoded_path: Option<String>,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "Last-Modified", default)]
    last_modified: Option<String>,
    #[serde(rename = "Checksum-Algorithm", default)]
    algorithm: Option<String>,
    #[serde(rename = "Checksum", default)]
    checksum: Option<String>,
}

/// The bytes covered by `Manifest-Checksum`: everything up to and including the
/// second-to-last newline (the file must end with a newline).
fn checksummed_part(bytes: &[u8]) -> Result<&[u8], ParseError> {
    if bytes.last() != Some(&b'\n') {
        return Err(ParseError::Invalid(
            "the manifest does not end with a newline (truncated?)".into(),
        ));
    }
    let body = &bytes[..bytes.len() - 1];
    let Some(nl) = body.iter().rposition(|b| *b == b'\n') else {
        return Err(ParseError::Invalid(
            "the manifest has fewer than two lines".into(),
        ));
    };
    if !body[nl + 1..].starts_with(b"\"Manifest-Checksum\"") {
        return Err(ParseError::Invalid(
            "the last line of the manifest is not its Manifest-Checksum".into(),
        ));
    }
    Ok(&bytes[..=nl])
}

/// A listed path, as a safe relative path (no `..`, not absolute).
fn safe_relative(p: &str) -> bool {
    let path = Path::new(p);
    !p.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Parse a `backup_manifest` and check its own checksum.
pub fn parse(bytes: &[u8]) -> Result<PgManifest, ParseError> {
    let raw: Raw = from_json(bytes)?;
    if !(1..=2).contains(&raw.version) {
        return Err(ParseError::Invalid(format!(
            "unsupported PostgreSQL-Backup-Manifest-Version {} (1 and 2 are known)",
            raw.version
        )));
    }
    let expected = hex_decode(&raw.checksum)
        .filter(|h| h.len() == 32)
        .ok_or_else(|| ParseError::Invalid("Manifest-Checksum is not a SHA-256 in hex".into()))?;
    let covered = checksummed_part(bytes)?;
    let checksum_ok = sha2::Sha256::digest(covered).as_slice() == expected.as_slice();
    let mut files = Vec::with_capacity(raw.files.len());
    let mut started = None;
    for (i, f) in raw.files.into_iter().enumerate() {
        let path = match (f.path, f.encoded_path) {
            (Some(p), _) => p,
            (None, Some(e)) => hex_decode(&e)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ParseError::Invalid(format!(
                        "Files[{i}]: Encoded-Path is not hex of a UTF-8 name"
                    ))
                })?,
            (None, None) => return Err(ParseError::Invalid(format!("Files[{i}] has no Path"))),
        };
        if !safe_relative(&path) {
            return Err(ParseError::Invalid(format!(
                "Files[{i}]: Path leaves the backup folder"
            )));
        }
        let checksum = match f.algorithm.as_deref().map(str::trim) {
            None | Some("NONE") | Some("none") => None,
            Some(name) => {
                let algo = Algorithm::from_pg_name(name).ok_or_else(|| {
                    ParseError::Invalid(format!("Files[{i}]: unknown Checksum-Algorithm"))
                })?;
                let sum = f
                    .checksum
                    .as_deref()
                    .and_then(hex_decode)
                    .filter(|h| h.len() == algo.digest_len())
                    .ok_or_else(|| {
                        ParseError::Invalid(format!(
                            "Files[{i}]: Checksum is not a hex digest of its algorithm"
                        ))
                    })?;
                Some((algo, sum))
            }
        };
        if path == "backup_label" {
            started = f.last_modified.as_deref().and_then(parse_last_modified);
        }
        files.push(ListedFile {
            path,
            size: f.size,
            checksum,
        });
    }
    Ok(PgManifest {
        version: raw.version,
        files,
        checksum_ok,
        wal_ranges: raw.wal_ranges.len(),
        started,
    })
}

/// A manifest `Last-Modified`: `2026-11-30 15:57:07 GMT` (always GMT).
pub fn parse_last_modified(s: &str) -> Option<f64> {
    let civil = s.trim().strip_suffix("GMT")?.trim().replacen(' ', "T", 1);
    let dt: jiff::civil::DateTime = civil.parse().ok()?;
    jiff::tz::TimeZone::UTC
        .to_timestamp(dt)
        .ok()
        .map(super::ts_secs)
}

/// The backup's time: when it started (`started`), or the manifest file's
/// mtime when that is earlier or the start is not recorded.
pub fn backup_time(started: Option<f64>, manifest_mtime: Option<f64>) -> f64 {
    match (started, manifest_mtime) {
        (Some(s), Some(m)) => s.min(m),
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => 0.0,
    }
}

/// Paths `pg_verifybackup` ignores: these names in the backup's top folder and
/// everything below them.
const IGNORED: [&str; 5] = [
    "backup_manifest",
    "pg_wal",
    "postgresql.auto.conf",
    "recovery.signal",
    "standby.signal",
];

/// Does `pg_verifybackup` ignore this path (relative, `/`-separated)?
pub fn ignored(rel: &str) -> bool {
    IGNORED.iter().any(|i| {
        rel.strip_prefix(i)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Folders deeper than this are not entered (a symbolic-link loop); a data
/// folder is a few levels deep (`pg_tblspc/OID/PG_15_.../DBOID/file`).
const MAX_DEPTH: usize = 32;

/// Entries under `root` that the manifest does not list, as `pg_verifybackup`
/// finds them: regular files not in `listed`, and entries that are neither a
/// file nor a folder (symbolic links are followed). Returns (unlisted,
/// unreadable), `/`-separated relative paths, sorted.
pub fn unlisted_files(
    root: &Path,
    listed: &std::collections::HashSet<&str>,
) -> (Vec<String>, Vec<String>) {
    let (mut unlisted, mut unreadable) = (Vec::new(), Vec::new());
    let mut stack = vec![(root.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, rel, depth)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(_) => {
                unreadable.push(if rel.is_empty() { ".".into() } else { rel });
                continue;
            }
        };
        for ent in entries {
            let Ok(ent) = ent else {
                unreadable.push(rel.clone());
                break;
            };
            let name = ent.file_name().to_string_lossy().into_owned();
            let relpath = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if ignored(&relpath) {
                continue;
            }
            match std::fs::metadata(ent.path()) {
                Ok(md) if md.is_dir() => {
                    if depth + 1 < MAX_DEPTH {
                        stack.push((ent.path(), relpath, depth + 1));
                    } else {
                        unreadable.push(relpath);
                    }
                }
                Ok(md) if md.is_file() => {
                    if !listed.contains(relpath.as_str()) {
                        unlisted.push(relpath);
                    }
                }
                Ok(_) => unlisted.push(relpath),
                Err(_) => unreadable.push(relpath),
            }
        }
    }
    unlisted.sort();
    unreadable.sort();
    (unlisted, unreadable)
}

/// A `pg_basebackup -Ft` folder: `base.tar[.gz|.lz4|.zst]` and no `PG_VERSION`.
fn is_tar_format(root: &Path) -> bool {
    !root.join("PG_VERSION").exists()
        && ["base.tar", "base.tar.gz", "base.tar.lz4", "base.tar.zst"]
            .iter()
            .any(|n| root.join(n).is_file())
}

#[derive(Default)]
pub(crate) struct State {
    manifests: Cache<PgManifest>,
    hashes: HashCache,
}

fn manifest_paths(ctx: &SourceCtx<'_>) -> Result<Vec<PathBuf>, BackupError> {
    Ok(expand(ctx.base, &ctx.cfg.path)?
        .into_iter()
        .map(|p| {
            if p.is_dir() {
                p.join("backup_manifest")
            } else {
                p
            }
        })
        .collect())
}

pub(crate) fn read(ctx: &SourceCtx<'_>, st: &mut State) -> SourceRead {
    // A manifest that cannot be read is a backup that does not verify.
    match read_manifests(ctx, st) {
        Ok(read) => read,
        Err(e) => SourceRead::main_failed(e, Some(false)),
    }
}

fn read_manifests(ctx: &SourceCtx<'_>, st: &mut State) -> Result<SourceRead, BackupError> {
    let paths = manifest_paths(ctx)?;
    st.manifests.retain(&paths);
    let mut loaded = Vec::with_capacity(paths.len());
    for p in &paths {
        let (m, stamp) = st.manifests.load(p, ctx.max_file_size, parse)?;
        let mtime = stamp.modified.map(crate::core::clock::unix_seconds);
        loaded.push((p, backup_time(m.started, mtime), m));
    }
    let mut read = SourceRead::default();
    for (_, time, m) in &loaded {
        read.records.push(BackupRecord {
            group: String::new(),
            time: *time,
            size: Some(m.total_size()),
            files: Some(m.files.len() as u64),
            success: true,
        });
    }
    let Some((path, _, newest)) = loaded.iter().max_by(|a, b| a.1.total_cmp(&b.1)) else {
        return Ok(read);
    };
    if newest.started.is_none() {
        read.notes.push(
            "no backup_label entry in the newest manifest: its time is the manifest file's mtime"
                .into(),
        );
    }
    let root = path.parent().unwrap_or(Path::new("."));
    if ctx.cfg.verify != super::config::VerifyMode::None && is_tar_format(root) {
        read.findings.push(format!(
            "{} holds a tar-format backup: listed files cannot be checked on disk (verify needs pg_basebackup -Fp)",
            root.display()
        ));
        read.verification = Some(newest.checksum_ok);
        if !newest.checksum_ok {
            read.findings.push(format!(
                "{}: Manifest-Checksum does not match the manifest",
                path.display()
            ));
        }
        return Ok(read);
    }
    let checked: Vec<ListedFile> = newest
        .files
        .iter()
        .filter(|f| !ignored(&f.path))
        .cloned()
        .collect();
    let mut outcome = verify_files(
        root,
        &checked,
        ctx.cfg.verify,
        ctx.cfg.verify_max_bytes.0,
        &mut st.hashes,
    );
    if ctx.cfg.verify != super::config::VerifyMode::None {
        let listed: std::collections::HashSet<&str> =
            newest.files.iter().map(|f| f.path.as_str()).collect();
        let (unlisted, unreadable) = unlisted_files(root, &listed);
        outcome.unlisted = unlisted;
        outcome.unreadable.extend(unreadable);
    }
    if !newest.checksum_ok {
        read.findings.push(format!(
            "{}: Manifest-Checksum does not match the manifest",
            path.display()
        ));
    }
    read.findings.extend(outcome.findings());
    read.verification = match (newest.checksum_ok, outcome.verdict()) {
        (false, _) | (_, Some(false)) => Some(false),
        (true, v) => v,
    };
    if ctx.cfg.verify == super::config::VerifyMode::None {
        read.verification = Some(newest.checksum_ok);
    }
    read.notes.extend(outcome.progress_note());
    read.notes.extend(outcome.no_checksum_note());
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build a manifest the way PostgreSQL writes it, with a correct checksum.
    pub(crate) fn make_manifest(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut s = String::from("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n");
        for (i, (name, content)) in files.iter().enumerate() {
            let crc = crc32c::crc32c(content).to_le_bytes();
            let hex: String = crc.iter().map(|b| format!("{b:02x}")).collect();
            s.push_str(&format!(
                "{{ \"Path\": \"{name}\", \"Size\": {}, \"Last-Modified\": \"2026-11-25 01:00:00 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"{hex}\" }}{}\n",
                content.len(),
                if i + 1 < files.len() { "," } else { "" }
            ));
        }
        s.push_str("],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }\n],\n");
        let sum: String = sha2::Sha256::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        s.push_str(&format!("\"Manifest-Checksum\": \"{sum}\"}}\n"));
        s.into_bytes()
    }

    #[test]
    fn parses_and_checks_its_own_checksum() {
        let m = make_manifest(&[("PG_VERSION", b"15\n"), ("base/1/1259", b"abcdef")]);
        let p = parse(&m).unwrap();
        assert!(p.checksum_ok);
        assert_eq!(p.files.len(), 2);
        assert_eq!(p.total_size(), 9);
        assert_eq!(p.wal_ranges, 1);
        assert_eq!(p.files[0].checksum.as_ref().unwrap().0, Algorithm::Crc32c);
        // Change one byte of a listed size: still parses, checksum no longer matches.
        let text = String::from_utf8(m)
            .unwrap()
            .replace("\"Size\": 6", "\"Size\": 7");
        let p = parse(text.as_bytes()).unwrap();
        assert!(!p.checksum_ok);
        assert_eq!(p.total_size(), 10);
    }

    #[test]
    fn bad_manifests() {
        let m = make_manifest(&[("PG_VERSION", b"15\n")]);
        assert!(matches!(
            parse(&m[..m.len() / 2]),
            Err(ParseError::Truncated { .. })
        ));
        // Without its final newline.
        assert!(parse(&m[..m.len() - 1]).is_err());
        let evil = String::from_utf8(m.clone())
            .unwrap()
            .replace("PG_VERSION", "../../etc/passwd");
        let e = parse(evil.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("leaves the backup folder"), "{e}");
        let v9 = String::from_utf8(m)
            .unwrap()
            .replace("Version\": 1", "Version\": 9");
        assert!(parse(v9.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("unsupported"));
        assert!(matches!(parse(b"{}"), Err(ParseError::Structure { .. })));
    }

    #[test]
    fn tar_format_folders_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_tar_format(dir.path()));
        std::fs::write(dir.path().join("base.tar.gz"), "x").unwrap();
        assert!(is_tar_format(dir.path()));
        std::fs::write(dir.path().join("PG_VERSION"), "15\n").unwrap();
        assert!(!is_tar_format(dir.path()));
    }

    #[test]
    fn backup_time_is_the_label_time_unless_the_file_is_older() {
        let t = parse_last_modified("2026-11-30 15:57:07 GMT").unwrap();
        assert_eq!(t, 1_796_054_227.0);
        assert_eq!(parse_last_modified("2026-11-30 15:57:07"), None);
        assert_eq!(parse_last_modified("yesterday GMT"), None);
        // Copied without keeping times: the manifest is newer, the label wins.
        assert_eq!(backup_time(Some(t), Some(t + 40.0 * 86400.0)), t);
        // Clock skew (manifest written a bit earlier): the earlier.
        assert_eq!(backup_time(Some(t), Some(t - 5.0)), t - 5.0);
        assert_eq!(backup_time(None, Some(t)), t);
        let m = make_manifest(&[
            ("backup_label", b"START TIME: x\n"),
            ("PG_VERSION", b"15\n"),
        ]);
        assert_eq!(parse(&m).unwrap().started, Some(1_795_568_400.0));
        let m = make_manifest(&[("PG_VERSION", b"15\n")]);
        assert_eq!(parse(&m).unwrap().started, None);
    }

    #[test]
    fn ignores_what_pg_verifybackup_ignores() {
        for p in [
            "backup_manifest",
            "pg_wal",
            "pg_wal/000000010000000000000002",
            "pg_wal/archive_status/x.done",
            "postgresql.auto.conf",
            "standby.signal",
            "recovery.signal",
        ] {
            assert!(ignored(p), "{p}");
        }
        for p in [
            "backup_label",
            "pg_wal2",
            "base/1/postgresql.auto.conf",
            "backup_manifest.old",
            "global/pg_control",
        ] {
            assert!(!ignored(p), "{p}");
        }
    }

    #[test]
    fn finds_unlisted_files_like_pg_verifybackup() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("base/1")).unwrap();
        std::fs::create_dir_all(root.join("pg_wal/archive_status")).unwrap();
        for f in [
            "PG_VERSION",
            "base/1/1259",
            "base/1/extra",
            "backup_manifest",
            "pg_wal/0001",
            "standby.signal",
            "notes.log",
        ] {
            std::fs::write(root.join(f), "x").unwrap();
        }
        // A symbolic-link loop is not followed forever.
        std::os::unix::fs::symlink(root, root.join("base/loop")).unwrap();
        let listed: std::collections::HashSet<&str> =
            ["PG_VERSION", "base/1/1259"].into_iter().collect();
        let (unlisted, unreadable) = unlisted_files(root, &listed);
        assert!(
            unlisted.contains(&"base/1/extra".to_string()),
            "{unlisted:?}"
        );
        assert!(unlisted.contains(&"notes.log".to_string()), "{unlisted:?}");
        assert!(
            !unlisted.iter().any(|p| p.starts_with("pg_wal")
                || p == "backup_manifest"
                || p == "standby.signal"),
            "{unlisted:?}"
        );
        assert!(!unreadable.is_empty(), "the loop ends at the depth limit");
        // A dangling symbolic link cannot be stat'ed: pg_verifybackup reports it too.
        let dir2 = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(dir2.path().join("nowhere"), dir2.path().join("dangling"))
            .unwrap();
        let (_, unreadable) = unlisted_files(dir2.path(), &listed);
        assert_eq!(unreadable, vec!["dangling".to_string()]);
    }

    #[test]
    fn encoded_paths_are_decoded() {
        let m = String::from_utf8(make_manifest(&[("PG_VERSION", b"15\n")])).unwrap();
        let m = m.replace(
            "\"Path\": \"PG_VERSION\"",
            "\"Encoded-Path\": \"50475f56455253494f4e\"",
        );
        // The checksum no longer matches (the text changed), but the path decodes.
        let p = parse(m.as_bytes()).unwrap();
        assert_eq!(p.files[0].path, "PG_VERSION");
    }
}

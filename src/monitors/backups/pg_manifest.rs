//! PostgreSQL `backup_manifest` (written by `pg_basebackup`, PostgreSQL 13+).
//!
//! `path` is a manifest file, a backup folder holding `backup_manifest`, or a
//! glob matching several (`pg/*/backup_manifest`, one folder per backup). Each
//! manifest is one backup, finished when the manifest was written (its mtime:
//! `pg_basebackup` writes the manifest last, so a failed run leaves none);
//! its size and file count are the sums over the files it lists.
//!
//! The newest manifest is verified:
//! - always: its own `Manifest-Checksum`, a SHA-256 over the file up to and
//!   including the newline before the `"Manifest-Checksum"` line;
//! - `verify: sizes`: every listed file exists in the manifest's folder with the
//!   listed size;
//! - `verify: checksums`: and its content matches the listed checksum (CRC32C,
//!   SHA224/256/384/512), hashing at most `verify_max_bytes` per check; results
//!   are cached by size and mtime, so unchanged files are hashed once.
//!
//! Like `pg_verifybackup`, files that `pg_basebackup -R` rewrites
//! (`postgresql.auto.conf`, `standby.signal`, `recovery.signal`) are not
//! checked. File checks need a plain-format (`-Fp`) backup.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha2::Digest;

use super::files::{expand, Cache};
use super::verify::{hex_decode, verify_files, Algorithm, HashCache, ListedFile};
use super::{from_json, BackupError, BackupRecord, ParseError, SourceCtx, SourceRead};

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgManifest {
    pub version: u64,
    pub files: Vec<ListedFile>,
    /// The `Manifest-Checksum` matches the file's content.
    pub checksum_ok: bool,
    pub wal_ranges: usize,
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
    })
}

/// Files that `pg_basebackup -R` may rewrite after the manifest was made.
const NOT_VERIFIED: [&str; 3] = ["postgresql.auto.conf", "standby.signal", "recovery.signal"];

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

pub(crate) fn read(ctx: &SourceCtx<'_>, st: &mut State) -> Result<SourceRead, BackupError> {
    let paths = manifest_paths(ctx)?;
    st.manifests.retain(&paths);
    let mut loaded = Vec::with_capacity(paths.len());
    for p in &paths {
        let (m, stamp) = st.manifests.load(p, ctx.max_file_size, parse)?;
        let mtime = stamp
            .modified
            .map(crate::clock::unix_seconds)
            .unwrap_or(0.0);
        loaded.push((p, m, mtime));
    }
    let mut read = SourceRead::default();
    for (_, m, mtime) in &loaded {
        read.records.push(BackupRecord {
            group: String::new(),
            time: *mtime,
            size: Some(m.total_size()),
            files: Some(m.files.len() as u64),
            success: true,
        });
    }
    let Some((path, newest, _)) = loaded.iter().max_by(|a, b| a.2.total_cmp(&b.2)) else {
        return Ok(read);
    };
    let root = path.parent().unwrap_or(Path::new("."));
    if ctx.cfg.verify != crate::config::VerifyMode::None && is_tar_format(root) {
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
        .filter(|f| !NOT_VERIFIED.contains(&f.path.as_str()))
        .cloned()
        .collect();
    let outcome = verify_files(
        root,
        &checked,
        ctx.cfg.verify,
        ctx.cfg.verify_max_bytes.0,
        &mut st.hashes,
    );
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
    if ctx.cfg.verify == crate::config::VerifyMode::None {
        read.verification = Some(newest.checksum_ok);
    }
    read.notes.extend(outcome.progress_note());
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

//! Checking the files a manifest lists against the backup folder: existence and
//! size (one `stat` each), and optionally content checksums, hashing at most a
//! byte budget per check. Checksum results are cached by the file's
//! (size, mtime, inode) and the expected value, so unchanged files are hashed once.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::Digest;

use super::files::Stamp;
use super::config::VerifyMode;

/// Checksum algorithms of PostgreSQL manifests (and SHA-256 for our own format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Crc32c,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    /// PostgreSQL's `Checksum-Algorithm` names; `None` for `NONE` and unknown names.
    pub fn from_pg_name(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "CRC32C" => Some(Algorithm::Crc32c),
            "SHA224" => Some(Algorithm::Sha224),
            "SHA256" => Some(Algorithm::Sha256),
            "SHA384" => Some(Algorithm::Sha384),
            "SHA512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Crc32c => 4,
            Algorithm::Sha224 => 28,
            Algorithm::Sha256 => 32,
            Algorithm::Sha384 => 48,
            Algorithm::Sha512 => 64,
        }
    }
}

/// Incremental hasher over one of the algorithms.
enum Hasher {
    Crc(u32),
    S224(sha2::Sha224),
    S256(sha2::Sha256),
    S384(sha2::Sha384),
    S512(sha2::Sha512),
}

impl Hasher {
    fn new(a: Algorithm) -> Self {
        match a {
            Algorithm::Crc32c => Hasher::Crc(0),
            Algorithm::Sha224 => Hasher::S224(sha2::Sha224::new()),
            Algorithm::Sha256 => Hasher::S256(sha2::Sha256::new()),
            Algorithm::Sha384 => Hasher::S384(sha2::Sha384::new()),
            Algorithm::Sha512 => Hasher::S512(sha2::Sha512::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc(c) => *c = crc32c::crc32c_append(*c, data),
            Hasher::S224(h) => h.update(data),
            Hasher::S256(h) => h.update(data),
            Hasher::S384(h) => h.update(data),
            Hasher::S512(h) => h.update(data),
        }
    }

    /// Does the result equal `expected`? PostgreSQL writes a CRC-32C as the
    /// four bytes of the value in the writing machine's byte order: both orders are accepted.
    fn matches(self, expected: &[u8]) -> bool {
        match self {
            Hasher::Crc(c) => expected == c.to_le_bytes() || expected == c.to_be_bytes(),
            Hasher::S224(h) => h.finalize().as_slice() == expected,
            Hasher::S256(h) => h.finalize().as_slice() == expected,
            Hasher::S384(h) => h.finalize().as_slice() == expected,
            Hasher::S512(h) => h.finalize().as_slice() == expected,
        }
    }
}

/// Does the content of `data` have checksum `expected`?
pub fn checksum_matches(a: Algorithm, data: &[u8], expected: &[u8]) -> bool {
    let mut h = Hasher::new(a);
    h.update(data);
    h.matches(expected)
}

/// Decode lower/upper-case hex; `None` if it is not hex.
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|p| {
            let hi = (p[0] as char).to_digit(16)?;
            let lo = (p[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

/// One file a manifest lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    /// The path as listed (relative to the backup folder), for messages.
    pub path: String,
    pub size: u64,
    pub checksum: Option<(Algorithm, Vec<u8>)>,
}

/// Cached checksum results.
#[derive(Debug, Default)]
pub struct HashCache {
    /// Stamp, whether the file had settled when hashed (see `crate::core::stamp::RACY_WINDOW`),
    /// algorithm, expected checksum, result.
    map: HashMap<PathBuf, (Stamp, bool, Algorithm, Vec<u8>, bool)>,
}

/// The result of checking a file list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub listed: usize,
    pub missing: Vec<String>,
    pub wrong_size: Vec<String>,
    pub bad_checksum: Vec<String>,
    pub unreadable: Vec<String>,
    /// Files on disk that the manifest does not list (PostgreSQL backups, like
    /// `pg_verifybackup`), and entries that are neither file nor folder.
    pub unlisted: Vec<String>,
    /// Files with a checksum that is verified so far (this check or cached).
    pub checksummed: usize,
    /// Files with a checksum left for a later check (byte budget spent).
    pub pending: usize,
    /// With `verify: checksums`, files the manifest gives no checksum for
    /// (checked by size only).
    pub no_checksum: usize,
}

const LIST_CAP: usize = 5;

impl Outcome {
    pub fn failed(&self) -> bool {
        !(self.missing.is_empty()
            && self.wrong_size.is_empty()
            && self.bad_checksum.is_empty()
            && self.unreadable.is_empty()
            && self.unlisted.is_empty())
    }

    /// `Some(true)` all good, `Some(false)` a problem, `None` not complete yet.
    pub fn verdict(&self) -> Option<bool> {
        if self.failed() {
            Some(false)
        } else if self.pending > 0 {
            None
        } else {
            Some(true)
        }
    }

    /// While checksums are spread over several checks (byte budget): how far.
    pub fn progress_note(&self) -> Option<String> {
        (self.pending > 0).then(|| {
            format!(
                "checksums of {} of {} files verified so far",
                self.checksummed,
                self.checksummed + self.pending
            )
        })
    }

    /// With `verify: checksums`, files that could only be checked by size.
    pub fn no_checksum_note(&self) -> Option<String> {
        (self.no_checksum > 0).then(|| {
            format!(
                "{} listed files have no checksum in the manifest: checked by size only",
                self.no_checksum
            )
        })
    }

    /// Findings naming files (paths only, a few each).
    pub fn findings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (what, v) in [
            ("listed files missing", &self.missing),
            ("listed files with another size", &self.wrong_size),
            ("listed files with another checksum", &self.bad_checksum),
            ("files unreadable", &self.unreadable),
            ("files on disk not in the manifest", &self.unlisted),
        ] {
            if !v.is_empty() {
                let mut names: Vec<&str> = v.iter().take(LIST_CAP).map(String::as_str).collect();
                let more = v.len().saturating_sub(LIST_CAP);
                let tail = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                names.sort_unstable();
                out.push(format!("{} {what}: {}{tail}", v.len(), names.join(", ")));
            }
        }
        out
    }
}

/// Check `files` (paths relative to `root`) per `mode`, hashing at most `budget` bytes.
/// At least one file is hashed per call, so a file larger than the budget is
/// still verified eventually.
pub fn verify_files(
    root: &Path,
    files: &[ListedFile],
    mode: VerifyMode,
    budget: u64,
    cache: &mut HashCache,
) -> Outcome {
    let mut out = Outcome {
        listed: files.len(),
        ..Outcome::default()
    };
    if mode == VerifyMode::None {
        return out;
    }
    let mut spent = 0u64;
    let mut hashed_any = false;
    let mut seen = Vec::with_capacity(files.len());
    for f in files {
        let path = root.join(&f.path);
        let md = match std::fs::metadata(&path) {
            Ok(md) if md.is_file() => md,
            Ok(_) => {
                out.unreadable.push(f.path.clone());
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                out.missing.push(f.path.clone());
                continue;
            }
            Err(_) => {
                out.unreadable.push(f.path.clone());
                continue;
            }
        };
        if md.len() != f.size {
            out.wrong_size.push(f.path.clone());
            continue;
        }
        if mode != VerifyMode::Checksums {
            continue;
        }
        let Some((algo, expected)) = &f.checksum else {
            out.no_checksum += 1;
            continue;
        };
        let stamp = Stamp::of(&md);
        seen.push(path.clone());
        if let Some((s, settled, a, e, ok)) = cache.map.get(&path) {
            if *s == stamp && *settled && a == algo && e == expected {
                out.checksummed += 1;
                if !ok {
                    out.bad_checksum.push(f.path.clone());
                }
                continue;
            }
        }
        if hashed_any && spent.saturating_add(f.size) > budget {
            out.pending += 1;
            continue;
        }
        hashed_any = true;
        spent = spent.saturating_add(f.size);
        let settled = stamp.settled(std::time::SystemTime::now());
        match hash_file(&path, *algo) {
            Ok(h) => {
                let ok = h.matches(expected);
                out.checksummed += 1;
                if !ok {
                    out.bad_checksum.push(f.path.clone());
                }
                cache
                    .map
                    .insert(path, (stamp, settled, *algo, expected.clone(), ok));
            }
            Err(_) => out.unreadable.push(f.path.clone()),
        }
    }
    cache.map.retain(|k, _| seen.contains(k));
    out
}

fn hash_file(path: &Path, algo: Algorithm) -> std::io::Result<Hasher> {
    let mut f = crate::core::safe_open::open(path)?;
    let mut h = Hasher::new(algo);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_hex(data: &[u8]) -> Vec<u8> {
        sha2::Sha256::digest(data).to_vec()
    }

    #[test]
    fn checksums_and_hex() {
        assert_eq!(hex_decode("00fFa1"), Some(vec![0, 255, 161]));
        assert_eq!(hex_decode("0g"), None);
        assert_eq!(hex_decode("abc"), None);
        // CRC-32C of "123456789" is 0xE3069283.
        let crc = 0xE306_9283u32;
        assert!(checksum_matches(
            Algorithm::Crc32c,
            b"123456789",
            &crc.to_le_bytes()
        ));
        assert!(checksum_matches(
            Algorithm::Crc32c,
            b"123456789",
            &crc.to_be_bytes()
        ));
        assert!(!checksum_matches(
            Algorithm::Crc32c,
            b"123456780",
            &crc.to_le_bytes()
        ));
        assert!(checksum_matches(Algorithm::Sha256, b"x", &sha256_hex(b"x")));
        assert_eq!(Algorithm::from_pg_name("sha512"), Some(Algorithm::Sha512));
        assert_eq!(Algorithm::from_pg_name("NONE"), None);
    }

    #[test]
    fn a_file_hashed_before_it_settled_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d");
        std::fs::write(&p, "dddd").unwrap();
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        let files = vec![ListedFile {
            path: "d".into(),
            size: 4,
            checksum: Some((Algorithm::Sha256, sha256_hex(b"dddd"))),
        }];
        let mut cache = HashCache::default();
        let o = verify_files(dir.path(), &files, VerifyMode::Checksums, 100, &mut cache);
        assert_eq!(o.verdict(), Some(true));
        // Rewritten in place, same size, same mtime (one timestamp tick): the
        // stamp is unchanged, but the hash was taken before the file settled.
        std::fs::write(&p, "dddX").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let o = verify_files(dir.path(), &files, VerifyMode::Checksums, 100, &mut cache);
        assert_eq!(o.bad_checksum, vec!["d".to_string()]);
    }

    #[test]
    fn verify_finds_missing_resized_and_changed_files_within_budget() {
        let dir = tempfile::tempdir().unwrap();
        // Written an hour ago: settled, so a hash, once taken, is trusted.
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for (n, c) in [("a", "aaaa"), ("b", "bbbb"), ("c", "cccc")] {
            std::fs::write(dir.path().join(n), c).unwrap();
            std::fs::File::options()
                .write(true)
                .open(dir.path().join(n))
                .unwrap()
                .set_modified(hour_ago)
                .unwrap();
        }
        let listed = |name: &str, content: &[u8]| ListedFile {
            path: name.into(),
            size: content.len() as u64,
            checksum: Some((Algorithm::Sha256, sha256_hex(content))),
        };
        let files = vec![
            listed("a", b"aaaa"),
            listed("b", b"bbbb"),
            listed("c", b"cccc"),
        ];
        let mut cache = HashCache::default();
        // Budget of 4 bytes: one file per check.
        let o = verify_files(dir.path(), &files, VerifyMode::Checksums, 4, &mut cache);
        assert_eq!((o.checksummed, o.pending, o.verdict()), (1, 2, None));
        let o = verify_files(dir.path(), &files, VerifyMode::Checksums, 4, &mut cache);
        assert_eq!((o.checksummed, o.pending), (2, 1));
        let o = verify_files(dir.path(), &files, VerifyMode::Checksums, 4, &mut cache);
        assert_eq!(o.verdict(), Some(true));
        // Same size, one byte changed: found by checksums, not by sizes.
        std::fs::write(dir.path().join("b"), "bbbX").unwrap();
        assert_eq!(
            verify_files(dir.path(), &files, VerifyMode::Sizes, 4, &mut cache).verdict(),
            Some(true)
        );
        let o = verify_files(dir.path(), &files, VerifyMode::Checksums, 100, &mut cache);
        assert_eq!(o.bad_checksum, vec!["b".to_string()]);
        std::fs::remove_file(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("c"), "cc").unwrap();
        let o = verify_files(dir.path(), &files, VerifyMode::Sizes, 100, &mut cache);
        assert_eq!(o.missing, vec!["a".to_string()]);
        assert_eq!(o.wrong_size, vec!["c".to_string()]);
        assert_eq!(o.verdict(), Some(false));
        assert!(o
            .findings()
            .iter()
            .any(|f| f.contains("1 listed files missing: a")));
        assert_eq!(o.no_checksum_note(), None);
        // `verify: checksums` on a list without checksums is a size check, and says so.
        let bare = vec![ListedFile {
            path: "b".into(),
            size: 4,
            checksum: None,
        }];
        let o = verify_files(dir.path(), &bare, VerifyMode::Checksums, 100, &mut cache);
        assert_eq!(o.verdict(), Some(true));
        assert!(o.no_checksum_note().unwrap().contains("size only"));
    }
}

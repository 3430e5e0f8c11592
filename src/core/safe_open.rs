//! Opening files the exporter reads (states, plans, baselines, certificates,
//! backups, policies, config, web config) without the `stat`-then-`open` race.
//!
//! A FIFO (or a device, a socket) swapped in between a `stat` and an `open`
//! would block a plain `open` for ever. Here the file is opened non-blocking
//! (which never waits for a FIFO writer), then the **opened descriptor** is
//! checked with `fstat`: anything but a regular file is refused before a single
//! byte is read. Only then is `O_NONBLOCK` cleared for ordinary reads. The
//! descriptor is close-on-exec and never becomes a controlling terminal.
//!
//! Whole-file reads are capped ([`read_capped`]); reads larger than
//! [`LARGE_READ`] also take one of [`MAX_LARGE_READS`] permits, so that many
//! large files read in parallel cannot multiply the memory they pin.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Condvar, Mutex};

use rustix::fs::{FileType, Mode, OFlags};

/// Default cap of [`read`] and [`read_to_string`] (configuration-sized files).
pub const DEFAULT_MAX: u64 = 16 << 20;
/// Reads above this size count as large.
pub const LARGE_READ: u64 = 4 << 20;
/// At most this many large whole-file reads hold memory at once (the others wait).
pub const MAX_LARGE_READS: usize = 2;

fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::Fifo => "a FIFO (named pipe)",
        FileType::Directory => "a folder",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Symlink => "a symbolic link",
        _ => "not a regular file",
    }
}

/// The error for a path that is not a regular file (kind `InvalidInput`).
fn not_regular(t: FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "is {} and not a regular file; only regular files are read",
            kind_name(t)
        ),
    )
}

/// Open `path` read-only (following symbolic links) if it is a regular file;
/// never blocks on a FIFO. Drop-in for `std::fs::File::open`.
pub fn open(path: &Path) -> io::Result<File> {
    open_with(path, OFlags::empty())
}

/// Like [`open`], but a symbolic link as the last component is refused
/// (`O_NOFOLLOW`).
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    open_with(path, OFlags::NOFOLLOW)
}

fn open_with(path: &Path, extra: OFlags) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY | extra;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(io::Error::from)?;
    let st = rustix::fs::fstat(&fd).map_err(io::Error::from)?;
    let t = FileType::from_raw_mode(st.st_mode);
    if t != FileType::RegularFile {
        return Err(not_regular(t));
    }
    let fl = rustix::fs::fcntl_getfl(&fd).map_err(io::Error::from)?;
    rustix::fs::fcntl_setfl(&fd, fl - OFlags::NONBLOCK).map_err(io::Error::from)?;
    Ok(File::from(fd))
}

/// Read a whole regular file of at most [`DEFAULT_MAX`] bytes. Drop-in for `std::fs::read`.
pub fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    read_capped(path.as_ref(), DEFAULT_MAX)
}

/// Read a whole regular UTF-8 file of at most [`DEFAULT_MAX`] bytes. Drop-in
/// for `std::fs::read_to_string`.
pub fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    String::from_utf8(read(path)?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the file is not valid UTF-8 text",
        )
    })
}

/// Read a whole regular file; more than `max` bytes is an error (kind
/// `FileTooLarge`-like `InvalidData`, message says the limit).
pub fn read_capped(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let f = open(path)?;
    let size = f.metadata()?.len();
    let too_large = |n: u64| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the file is larger than the limit of {max} bytes ({n} bytes or more)"),
        )
    };
    if size > max {
        return Err(too_large(size));
    }
    let _permit = (size > LARGE_READ).then(LargeReadPermit::acquire);
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    f.take(max.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        let n = buf.len() as u64;
        buf.fill(0);
        return Err(too_large(n));
    }
    Ok(buf)
}

static LARGE: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

thread_local! {
    /// Permits held by this thread (a thread never waits while holding one, so
    /// nested large reads cannot deadlock).
    static HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One of [`MAX_LARGE_READS`] slots for a large read; released on drop. Blocks
/// the (blocking) thread until a slot is free, unless this thread already holds one.
pub struct LargeReadPermit {
    counted: bool,
}

impl LargeReadPermit {
    pub fn acquire() -> Self {
        if HELD.with(|h| h.get()) > 0 {
            HELD.with(|h| h.set(h.get() + 1));
            return LargeReadPermit { counted: false };
        }
        let (m, cv) = &LARGE;
        let mut n = m.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= MAX_LARGE_READS {
            n = cv.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
        HELD.with(|h| h.set(h.get() + 1));
        LargeReadPermit { counted: true }
    }

    /// Large reads in progress (for tests).
    pub fn in_use() -> usize {
        *LARGE.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for LargeReadPermit {
    fn drop(&mut self) {
        HELD.with(|h| h.set(h.get().saturating_sub(1)));
        if !self.counted {
            return;
        }
        let (m, cv) = &LARGE;
        let mut n = m.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        cv.notify_one();
    }
}

/// True for the error [`open`] gives for a FIFO, device, socket or folder.
pub fn is_not_regular(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidInput && e.to_string().contains("not a regular file")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_is_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &p,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = open(&p).unwrap_err();
        assert!(is_not_regular(&e), "{e}");
        assert!(e.to_string().contains("FIFO"), "{e}");
        let e = read(&p).unwrap_err();
        assert!(is_not_regular(&e), "{e}");
        let e = open(d.path()).unwrap_err();
        assert!(e.to_string().contains("folder"), "{e}");
        let e = open(Path::new("/dev/null")).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
    }

    #[test]
    fn large_reads_are_bounded_and_reentrant() {
        let first = LargeReadPermit::acquire();
        let nested = LargeReadPermit::acquire();
        assert!(first.counted && !nested.counted);
        drop(nested);
        drop(first);
        // MAX_LARGE_READS threads hold a permit: the next one waits.
        let (tx, rx) = std::sync::mpsc::channel();
        let release = std::sync::Arc::new(std::sync::Barrier::new(MAX_LARGE_READS + 1));
        let mut hs = Vec::new();
        for _ in 0..MAX_LARGE_READS {
            let (tx, release) = (tx.clone(), release.clone());
            hs.push(std::thread::spawn(move || {
                let _p = LargeReadPermit::acquire();
                tx.send(()).unwrap();
                release.wait();
            }));
        }
        for _ in 0..MAX_LARGE_READS {
            rx.recv().unwrap();
        }
        let waiter = std::thread::spawn(move || {
            let _p = LargeReadPermit::acquire();
            tx.send(()).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(rx.try_recv().is_err(), "a third large read ran at once");
        release.wait();
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        waiter.join().unwrap();
        for h in hs {
            h.join().unwrap();
        }
    }

    #[test]
    fn regular_files_read_blocking_and_capped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        let f = open(&p).unwrap();
        let fl = rustix::fs::fcntl_getfl(&f).unwrap();
        assert!(!fl.contains(OFlags::NONBLOCK));
        assert_eq!(read(&p).unwrap(), b"hello");
        assert_eq!(read_to_string(&p).unwrap(), "hello");
        let e = read_capped(&p, 4).unwrap_err();
        assert!(e.to_string().contains("limit of 4 bytes"), "{e}");
        let l = d.path().join("l");
        std::os::unix::fs::symlink(&p, &l).unwrap();
        assert_eq!(open(&l).map(|_| ()).ok(), Some(()));
        assert!(open_nofollow(&l).is_err());
        assert!(open(&d.path().join("missing")).unwrap_err().kind() == io::ErrorKind::NotFound);
    }
}

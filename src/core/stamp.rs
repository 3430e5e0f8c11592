//! Identity of one version of a file, shared by the monitors that cache what
//! they read (Terraform states, backup manifests and checksums). Monitors never
//! import each other; they share this.

use std::time::{Duration, SystemTime};

/// Identity of one version of a file's content: if it is unchanged, the
/// content is not read again. Remote Terraform states put a hash of their
/// version token in `inode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub modified: Option<SystemTime>,
    pub inode: u64,
}

/// File timestamps are coarse (kernel clock ticks of a few ms): two writes of
/// the same size inside one tick, with a reused inode (rename swaps), keep the
/// same (size, mtime, inode). Like git's "racy clean" rule, content read while
/// its file was modified this recently is not vouched for by the stamp and is
/// read again next time.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

impl Stamp {
    /// The stamp of a file's metadata.
    pub fn of(md: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(md);
        #[cfg(not(unix))]
        let inode = 0;
        Stamp {
            size: md.len(),
            modified: md.modified().ok(),
            inode,
        }
    }

    /// True if content read at `now` can later be vouched for by this stamp:
    /// the file was last modified at least [`RACY_WINDOW`] before.
    pub fn settled(&self, now: SystemTime) -> bool {
        match self.modified {
            Some(m) => now.duration_since(m).is_ok_and(|age| age >= RACY_WINDOW),
            // No mtime, or modified "in the future" (clocks disagree): trust nothing.
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_only_after_the_window() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = |modified| Stamp {
            size: 1,
            modified,
            inode: 1,
        };
        assert!(!s(Some(t)).settled(t + Duration::from_secs(1)));
        assert!(s(Some(t)).settled(t + RACY_WINDOW));
        assert!(
            !s(Some(t + Duration::from_secs(60))).settled(t),
            "in the future"
        );
        assert!(!s(None).settled(t));
    }
}

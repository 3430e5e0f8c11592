#![no_main]
//! Backup parsers: restic, borg, PostgreSQL backup_manifest, our manifest.
use homelab_monitor::monitors::backups::{borg, manifest, pg_manifest, restic};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = restic::parse_snapshots(data);
    let _ = restic::parse_stats(data);
    let _ = restic::parse_check(data);
    let _ = borg::parse_list(data);
    let _ = borg::parse_info(data);
    let _ = pg_manifest::parse(data);
    let _ = manifest::parse(data);
});

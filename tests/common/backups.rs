//! Backup monitor test helpers shared by tests/backups.rs and
//! tests/backup_commands.rs.

use std::time::SystemTime;

use homelab_monitor::core::monitor::{CollectContext, Monitor};
use homelab_monitor::core::snapshot::Snapshot;
use homelab_monitor::monitors::backups::BackupMonitor;

/// Collect `m`, whose source `cmd` runs a tool and whose source `file` holds
/// the same tool's output: `cmd` is up and gives exactly `file`'s series
/// (more than `min` of them). Returns the snapshot.
pub async fn assert_command_matches_file(m: &BackupMonitor, min: usize) -> Snapshot {
    let s = m
        .collect_complete(CollectContext {
            now: SystemTime::now(),
        })
        .await
        .expect("collection never fails as a whole");
    let up = s.value("backup_source_up", &[("source", "cmd")]);
    let status = s.targets.iter().find(|t| t.target == "cmd");
    assert_eq!(up, Some(1.0), "{status:?}");
    let want = series_of(&s, "file");
    assert!(want.len() > min, "{want:?}");
    assert_eq!(series_of(&s, "cmd"), want);
    s
}

/// Every `backup_*` sample of `source`, without the source label, sorted.
pub fn series_of(s: &Snapshot, source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for f in &s.families {
        if !f.def.name.starts_with("backup_") {
            continue;
        }
        for x in &f.samples {
            if !x.labels().any(|(k, v)| k == "source" && v == source) {
                continue;
            }
            let labels: Vec<String> = x
                .labels()
                .filter(|(k, _)| *k != "source")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push(format!(
                "{}{{{}}} {}",
                f.def.name,
                labels.join(","),
                x.value
            ));
        }
    }
    out.sort();
    out
}

//! Backup monitor test helpers shared by tests/backups.rs and
//! tests/backup_commands.rs.

use homelab_monitor::core::snapshot::Snapshot;

/// Every `backup_*` sample of `source`, without the source label, sorted.
pub fn series_of(s: &Snapshot, source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for f in &s.families {
        if !f.def.name.starts_with("backup_") {
            continue;
        }
        for x in &f.samples {
            if !x.labels.iter().any(|(k, v)| *k == "source" && v == source) {
                continue;
            }
            let labels: Vec<String> = x
                .labels
                .iter()
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

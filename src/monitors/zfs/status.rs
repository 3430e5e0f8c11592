//! A pure parser of `zpool status` text (OpenZFS 0.8 to 2.x): per pool, its
//! state and what its `scan:` line says about scrubs.

use std::sync::LazyLock;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use regex::Regex;

/// One pool of a `zpool status` output.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolStatus {
    pub name: String,
    /// `state:` as printed (`ONLINE`, `DEGRADED`, ...).
    pub state: String,
    pub scan: Scan,
}

/// What the `scan:` line says. It only shows the latest scan, so a running
/// scrub or a resilver hides when the last scrub finished.
#[derive(Debug, Clone, PartialEq)]
pub enum Scan {
    /// `none requested`: the pool was never scrubbed.
    Never,
    /// `scrub repaired 0B in 00:12:34 with 0 errors on <date>`.
    Finished { end: f64, errors: u64 },
    /// `scrub in progress since <date>` (or `paused since`).
    InProgress { since: f64 },
    /// `scrub canceled on <date>`.
    Canceled { at: f64 },
    /// A resilver (`resilvered ...`, `resilver in progress ...`): no scrub information.
    Resilver,
}

/// Why a `zpool status` text could not be read. Quotes no more than a pool
/// name and a line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error("no `pool:` line: not `zpool status` output (write it with `zpool status > FILE`)")]
    NoPools,
    #[error("pool {pool}: no `{key}:` line")]
    Missing { pool: String, key: &'static str },
    #[error("pool {pool}, line {line}: unrecognised scan line; expected `none requested`, `scrub repaired ... on <date>`, `scrub in progress since <date>` or a resilver")]
    Scan { pool: String, line: usize },
    #[error("pool {pool}, line {line}: unrecognised date (expected like `Sun Nov  8 00:36:35 2026`)")]
    Date { pool: String, line: usize },
}

static FINISHED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^scrub repaired \S+ in .+ with (\d+) errors on (.+)$").expect("static regex")
});
static RUNNING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^scrub (?:in progress|paused) since (.+)$").expect("static regex")
});
static CANCELED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^scrub canceled on (.+)$").expect("static regex"));

/// Parse a whole `zpool status` output. Dates are the host's local time
/// (`ctime` format, no zone); `tz` is that zone.
pub fn parse(text: &str, tz: &TimeZone) -> Result<Vec<PoolStatus>, StatusError> {
    let text = text.trim_start_matches('\u{feff}');
    if text.trim() == "no pools available" {
        return Ok(Vec::new());
    }
    let mut pools = Vec::new();
    let mut current: Option<(String, Option<String>, Option<Scan>)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "pool" => {
                if let Some(p) = current.take() {
                    pools.push(finish(p)?);
                }
                current = Some((value.to_string(), None, None));
            }
            "state" | "scan" => {
                let Some((pool, state, scan)) = current.as_mut() else {
                    continue;
                };
                if key == "state" {
                    *state = Some(value.to_string());
                } else {
                    *scan = Some(parse_scan(value, tz).map_err(|date| {
                        let (pool, line) = (pool.clone(), i + 1);
                        if date {
                            StatusError::Date { pool, line }
                        } else {
                            StatusError::Scan { pool, line }
                        }
                    })?);
                }
            }
            _ => {}
        }
    }
    if let Some(p) = current.take() {
        pools.push(finish(p)?);
    }
    if pools.is_empty() {
        return Err(StatusError::NoPools);
    }
    Ok(pools)
}

fn finish(
    (name, state, scan): (String, Option<String>, Option<Scan>),
) -> Result<PoolStatus, StatusError> {
    let state = state.ok_or_else(|| StatusError::Missing {
        pool: name.clone(),
        key: "state",
    })?;
    let scan = scan.ok_or_else(|| StatusError::Missing {
        pool: name.clone(),
        key: "scan",
    })?;
    Ok(PoolStatus { name, state, scan })
}

/// `Err(true)`: the date did not parse; `Err(false)`: the line is not known.
fn parse_scan(value: &str, tz: &TimeZone) -> Result<Scan, bool> {
    if value == "none requested" {
        return Ok(Scan::Never);
    }
    if value.starts_with("resilver") {
        return Ok(Scan::Resilver);
    }
    if let Some(c) = FINISHED.captures(value) {
        let errors = c[1].parse().map_err(|_| false)?;
        return Ok(Scan::Finished {
            end: date(&c[2], tz)?,
            errors,
        });
    }
    if let Some(c) = RUNNING.captures(value) {
        return Ok(Scan::InProgress {
            since: date(&c[1], tz)?,
        });
    }
    if let Some(c) = CANCELED.captures(value) {
        return Ok(Scan::Canceled {
            at: date(&c[1], tz)?,
        });
    }
    Err(false)
}

/// `Sun Nov  8 00:36:35 2026` in `tz`, as Unix seconds.
fn date(text: &str, tz: &TimeZone) -> Result<f64, bool> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let dt = DateTime::strptime("%a %b %d %H:%M:%S %Y", words.join(" ")).map_err(|_| true)?;
    let ts = tz.to_timestamp(dt).map_err(|_| true)?;
    Ok(ts.as_second() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> Result<Vec<PoolStatus>, StatusError> {
        parse(text, &TimeZone::UTC)
    }

    fn ts(s: &str) -> f64 {
        s.parse::<jiff::Timestamp>().unwrap().as_second() as f64
    }

    // OpenZFS 2.1 on Debian 12, a healthy mirror after the monthly scrub.
    const FINISHED_MIRROR: &str = "  pool: tank
 state: ONLINE
  scan: scrub repaired 0B in 00:12:34 with 0 errors on Sun Nov  8 00:36:35 2026
config:

\tNAME        STATE     READ WRITE CKSUM
\ttank        ONLINE       0     0     0
\t  mirror-0  ONLINE       0     0     0
\t    sda     ONLINE       0     0     0
\t    sdb     ONLINE       0     0     0

errors: No known data errors
";

    #[test]
    fn finished_scrub() {
        let p = utc(FINISHED_MIRROR).unwrap();
        assert_eq!(
            p,
            vec![PoolStatus {
                name: "tank".into(),
                state: "ONLINE".into(),
                scan: Scan::Finished {
                    end: ts("2026-11-08T00:36:35Z"),
                    errors: 0
                },
            }]
        );
    }

    #[test]
    fn dates_are_in_the_given_zone() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let p = parse(FINISHED_MIRROR, &berlin).unwrap();
        assert_eq!(
            p[0].scan,
            Scan::Finished {
                end: ts("2026-11-07T23:36:35Z"),
                errors: 0
            }
        );
    }

    // Two pools: one degraded with a scrub running, one never scrubbed.
    const TWO_POOLS: &str = "  pool: backup
 state: DEGRADED
status: One or more devices could not be used because the label is missing or
\tinvalid.  Sufficient replicas exist for the pool to continue
\tfunctioning in a degraded state.
action: Replace the device using 'zpool replace'.
   see: https://openzfs.github.io/openzfs-docs/msg/ZFS-8000-4J
  scan: scrub in progress since Sat Nov 28 02:00:01 2026
\t1.23T scanned at 1.02G/s, 456G issued at 380M/s, 2.50T total
\t0B repaired, 17.83% done, 01:34:12 to go
config:

\tNAME                      STATE     READ WRITE CKSUM
\tbackup                    DEGRADED     0     0     0
\t  raidz1-0                DEGRADED     0     0     0
\t    sdc                   ONLINE       0     0     0
\t    12345678901234567890  UNAVAIL      0     0     0  was /dev/sdd1
\t    sde                   ONLINE       0     0     0

errors: No known data errors

  pool: scratch
 state: ONLINE
  scan: none requested
config:

\tNAME        STATE     READ WRITE CKSUM
\tscratch     ONLINE       0     0     0
\t  sdf       ONLINE       0     0     0

errors: No known data errors
";

    #[test]
    fn in_progress_and_never() {
        let p = utc(TWO_POOLS).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "backup");
        assert_eq!(p[0].state, "DEGRADED");
        assert_eq!(
            p[0].scan,
            Scan::InProgress {
                since: ts("2026-11-28T02:00:01Z")
            }
        );
        assert_eq!(p[1].name, "scratch");
        assert_eq!(p[1].scan, Scan::Never);
    }

    #[test]
    fn errors_canceled_and_resilver() {
        let text = "  pool: tank\n state: ONLINE\n  scan: scrub repaired 4K in 0 days 03:01:02 with 3 errors on Mon Oct 12 05:01:02 2026\n\n  pool: old\n state: ONLINE\n  scan: scrub canceled on Tue Nov 10 10:00:00 2026\n\n  pool: fresh\n state: ONLINE\n  scan: resilvered 1.21G in 00:01:02 with 0 errors on Wed Nov 11 11:11:11 2026\n";
        let p = utc(text).unwrap();
        assert_eq!(
            p[0].scan,
            Scan::Finished {
                end: ts("2026-10-12T05:01:02Z"),
                errors: 3
            }
        );
        assert_eq!(
            p[1].scan,
            Scan::Canceled {
                at: ts("2026-11-10T10:00:00Z")
            }
        );
        assert_eq!(p[2].scan, Scan::Resilver);
    }

    #[test]
    fn not_zpool_status_is_an_error_never_an_empty_clean() {
        assert_eq!(utc("").unwrap_err(), StatusError::NoPools);
        assert_eq!(utc("cannot open 'tank': no such pool\n").unwrap_err(), StatusError::NoPools);
        assert!(utc("no pools available\n").unwrap().is_empty());
        // A truncated file (the cron job died mid-write).
        assert_eq!(
            utc("  pool: tank\n state: ONLINE\n").unwrap_err(),
            StatusError::Missing {
                pool: "tank".into(),
                key: "scan"
            }
        );
        assert_eq!(
            utc("  pool: tank\n state: ONLINE\n  scan: scrub did something new\n").unwrap_err(),
            StatusError::Scan {
                pool: "tank".into(),
                line: 3
            }
        );
        assert_eq!(
            utc("  pool: tank\n state: ONLINE\n  scan: scrub canceled on yesterday\n").unwrap_err(),
            StatusError::Date {
                pool: "tank".into(),
                line: 3
            }
        );
    }
}

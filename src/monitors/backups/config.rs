//! `custom_monitors.backup_validation`: the backup monitor's config block,
//! its defaults and checks.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::core::config::values::{deserialize_via_try_from_string, monitor_config};
use crate::core::config::values::{ByteSize, GlobPattern, HumanDuration};
use crate::monitors::kind::ConfigIssue;

monitor_config! {
    /// `custom_monitors.backup_validation`.
    pub struct BackupConfig {
        default check_interval: Duration::from_secs(86400);
        /// Backups younger than this many days are counted in `backup_snapshots`.
        #[serde(default = "BackupConfig::default_retention")]
        pub retention_days: u32,
        /// Largest JSON/manifest file read (files hashed for verification are not limited by this).
        #[serde(default = "BackupConfig::default_max_file_size")]
        pub max_file_size: ByteSize,
        /// Sources with `command:` run programs: refused at load unless this is `true`.
        #[serde(default)]
        pub allow_commands: bool,
        #[serde(default)]
        pub sources: Vec<BackupSourceConfig>,
    }
}

impl BackupConfig {
    fn default_retention() -> u32 {
        30
    }
    fn default_max_file_size() -> ByteSize {
        ByteSize(256 << 20)
    }
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            check_interval: default_check_interval(),
            retry_interval: crate::core::config::values::default_retry(),
            timeout: crate::core::config::values::default_timeout(),
            retention_days: Self::default_retention(),
            max_file_size: Self::default_max_file_size(),
            allow_commands: false,
            sources: Vec::new(),
        }
    }
}

/// What wrote a backup source's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupFormat {
    /// `restic snapshots --json` output (`path`), optional `stats_file`, `check_file`.
    Restic,
    /// `borg list --json` output (`path`), optional `info_file` (`borg info --json`).
    Borg,
    /// A PostgreSQL `backup_manifest` written by `pg_basebackup` (`path`: file, folder or glob).
    PgBackupManifest,
    /// Our own JSON manifest (`schemas/backup-manifest.schema.json`), one file per run (`path`: file or glob).
    Manifest,
    /// A folder (`path`) of backup files matching `pattern`.
    Directory,
    /// `pgbackrest info --output=json` output (`path`); one set per stanza.
    Pgbackrest,
    /// `borgmatic list --json` output (`path`), optional `info_file`
    /// (`borgmatic info --json --last 2`); one set per repository.
    Borgmatic,
    /// `barman -f json list-backups all` output (`path`); one set per server.
    Barman,
}

impl BackupFormat {
    pub const ALL: [BackupFormat; 8] = [
        BackupFormat::Restic,
        BackupFormat::Borg,
        BackupFormat::PgBackupManifest,
        BackupFormat::Manifest,
        BackupFormat::Directory,
        BackupFormat::Pgbackrest,
        BackupFormat::Borgmatic,
        BackupFormat::Barman,
    ];

    /// Formats whose sources hold several backup sets (`set` label).
    pub fn has_sets(self) -> bool {
        matches!(
            self,
            BackupFormat::Restic
                | BackupFormat::Borg
                | BackupFormat::Pgbackrest
                | BackupFormat::Borgmatic
                | BackupFormat::Barman
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BackupFormat::Restic => "restic",
            BackupFormat::Borg => "borg",
            BackupFormat::PgBackupManifest => "pg_backup_manifest",
            BackupFormat::Manifest => "manifest",
            BackupFormat::Directory => "directory",
            BackupFormat::Pgbackrest => "pgbackrest",
            BackupFormat::Borgmatic => "borgmatic",
            BackupFormat::Barman => "barman",
        }
    }
}

impl TryFrom<String> for BackupFormat {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let t = s.trim();
        if let Some(f) = Self::ALL.into_iter().find(|f| f.as_str() == t) {
            return Ok(f);
        }
        let names: Vec<&str> = Self::ALL.iter().map(|f| f.as_str()).collect();
        let lower = t.to_ascii_lowercase();
        // Names people reach for first (tools, not formats), then the closest spelling.
        let alias = [
            ("pgbackrest", "pgbackrest"),
            ("pg_backrest", "pgbackrest"),
            ("pg", "pg_backup_manifest"),
            ("postgres", "pg_backup_manifest"),
            ("borgbackup", "borg"),
            ("folder", "directory"),
            ("dir", "directory"),
        ]
        .iter()
        .find(|(k, _)| lower.starts_with(k))
        .map(|(_, v)| format!("; did you mean `{v}`?"));
        let suggestion = alias.unwrap_or_else(|| {
            names
                .iter()
                .map(|k| (strsim::jaro_winkler(&lower, k), *k))
                .filter(|(score, _)| *score > 0.7)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, k)| format!("; did you mean `{k}`?"))
                .unwrap_or_default()
        });
        Err(format!(
            "unknown backup format `{t}` (valid formats: {}){suggestion}",
            names.join(", ")
        ))
    }
}

deserialize_via_try_from_string!(
    BackupFormat,
    "a backup format (restic, borg, pg_backup_manifest, manifest, directory, pgbackrest, borgmatic, barman)"
);

impl fmt::Display for BackupFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much of a manifest's file list is checked against the backup folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyMode {
    /// Only the manifest itself (its own checksum, for `pg_backup_manifest`).
    #[default]
    None,
    /// Every listed file exists with the listed size (one `stat` per file).
    Sizes,
    /// Sizes, and file checksums, hashing at most `verify_max_bytes` per check.
    Checksums,
}

/// An IANA time zone name, checked at load (`Europe/Berlin`, `UTC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZoneName(pub String);

deserialize_via_try_from_string!(TimeZoneName, "an IANA time zone name such as UTC");

impl TryFrom<String> for TimeZoneName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match jiff::tz::TimeZone::get(s.trim()) {
            Ok(_) => Ok(TimeZoneName(s.trim().to_string())),
            Err(_) => Err(format!(
                "unknown time zone `{}`; use an IANA name such as `UTC` or `Europe/Berlin`",
                s.trim()
            )),
        }
    }
}

/// One entry of `backup_validation.sources`. Paths are relative to the config file's folder.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSourceConfig {
    /// The `source` label.
    pub name: String,
    pub format: BackupFormat,
    /// The file the backup job wrote (restic, borg), the manifest file/folder/glob
    /// (pg_backup_manifest, manifest), or the folder (directory). restic, borg,
    /// pgbackrest, borgmatic, barman: a glob (`backups/*/snapshots.json`) makes
    /// each matched file one set, named by `name_template`. Empty with `command`.
    #[serde(default)]
    pub path: String,
    /// restic, borg, pgbackrest, borgmatic, barman: run this program for the
    /// main JSON instead of reading `path` (needs `allow_commands: true`).
    #[serde(default)]
    pub command: Option<BackupCommand>,
    /// With a glob `path`: the `set` label of each matched file; `{1}`..`{9}`
    /// are what the first..ninth `*` matched, `{stem}` the file name without
    /// its extension, `{dir}` the name of its folder (default `{1}`).
    #[serde(default)]
    pub name_template: Option<String>,
    /// Exported as `backup_max_age_seconds`; a newer success is expected within it.
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
    /// Exported as `backup_min_snapshots`: fewer successful backups inside
    /// `retention_days` fire `BackupTooFewSnapshots` (default 1; 0 never fires).
    #[serde(default = "default_min_snapshots")]
    pub min_snapshots: u32,
    /// restic: `restic stats --json latest` output (size and files for restic before 0.17).
    #[serde(default)]
    pub stats_file: Option<String>,
    /// restic: `{ restic check 2>&1; echo "exit: $?"; } > FILE.tmp && mv FILE.tmp FILE` (text, or `--json`);
    /// sets `backup_verification_success` (0 when the file cannot be read or parsed).
    #[serde(default)]
    pub check_file: Option<String>,
    /// borg: `borg info --json --last 2` output (sizes, file counts, end times of the
    /// archives it lists; repository-level `borg info --json` is refused).
    #[serde(default)]
    pub info_file: Option<String>,
    /// borg: zone of borg's zone-less local dates; default: the exporter's local zone.
    #[serde(default)]
    pub timezone: Option<TimeZoneName>,
    /// directory: glob of file names inside `path` (default `*`).
    #[serde(default)]
    pub pattern: Option<GlobPattern>,
    /// pg_backup_manifest, manifest: check listed files against the backup folder.
    #[serde(default)]
    pub verify: VerifyMode,
    /// Most bytes hashed per check and source with `verify: checksums`; the rest
    /// is hashed on later checks (results are cached by size and mtime).
    #[serde(default = "default_verify_max_bytes")]
    pub verify_max_bytes: ByteSize,
    /// restic: what identifies a backup set (`restic snapshots --group-by`);
    /// default `[host, paths, tags]`.
    #[serde(default)]
    pub group_by: Option<Vec<GroupField>>,
    /// borg: backup sets by archive name glob (`web-*`), first match wins;
    /// without it the whole repository is one set `all`.
    #[serde(default)]
    pub sets: Vec<BorgSet>,
    /// restic, borg: `max_age` per set label (overrides the source's `max_age`).
    #[serde(default)]
    pub set_max_age: std::collections::BTreeMap<String, HumanDuration>,
    /// restic, borg: most sets exported per source (`backup_sets_truncated` when hit).
    #[serde(default = "default_max_sets")]
    pub max_sets: usize,
    /// restic, borg: the last backup run's outcome, written by the job
    /// (`exit: N` line; restic `backup --json` summary).
    #[serde(default)]
    pub status_file: Option<String>,
    /// restic, borg: the repository folder (local or mounted) whose lock files
    /// are counted (read only: no lock is taken).
    #[serde(default)]
    pub repository: Option<String>,
    /// Exported as `backup_min_recovery_window_seconds`: the oldest restorable
    /// backup (per set) is expected to be at least this old
    /// (`BackupRecoveryWindowShort`); off by default.
    #[serde(default)]
    pub min_recovery_window: Option<HumanDuration>,
}

/// `command:` of a backup source: a program whose stdout is the JSON that
/// the source's format reads, run when the source is read (never twice at
/// once), in the config file's folder, without a shell, stdin empty.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupCommand {
    /// Program and arguments (`[restic, snapshots, --json, --no-lock]`).
    pub argv: Vec<String>,
    /// The process group is killed after this (default: 80% of the
    /// monitor's `timeout`, which is also the most allowed).
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// Extra environment variables (values never shown: replaced in stderr excerpts).
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Environment variables read from files (the file's content, without a
    /// trailing newline; relative to the config file's folder), read at each run.
    #[serde(default)]
    pub env_files: std::collections::BTreeMap<String, String>,
}

/// Formats whose main input is one JSON document: a `command` can write it,
/// and a glob `path` makes one set per file.
pub fn single_document(f: BackupFormat) -> bool {
    matches!(
        f,
        BackupFormat::Restic
            | BackupFormat::Borg
            | BackupFormat::Pgbackrest
            | BackupFormat::Borgmatic
            | BackupFormat::Barman
    )
}

/// `path` holds a wildcard.
pub fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// The parts of a `name_template`: literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Text(String),
    /// `{N}`: what the N-th `*` (1-based) matched.
    Star(usize),
    Stem,
    Dir,
}

/// Parse a `name_template` for a glob with `stars` `*` wildcards.
pub fn parse_template(t: &str, stars: usize) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TemplatePart::Text(rest[..open].to_string()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("name_template `{t}` has a `{{` without `}}`"))?;
        let key = &rest[open + 1..open + close];
        parts.push(match key {
            "stem" => TemplatePart::Stem,
            "dir" => TemplatePart::Dir,
            n => match n.parse::<usize>() {
                Ok(i) if (1..=stars).contains(&i) => TemplatePart::Star(i),
                Ok(_) => {
                    return Err(format!(
                        "name_template `{t}`: `{{{n}}}` needs a {n}th `*` in path (it has {stars})"
                    ))
                }
                Err(_) => {
                    return Err(format!(
                        "name_template `{t}`: unknown placeholder `{{{n}}}` (use {{1}}..{{9}}, {{stem}}, {{dir}})"
                    ))
                }
            },
        });
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Text(rest.to_string()));
    }
    if !parts.iter().any(|p| !matches!(p, TemplatePart::Text(_))) {
        return Err(format!(
            "name_template `{t}` has no placeholder: every file would get the same set name"
        ));
    }
    Ok(parts)
}

/// A field of restic's `--group-by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupField {
    #[serde(alias = "hostname")]
    Host,
    Paths,
    Tags,
}

impl GroupField {
    pub const DEFAULT: [GroupField; 3] = [GroupField::Host, GroupField::Paths, GroupField::Tags];
}

/// One borg backup set: archives whose name matches `glob`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BorgSet {
    /// The `set` label.
    pub name: String,
    /// Archive name glob (`{hostname}-*` archives: `web-*`); a prefix is `prefix*`.
    pub glob: GlobPattern,
}

fn default_max_sets() -> usize {
    50
}

fn default_verify_max_bytes() -> ByteSize {
    ByteSize(256 << 20)
}

fn default_min_snapshots() -> u32 {
    1
}

impl BackupSourceConfig {
    /// A source with only the required keys (other keys at their defaults).
    pub fn new(name: &str, format: BackupFormat, path: &str) -> Self {
        Self {
            name: name.to_string(),
            format,
            path: path.to_string(),
            command: None,
            name_template: None,
            max_age: None,
            min_snapshots: default_min_snapshots(),
            stats_file: None,
            check_file: None,
            info_file: None,
            timezone: None,
            pattern: None,
            verify: VerifyMode::None,
            verify_max_bytes: default_verify_max_bytes(),
            group_by: None,
            sets: Vec::new(),
            set_max_age: Default::default(),
            max_sets: default_max_sets(),
            status_file: None,
            repository: None,
            min_recovery_window: None,
        }
    }
}

/// Backup sources: unique names, and keys that only make sense for some
/// formats. Keys are below `backup_validation`.
pub fn validate(b: &BackupConfig) -> Result<(), ConfigIssue> {
    let base = "sources";
    let mut seen = std::collections::HashSet::new();
    for (i, s) in b.sources.iter().enumerate() {
        let key = |k: &str| format!("{base}[{i}].{k}");
        if s.name.trim().is_empty() {
            return Err((
                key("name"),
                "a backup source needs a non-empty name (it is the `source` label)".into(),
            ));
        }
        if !seen.insert(s.name.as_str()) {
            return Err((
                key("name"),
                format!(
                    "backup source name `{}` is used twice; names must be unique",
                    s.name
                ),
            ));
        }
        match (&s.command, s.path.trim().is_empty()) {
            (None, true) => return Err((key("path"), "path must not be empty".into())),
            (Some(_), false) => {
                return Err((
                    key("command"),
                    "set either path (a file the backup job writes) or command (a program whose output is read), not both"
                        .into(),
                ))
            }
            _ => {}
        }
        if let Some(c) = &s.command {
            validate_command(b, s, c).map_err(|(k, m)| (key(&k), m))?;
        }
        validate_glob(s).map_err(|(k, m)| (key(&k), m))?;
        let only = |k: &str, set: bool, formats: &[BackupFormat]| -> Result<(), (String, String)> {
            if set && !formats.contains(&s.format) {
                let names: Vec<&str> = formats.iter().map(|f| f.as_str()).collect();
                return Err((
                    key(k),
                    format!(
                        "`{k}` applies to format {} only, not {}",
                        names.join(", "),
                        s.format
                    ),
                ));
            }
            Ok(())
        };
        only(
            "stats_file",
            s.stats_file.is_some(),
            &[BackupFormat::Restic],
        )?;
        only(
            "check_file",
            s.check_file.is_some(),
            &[BackupFormat::Restic],
        )?;
        let bm = [BackupFormat::Borg, BackupFormat::Borgmatic];
        only("info_file", s.info_file.is_some(), &bm)?;
        only("timezone", s.timezone.is_some(), &bm)?;
        only("pattern", s.pattern.is_some(), &[BackupFormat::Directory])?;
        let rb = [BackupFormat::Restic, BackupFormat::Borg];
        let rbp = [
            BackupFormat::Restic,
            BackupFormat::Borg,
            BackupFormat::Pgbackrest,
            BackupFormat::Borgmatic,
            BackupFormat::Barman,
        ];
        only("group_by", s.group_by.is_some(), &[BackupFormat::Restic])?;
        only("sets", !s.sets.is_empty(), &bm)?;
        only("set_max_age", !s.set_max_age.is_empty(), &rbp)?;
        only("status_file", s.status_file.is_some(), &rbp)?;
        if s.min_recovery_window.is_some_and(|w| w.0.is_zero()) {
            return Err((
                key("min_recovery_window"),
                "min_recovery_window must be longer than 0 (leave it out to not check the recovery window)"
                    .into(),
            ));
        }
        only("repository", s.repository.is_some(), &rb)?;
        if s.group_by.as_ref().is_some_and(|g| g.is_empty()) {
            return Err((
                key("group_by"),
                "group_by needs at least one of host, paths, tags (or leave it out for all three)"
                    .into(),
            ));
        }
        if s.max_sets == 0 {
            return Err((
                key("max_sets"),
                "max_sets must be at least 1 (it caps the sets exported per source)".into(),
            ));
        }
        let mut set_names = std::collections::HashSet::new();
        for (j, set) in s.sets.iter().enumerate() {
            if set.name.trim().is_empty() || !set_names.insert(set.name.as_str()) {
                return Err((
                    key(&format!("sets[{j}].name")),
                    "each set needs a unique, non-empty name (it is the `set` label)".into(),
                ));
            }
        }
        only(
            "verify",
            s.verify != VerifyMode::None,
            &[BackupFormat::PgBackupManifest, BackupFormat::Manifest],
        )?;
    }
    Ok(())
}

/// `command:`: allowed, for a format with one JSON document, within the read's deadline.
fn validate_command(
    b: &BackupConfig,
    s: &BackupSourceConfig,
    c: &BackupCommand,
) -> Result<(), (String, String)> {
    if !b.allow_commands {
        return Err((
            "command".into(),
            format!(
                "backup source `{}` runs a command, but command sources are off; set backup_validation.allow_commands: true to allow them",
                s.name
            ),
        ));
    }
    if !single_document(s.format) {
        return Err((
            "command".into(),
            format!(
                "`command` applies to format restic, borg, pgbackrest, borgmatic, barman only, not {}",
                s.format
            ),
        ));
    }
    if c.argv.first().is_none_or(|a| a.trim().is_empty()) {
        return Err((
            "command.argv".into(),
            "argv needs at least the program to run".into(),
        ));
    }
    let most = b.timeout.0.mul_f64(0.8);
    if let Some(t) = c.timeout {
        if t.0.is_zero() || t.0 > most {
            return Err((
                "command.timeout".into(),
                format!(
                    "command timeout must be longer than 0 and at most 80% of backup_validation.timeout ({}); raise backup_validation.timeout for a slower command",
                    humantime::format_duration(most)
                ),
            ));
        }
    }
    for k in c.env.keys().chain(c.env_files.keys()) {
        if k.is_empty() || k.contains(['=', '\0']) {
            return Err((
                "command.env".into(),
                format!("{k:?} is not an environment variable name"),
            ));
        }
    }
    Ok(())
}

/// A glob `path` of a single-document format: only `*` wildcards, each
/// within one path component, a valid `name_template`, no per-file companions.
fn validate_glob(s: &BackupSourceConfig) -> Result<(), (String, String)> {
    let glob = single_document(s.format) && is_glob(&s.path);
    if !glob {
        if s.name_template.is_some() {
            return Err((
                "name_template".into(),
                "name_template applies to a glob path (`backups/*/snapshots.json`) of format restic, borg, pgbackrest, borgmatic, barman only".into(),
            ));
        }
        return Ok(());
    }
    if s.path.contains(['?', '[']) || s.path.contains("**") {
        return Err((
            "path".into(),
            "a glob path of this format may use `*` only (each matching within one folder or file name), not `?`, `[...]` or `**`".into(),
        ));
    }
    let stars = s.path.matches('*').count();
    parse_template(s.name_template.as_deref().unwrap_or("{1}"), stars)
        .map_err(|m| ("name_template".to_string(), m))?;
    for (k, set) in [
        ("stats_file", s.stats_file.is_some()),
        ("check_file", s.check_file.is_some()),
        ("info_file", s.info_file.is_some()),
    ] {
        if set {
            return Err((
                k.into(),
                format!("`{k}` cannot be used with a glob path (one file for every matched file is not supported)"),
            ));
        }
    }
    Ok(())
}

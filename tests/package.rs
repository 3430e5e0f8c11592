//! The Debian package (issue 22): `cargo deb --no-build` packages the binary
//! this test run built (no second compilation of the tree), then the .deb is
//! checked (`dpkg-deb -c`, `-I`), installed with `dpkg -i` when running as root
//! (else extracted with `dpkg-deb -x`, said on stderr), its binary run, the
//! unit's ExecStart run against the default config in a one-shot mode, the
//! unit checked with `systemd-analyze verify` and `security` where the tool
//! exists, and the package purged again.
//!
//! Needs cargo-deb (`cargo install cargo-deb --locked`; scripts/test.sh
//! installs it) and dpkg-deb; prints SKIP without them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::remote::which;

const PKG: &str = "homelab-monitor";
const UNIT: &str = "usr/lib/systemd/system/homelab-monitor.service";
const CONFIG: &str = "etc/homelab-monitor/monitoring-config.yaml";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn run(what: &str, cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// `cargo deb` works here, or None after printing SKIP.
fn cargo_deb_available() -> bool {
    let ok = Command::new(cargo())
        .args(["deb", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIP: cargo-deb is not installed: run `cargo install cargo-deb --locked` (scripts/test.sh does this)");
    }
    ok
}

/// Build the .deb from the binary of this test build into `dir`.
fn build_deb(dir: &Path) -> PathBuf {
    // cargo-deb takes binaries from <target dir>/release/: give it a target
    // dir holding this build's binary, so nothing is compiled again.
    let release = dir.join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    let bin = release.join(PKG);
    if std::fs::hard_link(common::BIN, &bin).is_err() {
        std::fs::copy(common::BIN, &bin).expect("copy the test build's binary");
    }
    let deb = dir.join("homelab-monitor.deb");
    common::run_ok(
        "cargo deb --no-build",
        Command::new(cargo())
            .args(["deb", "--no-build", "--fast", "--strip", "--output"])
            .arg(&deb)
            .env("CARGO_TARGET_DIR", dir.join("target"))
            .current_dir(common::repo()),
    );
    deb
}

/// Purges the package on drop, so a failed assertion leaves no install behind.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let out = Command::new("dpkg").args(["--purge", PKG]).output();
        match out {
            Ok(o) if !o.status.success() => {
                eprintln!("dpkg --purge {PKG} failed: {}", text(&o.stderr))
            }
            Err(e) => eprintln!("cannot run dpkg --purge {PKG}: {e}"),
            Ok(_) => {}
        }
    }
}

fn installed_already() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PKG])
        .output()
        .map(|o| text(&o.stdout).contains("installed"))
        .unwrap_or(false)
}

/// The unit's `ExecStart=` argv with `$ARGS` (the EnvironmentFile's flags) dropped.
fn exec_start(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart=");
    line.split_whitespace()
        .filter(|w| *w != "$ARGS")
        .map(str::to_string)
        .collect()
}

#[test]
fn debian_package_builds_installs_runs_and_is_removed() {
    if !cargo_deb_available() {
        return;
    }
    if which("dpkg-deb").is_none() {
        eprintln!("SKIP: dpkg-deb is not installed (a Debian/Ubuntu machine's dpkg package)");
        return;
    }
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let deb = build_deb(tmp.path());

    // ---- contents -----------------------------------------------------------
    let out = common::run_ok("dpkg-deb -c", Command::new("dpkg-deb").arg("-c").arg(&deb));
    let listing = text(&out.stdout);
    let entry = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" ./{path}")))
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{listing}"))
            .to_string()
    };
    assert!(entry("usr/bin/homelab-monitor").starts_with("-rwxr-xr-x 0/0 "));
    for f in [
        CONFIG,
        "etc/default/homelab-monitor",
        UNIT,
        "usr/share/doc/homelab-monitor/copyright",
        "usr/share/doc/homelab-monitor/README.md",
        "usr/share/homelab-monitor/alerts/homelab-monitor.rules.yml",
        "usr/share/homelab-monitor/dashboards/homelab-overview.json",
    ] {
        assert!(entry(f).starts_with("-rw-r--r-- 0/0 "), "{f}");
    }
    let out = common::run_ok("dpkg-deb -I", Command::new("dpkg-deb").arg("-I").arg(&deb));
    let info = text(&out.stdout);
    assert!(info.contains(&format!(" Package: {PKG}\n")), "{info}");
    assert!(
        info.contains(&format!(" Version: {}-1\n", env!("CARGO_PKG_VERSION"))),
        "{info}"
    );
    assert!(info.contains(" Depends: libc6"), "{info}");
    let out = common::run_ok(
        "dpkg-deb -I conffiles",
        Command::new("dpkg-deb")
            .arg("-I")
            .arg(&deb)
            .arg("conffiles"),
    );
    let conffiles = text(&out.stdout);
    assert_eq!(
        conffiles.lines().collect::<Vec<_>>(),
        [
            "/etc/homelab-monitor/monitoring-config.yaml",
            "/etc/default/homelab-monitor"
        ],
        "upgrades keep the admin's edits"
    );
    // The copyright file is the full license text.
    let x = tmp.path().join("x");
    common::run_ok(
        "dpkg-deb -x",
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x),
    );
    let copyright =
        std::fs::read_to_string(x.join("usr/share/doc/homelab-monitor/copyright")).unwrap();
    assert!(copyright.contains("Apache License"), "{copyright}");
    assert!(copyright.contains("END OF TERMS AND CONDITIONS"));

    // ---- the unit's hardening -----------------------------------------------
    let unit = std::fs::read_to_string(x.join(UNIT)).unwrap();
    for directive in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "ReadOnlyPaths=/",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "EnvironmentFile=-/etc/default/homelab-monitor",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == directive),
            "{directive} missing from the unit:\n{unit}"
        );
    }
    let argv = exec_start(&unit);
    assert_eq!(
        argv[..3],
        [
            "/usr/bin/homelab-monitor",
            "--config",
            "/etc/homelab-monitor/monitoring-config.yaml"
        ]
    );

    // ---- install (root) or extract -------------------------------------------
    let root = rustix::process::getuid().is_root();
    let (prefix, installed) = if root
        && (installed_already() || Path::new("/usr/bin/homelab-monitor").exists())
    {
        eprintln!("note: {PKG} is already installed on this machine (or /usr/bin/homelab-monitor exists): not touching it; running the package extracted with dpkg-deb -x instead");
        (x.clone(), None)
    } else if root && which("dpkg").is_some() {
        common::run_ok("dpkg -i", Command::new("dpkg").arg("-i").arg(&deb));
        let guard = Installed;
        let out = common::run_ok("dpkg -s", Command::new("dpkg").args(["-s", PKG]));
        assert!(text(&out.stdout).contains("Status: install ok installed"));
        (PathBuf::from("/"), Some(guard))
    } else {
        eprintln!(
            "note: not root: the package is extracted with dpkg-deb -x, not installed with dpkg -i"
        );
        (x.clone(), None)
    };
    let at = |abs: &str| prefix.join(abs.trim_start_matches('/'));

    // The installed binary.
    let bin = at("/usr/bin/homelab-monitor");
    let out = common::run_ok(
        "homelab-monitor --version",
        Command::new(&bin).arg("--version"),
    );
    assert_eq!(
        text(&out.stdout).trim(),
        format!("homelab-monitor {}", env!("CARGO_PKG_VERSION"))
    );

    // The unit's ExecStart against the default config, once (--once instead
    // of serving), as an unprivileged user like DynamicUser= when we can.
    let mut cmd = match (root, which("setpriv")) {
        (true, Some(setpriv)) => {
            let mut c = Command::new(setpriv);
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&bin);
            c
        }
        _ => Command::new(&bin),
    };
    let args: Vec<String> = argv[1..]
        .iter()
        .map(|a| {
            if a.starts_with("/etc/") {
                at(a).to_string_lossy().to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    let out = run(
        "ExecStart --once",
        cmd.args(&args)
            .arg("--once")
            .current_dir("/")
            .env_remove("RUST_LOG"),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    // The default config watches nothing yet: a finding (exit 2), never clean.
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.contains("\nterraform_state_targets 0"), "{stdout}");
    assert!(
        stdout.contains("homelab_monitor_collector_success{monitor=\"terraform_state\"} 1"),
        "{stdout}"
    );
    assert!(stderr.contains("nothing is monitored"), "{stderr}");

    // The default config's commented examples are valid config once uncommented.
    let config =
        std::fs::read_to_string(at("/etc/homelab-monitor/monitoring-config.yaml")).unwrap();
    let uncommented: String = config
        .lines()
        .map(|l| match l.strip_prefix("  # ") {
            Some(rest) => format!("  {rest}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    let full = tmp.path().join("full.yaml");
    std::fs::write(&full, uncommented).unwrap();
    let out = run(
        "homelab-monitor --once (examples uncommented)",
        Command::new(&bin)
            .arg("--config")
            .arg(&full)
            .arg("--once")
            .env_remove("RUST_LOG"),
    );
    let stdout = text(&out.stdout);
    for m in ["certificate_expiry", "backup_validation"] {
        assert!(
            stdout.contains(&format!(
                "homelab_monitor_collector_success{{monitor=\"{m}\"}}"
            )),
            "{m} not built from the uncommented example: {}",
            text(&out.stderr)
        );
    }

    // ---- systemd-analyze ---------------------------------------------------------
    match which("systemd-analyze") {
        None => eprintln!(
            "SKIP systemd-analyze checks: systemd-analyze is not installed (package systemd)"
        ),
        Some(sa) => {
            let unit_path = at(&format!("/{UNIT}"));
            if prefix == Path::new("/") {
                let out = run(
                    "systemd-analyze verify",
                    Command::new(&sa).arg("verify").arg(&unit_path),
                );
                assert!(
                    out.status.success(),
                    "systemd-analyze verify: {}{}",
                    text(&out.stdout),
                    text(&out.stderr)
                );
            } else {
                eprintln!("SKIP systemd-analyze verify: the package is not installed (its ExecStart binary is not at /usr/bin)");
            }
            // Exposure 2.0 or less ("OK") on systemd's own scale.
            let out = run(
                "systemd-analyze security --offline",
                Command::new(&sa)
                    .args(["security", "--offline=yes", "--threshold=20"])
                    .arg(&unit_path),
            );
            let all = text(&out.stdout) + &text(&out.stderr);
            if all.contains("unrecognized option") {
                eprintln!(
                    "SKIP systemd-analyze security --offline: this systemd is older than 250"
                );
            } else {
                assert!(out.status.success(), "exposure above 2.0: {all}");
            }
        }
    }

    // ---- removal ---------------------------------------------------------------
    if let Some(guard) = installed {
        drop(guard);
        assert!(!Path::new("/usr/bin/homelab-monitor").exists());
        assert!(!Path::new("/etc/homelab-monitor/monitoring-config.yaml").exists());
        assert!(!installed_already(), "still installed after dpkg --purge");
    }
}

/// scripts/test.sh keeps its log in this checkout's target/ (not a fixed /tmp
/// path that two runs would share) and still prints the summary line CI reads
/// from it; scripts/demo.sh lets cargo show its progress on a first build.
#[test]
fn test_script_logs_under_target_and_demo_shows_build_progress() {
    let test_sh = std::fs::read_to_string(common::repo().join("scripts/test.sh")).unwrap();
    assert!(!test_sh.contains("/tmp/"), "a fixed /tmp path in test.sh");
    assert!(test_sh.contains("\nlog=target/"), "{test_sh}");
    assert!(
        test_sh.contains(r#"| tee "$log""#)
            && test_sh.contains(r#"printf "%d passed, %d failed\n", p, f}' "$log""#),
        "the summary line is read from the log: {test_sh}"
    );
    assert!(
        test_sh.contains("cargo install cargo-deb --locked"),
        "tests/package.rs needs cargo-deb"
    );
    let demo = std::fs::read_to_string(common::repo().join("scripts/demo.sh")).unwrap();
    let build = demo
        .lines()
        .find(|l| l.trim_start().starts_with("cargo build"))
        .expect("demo.sh builds the binary");
    assert!(
        !build.contains(" -q") && !build.contains("--quiet"),
        "a quiet build prints nothing for minutes: {build}"
    );
}

/// The README's "Dependencies, and why" names every direct dependency of
/// Cargo.toml (and none that is gone).
#[test]
fn readme_dependency_table_names_every_direct_dependency() {
    let manifest = std::fs::read_to_string(common::repo().join("Cargo.toml")).unwrap();
    let deps: Vec<&str> = manifest
        .split("\n[dependencies]\n")
        .nth(1)
        .expect("Cargo.toml has [dependencies]")
        .split("\n[")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim()))
        .collect();
    assert!(deps.len() > 30, "{deps:?}");
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let table = readme
        .split("## Dependencies, and why\n")
        .nth(1)
        .and_then(|t| t.split("\n## ").next())
        .expect("README has a Dependencies section");
    let rows: String = table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.split(" | ").next().unwrap_or_default())
        .collect();
    let missing: Vec<&&str> = deps
        .iter()
        .filter(|d| !rows.contains(&format!("`{d}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in the README's dependency table: {missing:?}"
    );
}

/// docs/health-checks.md counts the inhibit rules of alerts/alertmanager.yml
/// right, and says the health-check one is among them.
#[test]
fn health_checks_doc_counts_the_shipped_inhibit_rules() {
    let am = std::fs::read_to_string(common::repo().join("alerts/alertmanager.yml")).unwrap();
    let am: serde_yaml_ng::Value = serde_yaml_ng::from_str(&am).unwrap();
    let rules = am["inhibit_rules"].as_sequence().expect("inhibit_rules");
    let check_rule = rules.iter().any(|r| {
        r["equal"]
            .as_sequence()
            .is_some_and(|e| e.iter().any(|l| l.as_str() == Some("check")))
    });
    let doc = std::fs::read_to_string(common::repo().join("docs/health-checks.md")).unwrap();
    assert!(
        doc.contains(&format!("which has {} inhibit rules", rules.len())),
        "docs/health-checks.md does not say {} inhibit rules",
        rules.len()
    );
    assert!(
        check_rule,
        "alerts/alertmanager.yml has no inhibit rule per check"
    );
    assert!(doc.contains("So only `HealthCheckDown` is\n  sent while both fire."));
}

/// The README's configuration section shows a `health_checks:` block, and it
/// loads as it is written.
#[test]
fn readme_config_section_shows_health_checks_that_load() {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let section = readme
        .split("## Configuration: `monitoring-config.yaml`\n")
        .nth(1)
        .and_then(|t| t.split("\n## ").next())
        .expect("README has a Configuration section");
    let block = section
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("\n```").next())
        .find(|b| b.starts_with("health_checks:"))
        .expect("the Configuration section shows a health_checks: block");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("monitoring-config.yaml");
    std::fs::write(&path, block).unwrap();
    let config = homelab_monitor::core::config::Config::load(&path)
        .unwrap_or_else(|e| panic!("the README's health_checks block does not load: {e}"));
    let checks = config.file.health_checks.expect("health_checks loaded");
    assert_eq!(checks.checks.len(), 4);
}

/// The README's command-line reference is one table (a blank line inside
/// it cut it in two) that lists every long flag of `--help`.
#[test]
fn readme_cli_table_is_one_table_with_every_flag() {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let section = readme
        .split("### Command-line reference\n")
        .nth(1)
        .expect("README has a Command-line reference");
    let table: Vec<&str> = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect();
    let help = common::run_ok(
        "homelab-monitor --help",
        Command::new(common::BIN).arg("--help"),
    );
    let help = text(&help.stdout);
    // The option lines of --help (`  --flag <VALUE>` or `  -h, --help`).
    let flags: Vec<&str> = help
        .lines()
        .map(|l| {
            l.trim_start()
                .trim_start_matches("-h, ")
                .trim_start_matches("-V, ")
        })
        .filter(|l| l.starts_with("--"))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| !matches!(*w, "--help" | "--version"))
        .collect();
    assert!(flags.contains(&"--once") && flags.contains(&"--web.max-connections"));
    let joined = table.join("\n");
    let missing: Vec<&&str> = flags
        .iter()
        .filter(|f| !joined.contains(&format!("`{f} ")) && !joined.contains(&format!("`{f}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in the README's command-line table (or after a break in it): {missing:?}"
    );
}

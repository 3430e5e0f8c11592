//! Shared helpers for the integration tests: run the binary, speak HTTP on
//! loopback, copy the example, find real tools.
#![allow(dead_code)]

pub mod backups;
pub mod certs;
pub mod gen;
pub mod remote;
pub mod stub;
pub mod tools;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

pub const BIN: &str = env!("CARGO_BIN_EXE_homelab-monitor");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// Recursively copy a folder.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// Set the mtime of every file under `dir` (golden files need stable timestamps).
pub fn set_mtimes(dir: &Path, t: SystemTime) {
    for e in walk(dir) {
        if e.is_file() {
            let f = std::fs::File::options().write(true).open(&e).unwrap();
            f.set_modified(t).unwrap();
        }
    }
}

/// Every file below `dir` (recursive, following directories), sorted.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The shipped example, copied to a temp dir.
pub fn example_copy() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples"), t.path());
    t
}

/// A raw HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

/// GET (or another method) over a fresh loopback connection.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    extra_headers: &str,
) -> std::io::Result<HttpResponse> {
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra_headers}\r\n"
    );
    raw_request(port, raw.as_bytes(), Duration::from_secs(120))
}

/// Send `raw` on a fresh loopback connection and read the answer to the end,
/// each step within `timeout` (or an error).
pub fn raw_request(port: u16, raw: &[u8], timeout: Duration) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect_timeout(&(std::net::Ipv4Addr::LOCALHOST, port).into(), timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(raw)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(HttpResponse {
        status,
        headers: head.to_string(),
        body: body.to_string(),
    })
}

pub fn get(port: u16, path: &str) -> HttpResponse {
    http(port, "GET", path, "").expect("HTTP request failed")
}

/// A running exporter; killed (SIGTERM, then SIGKILL) on drop.
pub struct Exporter {
    pub child: Child,
    pub port: u16,
    pub stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Exporter {
    /// Start the binary in `cwd` with `args` plus a loopback listen address.
    pub fn start(cwd: &Path, args: &[&str]) -> Exporter {
        Self::start_with(cwd, args, None)
    }

    /// Write `yaml` to `cwd/c.yaml` and start the binary with it.
    pub fn with_config(cwd: &Path, yaml: &str) -> Exporter {
        std::fs::write(cwd.join("c.yaml"), yaml).unwrap();
        Self::start(cwd, &["--config", "c.yaml"])
    }

    /// Start without the plain-HTTP health wait (TLS or auth in front): waits
    /// until the port accepts connections.
    pub fn start_tcp(cwd: &Path, args: &[&str]) -> Exporter {
        let mut e = Self::spawn(cwd, args, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", e.port)).is_err() {
            if let Ok(Some(status)) = e.child.try_wait() {
                panic!("exporter exited early with {status}: {}", e.logs());
            }
            assert!(
                Instant::now() < deadline,
                "exporter never listened: {}",
                e.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        e
    }

    /// Same, optionally wrapped in a command prefix (e.g. setpriv to drop root).
    pub fn start_with(cwd: &Path, args: &[&str], prefix: Option<&[&str]>) -> Exporter {
        let mut e = Self::spawn(cwd, args, prefix);
        e.wait_healthy();
        e
    }

    fn spawn(cwd: &Path, args: &[&str], prefix: Option<&[&str]>) -> Exporter {
        let port = free_port();
        let logdir = tempfile::tempdir().unwrap();
        let stderr_path = logdir.path().join("stderr.log");
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = match prefix {
            Some(p) => {
                let mut c = Command::new(p[0]);
                c.args(&p[1..]).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.current_dir(cwd)
            .args(args)
            .args(["--web.listen-address", &listen])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap());
        let child = cmd.spawn().expect("cannot start homelab-monitor");
        Exporter {
            child,
            port,
            stderr_path,
            _dir: logdir,
        }
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("exporter exited early with {status}: {}", self.logs());
            }
            if http(self.port, "GET", "/healthz", "")
                .map(|r| r.status == 200)
                .unwrap_or(false)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("exporter did not become healthy: {}", self.logs());
    }

    /// Wait until /readyz is 200 (first collection done).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if get(self.port, "/readyz").status == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("exporter never became ready: {}", self.logs());
    }

    pub fn metrics(&self) -> String {
        let r = get(self.port, "/metrics");
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// Values read after this call: scrape once (which starts a refresh of
    /// every monitor whose values are older than its check_interval, or joins
    /// one already running, maybe started before the caller changed a file),
    /// wait until it has landed, then do it once more, so that the values
    /// returned come from a refresh that started after this call.
    pub fn refreshed_metrics(&self) -> String {
        self.metrics();
        self.quiet_metrics();
        self.metrics();
        self.quiet_metrics()
    }

    /// Scrape until no collection has been running for more than 40 ms
    /// (one started by that very scrape has just begun).
    fn quiet_metrics(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            std::thread::sleep(Duration::from_millis(60));
            let m = self.metrics();
            let running = m
                .lines()
                .filter(|l| l.starts_with("homelab_monitor_collection_in_flight_seconds{"))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                .any(|v| v >= 0.04);
            if !running {
                return m;
            }
            assert!(Instant::now() < deadline, "refresh never finished: {m}");
        }
    }

    /// The exporter's process id (for /proc/PID/status).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Send SIGTERM and wait for the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
            std::thread::sleep(Duration::from_millis(100));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value of the series `name{labels}` in an exposition, if present.
/// `labels` must be given in the order the exporter writes them.
pub fn series(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(name_and_labels)?;
        let v = rest.strip_prefix(' ')?;
        v.trim().parse().ok()
    })
}

/// `terraform_state_up`, `terraform_state_stale` and `terraform_state_serial`
/// of the local state `state_file`, in that order.
pub fn state_values(metrics: &str, state_file: &str) -> [Option<f64>; 3] {
    ["up", "stale", "serial"].map(|m| {
        series(
            metrics,
            &format!("terraform_state_{m}{{state_file=\"{state_file}\"}}"),
        )
    })
}

/// Asserts `[up, stale, serial]` of the local state `state_file` (see [`state_values`]).
pub fn assert_state(metrics: &str, state_file: &str, expected: [Option<f64>; 3]) {
    assert_eq!(
        state_values(metrics, state_file),
        expected,
        "up, stale, serial of {state_file}:\n{metrics}"
    );
}

/// Run the binary to completion.
pub fn run(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .current_dir(cwd)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run homelab-monitor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Run `cmd` (`what` names it) to completion; panics with its output unless
/// it exited 0.
pub fn run_ok(what: &str, cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Path of a required external tool, or a panic naming the package to install.
pub fn tool(name: &str, package: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` is not installed: run `apt-get install -y {package}` (the README's test command does this)");
}

/// `promtool check metrics` must pass with no lint output.
pub fn promtool_check(metrics: &str) {
    let mut child = Command::new(tool("promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run promtool");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(metrics.as_bytes()).expect("promtool stdin");
    }
    let out = child.wait_with_output().expect("promtool output");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.trim().is_empty(),
        "promtool check metrics: {text}"
    );
}

/// Poll `f` every 500 ms until it gives a value; fail after `secs` seconds.
pub fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

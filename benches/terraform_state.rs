//! Benchmark of the Terraform state monitor (not a test; see README "Benchmarks").
//!
//! Each mode runs in its own process so that its peak RSS (VmHWM) is its own:
//!   gen DIR            write DIR/big.tfstate (~150 MB, 60,000 instances) and DIR/fleet/ (200 x ~1 MB)
//!   gen-aws DIR        write DIR/aws.tfstate (~146 MB, 60,000 instances shaped like real AWS
//!                      states: JSON-encoded IAM policies, user_data scripts, escapes everywhere)
//!   validate PATH      read the file (or every *.tfstate below PATH) into memory and JSON-validate it (serde_json -> IgnoredAny)
//!   parse FILE         stream-parse it with the monitor's parser
//!   collect-policies FILE [MAX_INPUT_BYTES]
//!                      `collect` with the starter policies (run from the repository root) and
//!                      policy_max_input_size (default 256 MiB); a third argument names
//!                      another policy folder (scripts/bench-policies.sh: the same library
//!                      without its `# policy-scope: resource` lines, i.e. whole-state)
//!   collect PATH       one cold collection of a file or a folder (fleet), then a re-check with
//!                      unchanged files, then /metrics encoding; prints timings
//!   gen-fleet DIR N    write N small states (5 instances, ~4 KB each) as DIR/dNNN/wsNNNNNN/terraform.tfstate
//!   fleet-mem DIR [gzip]
//!                      memory of a fleet while serving: cold collection, identity and gzip
//!                      scrapes (`gzip`: gzip only, as Prometheus asks), a re-collection,
//!                      scrapes again; prints RSS while serving, peak RSS (and the cold
//!                      collection's own), exposition and gzip sizes, where the heap goes
//!                      (counting allocator), and the per-target memory by category
//!                      (`TerraformMonitor::memory_breakdown`, bytes per state)
//!   fleet-scrape DIR   time of uncompressed scrapes of a fleet, each body read whole: the
//!                      first (encoding included), then the median of 5 warm ones
//! Run it with `scripts/bench.sh`.

#[path = "../tests/common/gen.rs"]
mod gen;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use homelab_monitor::core::clock::SystemClock;
use homelab_monitor::core::config::{GlobPattern, HumanDuration, TerraformConfig};
use homelab_monitor::core::encoder::Format;
use homelab_monitor::core::monitor::Monitor;
use homelab_monitor::core::registry::Registry;
use homelab_monitor::monitors::terraform::{state::parse_state, TerraformMonitor};

/// Counts live heap bytes (this benchmark binary only), to say where a
/// fleet's memory goes.
struct CountingAlloc;

static LIVE: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        let p = unsafe { std::alloc::System.alloc(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size() as isize, std::sync::atomic::Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(p, l) };
        LIVE.fetch_sub(l.size() as isize, std::sync::atomic::Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        let q = unsafe { std::alloc::System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE.fetch_add(
                new as isize - l.size() as isize,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        q
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn live_mib() -> f64 {
    LIVE.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1048576.0
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

fn report(what: &str, secs: f64, extra: &str) {
    println!(
        "{what}: {secs:.3} s, peak RSS {:.1} MiB{extra}",
        peak_rss_kib() as f64 / 1024.0
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mode = args.first().map(String::as_str).unwrap_or("");
    let path = PathBuf::from(args.get(1).cloned().unwrap_or_else(|| "benches/out".into()));
    match mode {
        "gen" => generate(&path),
        "gen-aws" => {
            std::fs::create_dir_all(&path).expect("mkdir");
            let mut w = std::io::BufWriter::new(
                std::fs::File::create(path.join("aws.tfstate")).expect("create"),
            );
            gen::write_aws_state(&mut w, 60_000, "bench-aws", 1).expect("write");
        }
        "validate" => {
            let t = Instant::now();
            let mut total = 0;
            for file in files(&path) {
                let bytes = std::fs::read(&file).expect("read");
                let _: serde::de::IgnoredAny = serde_json::from_slice(&bytes).expect("valid JSON");
                total += bytes.len();
            }
            report(
                "read+validate",
                t.elapsed().as_secs_f64(),
                &format!(", {total} bytes"),
            );
        }
        "parse" => {
            let t = Instant::now();
            let f = std::fs::File::open(&path).expect("open");
            let st = parse_state(f).expect("parse");
            report(
                "stream parse",
                t.elapsed().as_secs_f64(),
                &format!(", {} instances", st.instance_count()),
            );
        }
        "collect" => collect(&path, None),
        "gen-fleet" => {
            let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
            for i in 0..n {
                let p = path.join(format!("d{:03}/ws{i:06}/terraform.tfstate", i / 1000));
                std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                let mut w = std::io::BufWriter::new(std::fs::File::create(p).expect("create"));
                gen::write_state(&mut w, 5, 700, &format!("fleet-{i}"), i as u64).expect("write");
            }
        }
        "fleet-mem" => fleet_mem(&path, args.get(2).is_some_and(|a| a == "gzip")),
        "fleet-scrape" => fleet_scrape(&path),
        "collect-policies" => {
            // The starter library (policies/), with policy_max_input_size.
            let max = args
                .get(2)
                .and_then(|a| a.parse().ok())
                .unwrap_or(256u64 << 20);
            let lib = match args.get(3) {
                Some(dir) => PathBuf::from(dir),
                None => std::env::current_dir().expect("cwd").join("policies"),
            };
            collect(&path, Some((lib.to_string_lossy().to_string(), max)));
        }
        _ => {
            eprintln!(
                "usage: terraform_state gen DIR | gen-aws DIR | validate FILE | parse FILE | collect FILE_OR_DIR"
            );
            std::process::exit(2);
        }
    }
}

/// The file itself, or every *.tfstate below a folder.
fn files(path: &Path) -> Vec<PathBuf> {
    if !path.is_dir() {
        return vec![path.to_path_buf()];
    }
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tfstate"))
        .map(|e| e.into_path())
        .collect();
    out.sort();
    out
}

fn generate(dir: &Path) {
    std::fs::create_dir_all(dir.join("fleet")).expect("mkdir");
    let t = Instant::now();
    let mut w =
        std::io::BufWriter::new(std::fs::File::create(dir.join("big.tfstate")).expect("create"));
    gen::write_state(&mut w, 60_000, 2_500, "bench-big", 1).expect("write");
    drop(w);
    for i in 0..200 {
        let p = dir.join(format!("fleet/ws{i:03}/terraform.tfstate"));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        let mut w = std::io::BufWriter::new(std::fs::File::create(p).expect("create"));
        gen::write_state(&mut w, 400, 2_500, &format!("bench-fleet-{i}"), i).expect("write");
    }
    println!("generated in {:.1} s", t.elapsed().as_secs_f64());
}

fn collect(path: &Path, policies: Option<(String, u64)>) {
    let mut cfg = TerraformConfig::default();
    if let Some((lib, max)) = policies {
        cfg.policies = vec![lib];
        cfg.policy_max_input_size = homelab_monitor::core::config::ByteSize(max);
        cfg.policy_timeout = HumanDuration(std::time::Duration::from_secs(600));
        cfg.timeout = HumanDuration(std::time::Duration::from_secs(600));
    }
    let (base, rel) = if path.is_dir() {
        (path.to_path_buf(), None)
    } else {
        (
            path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            path.file_name().map(|f| f.to_string_lossy().to_string()),
        )
    };
    match rel {
        Some(f) => cfg.state_files = vec![GlobPattern(f)],
        None => cfg.state_dirs = vec![GlobPattern(".".into())],
    }
    cfg.check_interval = HumanDuration(std::time::Duration::from_millis(1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let monitor: Arc<dyn Monitor> = Arc::new(TerraformMonitor::new(cfg, base));
        let registry = Registry::new(vec![monitor], Arc::new(SystemClock));
        let t = Instant::now();
        let out = registry.gather().await;
        let cold = t.elapsed().as_secs_f64();
        let targets = out[0].snapshot.targets.len();
        let policies: Vec<f64> = out[0]
            .snapshot
            .families
            .iter()
            .filter(|f| f.def.name == "terraform_state_policy_evaluation_success")
            .flat_map(|f| f.samples.iter().map(|x| x.value))
            .collect();
        let violations: f64 = out[0]
            .snapshot
            .families
            .iter()
            .filter(|f| f.def.name == "terraform_state_policy_violations")
            .flat_map(|f| f.samples.iter().map(|x| x.value))
            .sum();
        let evaluated = if policies.is_empty() {
            String::new()
        } else {
            format!(
                ", policies evaluated {}/{}, {violations} violations",
                policies.iter().filter(|v| **v == 1.0).count(),
                policies.len()
            )
        };
        report(
            "cold collection",
            cold,
            &format!(", {targets} state(s){evaluated}"),
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let t = Instant::now();
        registry.gather().await;
        report("re-check, files unchanged", t.elapsed().as_secs_f64(), "");
        let t = Instant::now();
        let body = registry
            .scrape(Format::Classic, std::time::Duration::from_secs(600), None)
            .await
            .expect("encode");
        report(
            "scrape (re-check + encode)",
            t.elapsed().as_secs_f64(),
            &format!(", {} bytes of metrics", body.len()),
        );
    });
}

/// A fleet's configuration (every state under the current folder; scrapes
/// answer from memory, re-checks are forced) and a runtime to collect it.
fn fleet_setup() -> (TerraformConfig, tokio::runtime::Runtime) {
    let cfg = TerraformConfig {
        state_dirs: vec![GlobPattern(".".into())],
        check_interval: HumanDuration(std::time::Duration::from_secs(3600)),
        timeout: HumanDuration(std::time::Duration::from_secs(600)),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    (cfg, rt)
}

/// Memory of a fleet while it is served (see the module doc, `fleet-mem`).
fn fleet_mem(dir: &Path, gzip_only: bool) {
    use homelab_monitor::core::compress::Encoding;
    let (cfg, rt) = fleet_setup();
    rt.block_on(async {
        let base = live_mib();
        let tf = Arc::new(TerraformMonitor::new(cfg, dir.to_path_buf()));
        let monitor: Arc<dyn Monitor> = tf.clone();
        let registry = Registry::new(vec![monitor], Arc::new(SystemClock));
        let t = Instant::now();
        let out = registry.gather().await;
        let cold = t.elapsed().as_secs_f64();
        let targets = out[0].snapshot.targets.len();
        let after_collect = live_mib();
        let peak_cold = status_kib("VmHWM:") as f64 / 1024.0;
        let per_target = tf.memory_breakdown();
        // What the snapshot holds, measured by cloning its parts.
        let l0 = live_mib();
        let fams = out[0].snapshot.families.clone();
        let series: usize = fams.iter().map(|f| f.samples.len()).sum();
        let l1 = live_mib();
        // The clone shares the label strings (counted in "the rest"); the
        // estimate counts each shared string once.
        let series_est: usize = fams.iter().map(|f| f.samples.heap_bytes()).sum();
        let statuses = out[0].snapshot.targets.clone();
        let l2 = live_mib();
        drop((fams, statuses));
        let (fam_mib, status_mib) = (l1 - l0, l2 - l1);
        // What the exporter itself says it keeps (homelab_monitor_retained_bytes).
        let retained_mib = registry
            .self_metrics(&out)
            .value("homelab_monitor_retained_bytes", &[("monitor", "terraform_state")])
            .unwrap_or(0.0)
            / 1048576.0;
        drop(out);
        let wait = std::time::Duration::from_secs(600);
        let scrape = |e: Encoding| {
            let r = &registry;
            async move {
                r.scrape_encoded(Format::Classic, wait, None, e)
                    .await
                    .expect("encode")
                    .len()
            }
        };
        let mut identity = 0;
        for _ in 0..3 {
            if !gzip_only {
                identity = scrape(Encoding::Identity).await;
            }
        }
        let after_text = live_mib();
        let mut gz = 0;
        for _ in 0..3 {
            gz = scrape(Encoding::Gzip).await;
        }
        let after_gzip = live_mib();
        // A re-collection (targets served from memory): a new snapshot and
        // a new encoding while the last ones are held.
        registry.expire();
        let t = Instant::now();
        registry.gather().await;
        let recheck = t.elapsed().as_secs_f64();
        for _ in 0..3 {
            scrape(Encoding::Gzip).await;
            if !gzip_only {
                scrape(Encoding::Identity).await;
            }
        }
        let serving = status_kib("VmRSS:") as f64 / 1024.0;
        let peak = status_kib("VmHWM:") as f64 / 1024.0;
        println!(
            "fleet-mem{}: {targets} states, {series} series, cold collection {cold:.2} s, re-check {recheck:.2} s, \
             serving RSS {serving:.1} MiB, peak RSS {peak:.1} MiB (after the cold collection {peak_cold:.1} MiB), exposition {identity} bytes, gzip {gz} bytes, \
             live heap {:.1} MiB",
            if gzip_only { " (gzip only)" } else { "" },
            live_mib() - base
        );
        println!(
            "fleet-mem heap: after collection {:.1} MiB (series {fam_mib:.1} MiB, target statuses {status_mib:.1} MiB, \
             the rest (per-target memory) {:.1} MiB), encoded text {:.1} MiB, gzip {:.1} MiB; \
             series estimate with their shared label strings {:.1} MiB",
            after_collect - base,
            after_collect - base - fam_mib - status_mib,
            after_text - after_collect,
            after_gzip - after_text,
            series_est as f64 / 1048576.0
        );
        let n = per_target.targets.max(1) as f64;
        for (what, bytes) in per_target.parts.iter().chain([&("total", per_target.total())]) {
            println!(
                "fleet-mem per-target: {what:<40} {:>8.1} MiB {:>7.1} B/state",
                *bytes as f64 / 1048576.0,
                *bytes as f64 / n
            );
        }
        println!(
            "fleet-mem retained: homelab_monitor_retained_bytes after collection {retained_mib:.1} MiB \
             (the counted heap then: {:.1} MiB)",
            after_collect - base
        );
    });
}

/// Time of uncompressed scrapes of a fleet (see the module doc,
/// `fleet-scrape`): the body is read whole, as a scraper reads it.
fn fleet_scrape(dir: &Path) {
    use homelab_monitor::core::compress::Encoding;
    let (cfg, rt) = fleet_setup();
    rt.block_on(async {
        let monitor: Arc<dyn Monitor> = Arc::new(TerraformMonitor::new(cfg, dir.to_path_buf()));
        let registry = Registry::new(vec![monitor], Arc::new(SystemClock));
        registry.gather().await;
        let wait = std::time::Duration::from_secs(600);
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..6 {
            let t = Instant::now();
            let body = registry
                .scrape_encoded(Format::Classic, wait, None, Encoding::Identity)
                .await
                .expect("encode");
            bytes = body.read_all().expect("inflate").len();
            times.push(t.elapsed().as_secs_f64());
        }
        let first = times.remove(0);
        times.sort_by(f64::total_cmp);
        println!(
            "fleet-scrape: {bytes} bytes, first uncompressed scrape {first:.3} s, warm median {:.3} s \
             (min {:.3}, max {:.3}), peak RSS {:.1} MiB",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1],
            peak_rss_kib() as f64 / 1024.0
        );
    });
}

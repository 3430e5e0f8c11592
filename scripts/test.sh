#!/usr/bin/env bash
# The whole test suite. Installs what the tests need (Debian packages) when it
# is missing, then: cargo fmt --check, clippy (-D warnings), cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package
need=(
  "promtool:prometheus"
  "prometheus:prometheus"
  "setpriv:util-linux"
  "openssl:openssl"
  "curl:curl"
  "amtool:prometheus-alertmanager"
  "prometheus-blackbox-exporter:prometheus-blackbox-exporter"
  "prometheus-node-exporter:prometheus-node-exporter"
  "restic:restic"
  "borg:borgbackup"
  "initdb:postgresql"
  "pgbackrest:pgbackrest"
  "borgmatic:borgmatic"
  "barman:barman"
  "chromium:chromium"
  "slapd:slapd"
  "mariadbd:mariadb-server"
  "vsftpd:vsftpd"
  "prosody:prosody"
  "keytool:default-jre-headless"
)
missing=()
for pair in "${need[@]}"; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  echo "installing test dependencies: $pkgs"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi

# A real terraform and its null provider (PyPI sdists) for tests/remote_*.rs.
scripts/install-terraform.sh
export PATH="$PWD/.cache/tools/bin:$PATH"

cargo fmt --all -- --check
# Clippy and the test build in one compilation: clippy-driver is the compiler of
# our own crate (RUSTC_WORKSPACE_WRAPPER, what `cargo clippy` sets), so the lints
# (-D warnings, every target) run while the test binaries are built, and the
# dependencies compile once, not once for `cargo clippy` and again for `cargo
# test`. The same variables stay set for `cargo test` below, so nothing rebuilds.
RUSTC_WORKSPACE_WRAPPER=$(command -v clippy-driver || rustup which clippy-driver)
export RUSTC_WORKSPACE_WRAPPER
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
echo "building and linting every target (clippy -D warnings; the first build compiles all dependencies: ~10 min on 2 cores)"
cargo test --all-targets --locked --no-run
scripts/sync-deploy-assets.sh --check
# The mixin generators read YAML (PyYAML; installed from PyPI if missing).
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check pyyaml
python3 scripts/gen-mixin.py --check
python3 scripts/gen-dashboards.py --check
scripts/deny.sh
# cargo-deb for tests/package.rs (the Debian package), from crates.io when
# missing: under a minute of compiling after cargo-deny (both installs share
# target/cargo-tools, so their common crates compile once), once (then in
# ~/.cargo/bin). The test
# packages the binary `cargo test` builds (cargo deb --no-build): no second build.
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked --version 3.8.0 --target-dir target/cargo-tools
# The log is this checkout's (two checkouts' runs never share a file).
mkdir -p target
log=target/test-suite.log
cargo test --locked --no-fail-fast 2>&1 | tee "$log"
# Print the summary line that CI reads.
awk '/^test result:/ {p+=$4; f+=$6} END {printf "%d passed, %d failed\n", p, f}' "$log"

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
cargo clippy --all-targets --locked -- -D warnings
scripts/sync-deploy-assets.sh --check
python3 scripts/gen-dashboards.py --check
scripts/deny.sh
cargo test --locked 2>&1 | tee /tmp/homelab-monitor-test.log
# Print the summary line that CI reads.
awk '/^test result:/ {p+=$4; f+=$6} END {printf "%d passed, %d failed\n", p, f}' /tmp/homelab-monitor-test.log

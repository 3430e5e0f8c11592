#!/usr/bin/env bash
# Load test on loopback: 200 concurrent scrapers (keep-alive, like Prometheus)
# for 60 s against a fleet of 200 state files (~1 MB each) with check_interval
# 10s. Prints requests/s, p50/p99 latency, errors, RSS before/after and the
# number of collections (single-flight: about one per check_interval).
# Usage: scripts/load-test.sh [SCRAPERS] [SECONDS]
# HOMELAB_MONITOR_BIN=path runs another build of the exporter (A/B runs).
set -euo pipefail
cd "$(dirname "$0")/.."
scrapers=${1:-200}
secs=${2:-60}
out=benches/out
cargo build --release --locked -q
cargo build --release --locked -q --bench load --bench terraform_state
gen=$(ls -t target/release/deps/terraform_state-* | grep -v '\.d$' | head -1)
load=$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -1)
[ -d "$out/fleet" ] || "$gen" gen "$out"
cat > "$out/load.yaml" <<YAML
custom_monitors:
  terraform_state:
    check_interval: 10s
    state_dirs: [fleet]
YAML
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ulimit -n 4096 || true
"${HOMELAB_MONITOR_BIN:-target/release/homelab-monitor}" --config "$out/load.yaml" --web.listen-address "127.0.0.1:$port" --log.level warn &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 300); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
"$load" "$port" "$pid" "$scrapers" "$secs"

#!/usr/bin/env bash
# Run homelab-monitor on the shipped example (examples/): serve the exporter on
# loopback, scrape /metrics once, print the drift series and the --status table.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q
bin=target/release/homelab-monitor
port=${PORT:-9877}
"$bin" --config examples/monitoring-config.yaml --web.listen-address "127.0.0.1:$port" --log.level warn &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "== GET http://127.0.0.1:$port/metrics (Terraform drift and health)"
curl -fs "http://127.0.0.1:$port/metrics" | grep -E '^(terraform_state_(up|drift|unapproved_changes|tainted_instances|pending_changes)|homelab_monitor_collector_success)'
echo
echo "== homelab-monitor --status --config examples/monitoring-config.yaml"
"$bin" --status --config examples/monitoring-config.yaml || true

#!/usr/bin/env bash
# Run homelab-monitor on the shipped example with all three monitors: the
# Terraform states of examples/, plus a certificate and a backup manifest that
# this script generates in a temporary folder (nothing secret is committed;
# the folder is removed at exit). Serves the exporter on loopback, checks that
# the exporter answering is the one it started, scrapes /metrics once and
# prints the --status table.
#
#   scripts/demo.sh                 build (release) and run on a free port
#   PORT=9877 scripts/demo.sh       use this port; fails clearly when it is taken
#   HOMELAB_MONITOR_BIN=target/debug/homelab-monitor scripts/demo.sh   skip the build
#
# Needs: cargo (unless HOMELAB_MONITOR_BIN is set), curl, openssl, sha256sum or shasum.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "demo: error: $*" >&2; exit 1; }
for t in curl openssl; do
  command -v "$t" >/dev/null 2>&1 || die "$t is not installed"
done
if command -v sha256sum >/dev/null 2>&1; then sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else die "sha256sum (or shasum) is not installed"; fi
# RFC 3339 UTC time N hours ago (GNU date, then BSD date).
hours_ago() { date -u -d "-$1 hours" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -v "-$1H" +%Y-%m-%dT%H:%M:%SZ; }

bin=${HOMELAB_MONITOR_BIN:-}
if [ -z "$bin" ]; then
  # Cargo's own progress (one "Compiling" line per crate, then "Finished"):
  # a first release build compiles ~350 crates, many minutes on 2 cores.
  echo "demo: cargo build --release (a first build takes several minutes; later ones seconds)" >&2
  cargo build --release --locked
  bin=target/release/homelab-monitor
fi
[ -x "$bin" ] || die "$bin is not an executable"
version=$("$bin" --version | awk '{print $2}')

demo=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$demo"
}
trap cleanup EXIT

# ---- the example, plus a certificate and a backup generated now -------------
cp -R examples/. "$demo/"
mkdir -p "$demo/certs" "$demo/backups/app"
# A certificate valid for 90 days and one that expires in 5 (inside critical_days: 7).
for c in web:90 old-nas:5; do
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "${c#*:}" \
    -subj "/CN=${c%%:*}.homelab.local" -keyout "$demo/key.pem" -out "$demo/certs/${c%%:*}.pem" 2>/dev/null \
    || die "openssl could not create a certificate"
done
rm -f "$demo/key.pem"   # throwaway key; only certificates are watched
# A backup run of yesterday and one of an hour ago, with the file it wrote
# (checked with verify: checksums).
tar -C examples -czf "$demo/backups/app/terraform.tar.gz" terraform
size=$(wc -c <"$demo/backups/app/terraform.tar.gz" | tr -d ' ')
sum=$(sha256 "$demo/backups/app/terraform.tar.gz")
cat >"$demo/backups/app/manifest.json" <<EOF
[
  {"version": 1, "id": "app-yesterday", "start": "$(hours_ago 25)", "end": "$(hours_ago 24)",
   "status": "success", "size": $size},
  {"version": 1, "id": "app-today", "start": "$(hours_ago 2)", "end": "$(hours_ago 1)",
   "status": "success", "size": $size,
   "files": [{"path": "terraform.tar.gz", "size": $size, "sha256": "$sum"}]}
]
EOF
# The example's config as shipped (the seed's file), with the certificate
# folder and the backup source added under their sections.
awk '
  { print }
  /^    critical_days: / { print "    paths: [\"certs/\"]" }
  /^    retention_days: / { print "    sources:"; print "      - { name: app, format: manifest, path: \"backups/app/manifest.json\", max_age: \"26h\", verify: checksums }" }
' examples/monitoring-config.yaml >"$demo/monitoring-config.yaml"
grep -q 'paths: \["certs/"\]' "$demo/monitoring-config.yaml" && grep -q 'name: app' "$demo/monitoring-config.yaml" \
  || die "examples/monitoring-config.yaml changed shape: could not add the certificate and backup sections"

# ---- start our exporter and make sure it is the one answering ----------------
# Without PORT the kernel picks a free port (:0) and the exporter logs it.
address="127.0.0.1:${PORT:-0}"
log=$demo/exporter.log
"$bin" --config "$demo/monitoring-config.yaml" --web.listen-address "$address" \
  --log.level info --log.format json >"$log" 2>&1 &
pid=$!
listening=
for _ in $(seq 300); do
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null || true
    pid=
    if grep -qi 'in use' "$log"; then
      die "port ${PORT:-?} on 127.0.0.1 is already taken by another process; run without PORT to pick a free one, or choose another (PORT=19877 $0)"
    fi
    cat "$log" >&2
    die "the exporter exited during start-up (log above)"
  fi
  listening=$(grep -o '"address":"[^"]*"' "$log" | head -1 | cut -d'"' -f4 || true)
  if [ -n "$listening" ] && curl -fs "http://$listening/readyz" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
[ -n "$listening" ] || { cat "$log" >&2; die "the exporter never logged its listening address"; }
curl -fs "http://$listening/readyz" >/dev/null || die "the exporter at $listening never became ready"
metrics=$(curl -fs "http://$listening/metrics") || die "GET http://$listening/metrics failed"
# Ours: still running, and serving this build and this demo's own sources.
kill -0 "$pid" 2>/dev/null || die "the exporter started by this script is not running"
grep -q "^homelab_monitor_build_info{version=\"$version\"} 1" <<<"$metrics" \
  || die "the process answering on $listening is not this homelab-monitor $version"
grep -q '^backup_source_up{source="app"} 1' <<<"$metrics" \
  || die "the process answering on $listening does not serve this demo's backup source"

echo "== GET http://$listening/metrics (exporter PID $pid, homelab-monitor $version)"
grep -E '^(terraform_state_(up|drift|unapproved_changes|tainted_instances|pending_changes)|certificate_(not_after_timestamp_seconds|expired|source_up)|backup_(source_up|last_success_timestamp_seconds|snapshots|verification_success)|homelab_monitor_collector_success)[{ ]' <<<"$metrics"
echo
echo "== homelab-monitor --status --config monitoring-config.yaml (the example + demo certificate and backup)"
status=0
"$bin" --status --config "$demo/monitoring-config.yaml" || status=$?
echo
case $status in
  2) echo "demo: ok; --status exited 2 (findings: the example's drift and the certificate that expires in 5 days)" ;;
  0) echo "demo: ok; --status exited 0 (clean)" ;;
  *) die "--status exited $status (an error)" ;;
esac

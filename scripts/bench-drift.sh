#!/usr/bin/env bash
# The drift runner's own cost (README "Benchmarks"): N working directories of
# the test provider (tests/fixtures/terraform/hmtest-provider, two managed
# files each), planned by `homelab-monitor drift --once --force` at
# concurrency 4 with the real terraform; and the same directories with a
# no-op `binary:` (plan exits 0, show prints a recorded plan) to isolate the
# runner's overhead per directory from Terraform's time.
# Each measurement runs RUNS times (default 5); the medians are reported.
#   scripts/bench-drift.sh [N]     (needs scripts/install-terraform.sh first)
#   HOMELAB_MONITOR_BIN=path/to/homelab-monitor scripts/bench-drift.sh 16
# Default binary: target/release/homelab-monitor (cargo build --release), else
# target/debug (then say so: the numbers are not the release build's).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-16}
runs=${RUNS:-5}
root=$PWD
bin=${HOMELAB_MONITOR_BIN:-$root/target/release/homelab-monitor}
[ -x "$bin" ] || bin=$root/target/debug/homelab-monitor
[ -x "$bin" ] || { echo "no binary: cargo build --release, or set HOMELAB_MONITOR_BIN" >&2; exit 1; }
case "$bin" in */release/*) build=release ;; */debug/*) build=debug ;; *) build=custom ;; esac
median() { sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
timed() { # seconds of one run of "$@" (its exit code 0/1/2 is not the point here)
  local s; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; echo "$(date +%s.%N) - $s" | bc
}
py=$root/.cache/tools/hmtest-venv/bin/python3
[ -x "$py" ] || { echo "run scripts/install-terraform.sh first" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
plugin=$work/mirror/example.com/homelab/hmtest/1.0.0/linux_amd64
mkdir -p "$plugin"
printf '#!/bin/sh\nexec %s %s "$@"\n' "$py" "$root/tests/fixtures/terraform/hmtest-provider/provider.py" >"$plugin/terraform-provider-hmtest_v1.0.0"
chmod +x "$plugin/terraform-provider-hmtest_v1.0.0"
printf 'provider_installation {\n  filesystem_mirror {\n    path = "%s"\n    include = ["example.com/*/*"]\n  }\n}\n' "$work/mirror" >"$work/cli.tfrc"
export TF_CLI_CONFIG_FILE=$work/cli.tfrc CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1
dirs=()
for i in $(seq 1 "$n"); do
  d=$work/ws/d$i
  mkdir -p "$d"
  cat >"$d/main.tf" <<'HCL'
terraform {
  required_providers {
    hmtest = { source = "example.com/homelab/hmtest" }
  }
}
resource "hmtest_file" "a" {
  path    = "${path.module}/a.txt"
  content = "one"
}
resource "hmtest_file" "b" {
  path    = "${path.module}/b.txt"
  content = "two"
}
HCL
  (cd "$d" && terraform init -input=false >/dev/null && terraform apply -auto-approve -input=false >/dev/null)
  dirs+=("$d")
done
{
  echo "custom_monitors:"
  echo "  terraform_state:"
  echo "    drift_runner:"
  echo "      concurrency: 4"
  echo "      working_dirs:"
  for d in "${dirs[@]}"; do echo "        - $d"; done
} >"$work/real.yaml"
real=$(for _ in $(seq 1 "$runs"); do timed "$bin" --log.level warn drift --config "$work/real.yaml" --once --force; done | median)
# No-op Terraform: the runner's own work (lock, spawn, temp files, parse, rename, status).
cp "${dirs[0]}/drift.json" "$work/plan.json"
printf '#!/bin/sh\ncase "$1" in show) cat %s;; esac\nexit 0\n' "$work/plan.json" >"$work/noop"
chmod +x "$work/noop"
sed 's/concurrency: 4/concurrency: 1\n      binary: '"${work//\//\\/}"'\/noop/' "$work/real.yaml" >"$work/noop.yaml"
noop=$(for _ in $(seq 1 "$runs"); do timed "$bin" --log.level warn drift --config "$work/noop.yaml" --once --force; done | median)
# What the no-op children themselves cost (2 sh starts per directory), to take out of the overhead.
kids=$(for _ in $(seq 1 "$runs"); do timed sh -c "for d in \$(seq 1 $n); do '$work/noop' plan; '$work/noop' show >/dev/null; done"; done | median)
echo "directories: $n (terraform $(terraform version | head -1 | cut -d' ' -f2), provider hmtest), $build build ($bin), median of $runs runs"
echo "real terraform, concurrency 4: ${real}s total, $(echo "scale=0; $n * 3600 / $real" | bc) directories/hour"
echo "no-op binary, concurrency 1: ${noop}s total, $(echo "scale=1; $noop * 1000 / $n" | bc) ms per directory (runner overhead, the 2 no-op children included)"
echo "runner overhead without the no-op children: $(echo "scale=1; ($noop - $kids) * 1000 / $n" | bc) ms per directory (children alone: $(echo "scale=1; $kids * 1000 / $n" | bc) ms)"

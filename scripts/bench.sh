#!/usr/bin/env bash
# Terraform monitor benchmark: cold collection of one ~150 MB state (60,000
# instances) and of a fleet of 200 ~1 MB states, against the time to just read
# and JSON-validate the same bytes (fs::read + serde_json -> IgnoredAny).
# Each step runs in its own process, so each peak RSS is its own.
# Usage: scripts/bench.sh [OUT_DIR] [RUNS]   (default benches/out, 5; ~350 MB of disk)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benches/out}
runs=${2:-5}
cargo build --release --bench terraform_state -q
bin=$(ls -t target/release/deps/terraform_state-* | grep -v '\.d$' | head -1)
[ -f "$out/big.tfstate" ] || "$bin" gen "$out"
ls -l "$out/big.tfstate" | awk '{printf "big.tfstate: %.1f MB\n", $5/1e6}'
cat "$out/big.tfstate" > /dev/null   # warm the page cache for every contender alike
tmp=$(mktemp)
for i in $(seq "$runs"); do
  "$bin" validate "$out/big.tfstate" | sed 's/^/validate /' >> "$tmp"
  "$bin" collect "$out/big.tfstate" | grep '^cold' | sed 's/^/collect /' >> "$tmp"
done
cat "$tmp"
median() { grep "^$1 " "$tmp" | awk '{for(i=1;i<=NF;i++) if($i=="s,") print $(i-1)}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
peak() { grep "^$1 " "$tmp" | sed 's/.*peak RSS \([0-9.]*\) MiB.*/\1/' | sort -n | tail -1; }
v=$(median validate); c=$(median collect)
echo "median read+validate ${v} s (peak RSS $(peak validate) MiB); median cold collection ${c} s (peak RSS $(peak collect) MiB); ratio $(awk -v c="$c" -v v="$v" 'BEGIN{printf "%.2f", c/v}')x"
rm -f "$tmp"
echo "--- fleet: 200 states of ~1 MB"
cat "$out"/fleet/*/terraform.tfstate > /dev/null
for i in 1 2 3; do
  "$bin" validate "$out/fleet"
  "$bin" collect "$out/fleet"
done

#!/usr/bin/env bash
# Terraform monitor benchmark: cold collection of two ~150 MB states (60,000
# instances each) and of a fleet of 200 ~1 MB states, against the time to just
# read and JSON-validate the same bytes (fs::read + serde_json -> IgnoredAny)
# and to `cat` them to /dev/null (the I/O floor), in the same run.
# Shapes: big.tfstate (our generator: long plain strings, few escapes) and
# aws.tfstate (like real AWS states: JSON-encoded IAM policies, user_data
# scripts, \" \n \t \u003c escapes, non-ASCII, nested blocks, tags).
# Each step runs in its own process, so each peak RSS is its own.
# Usage: scripts/bench.sh [OUT_DIR] [RUNS]   (default benches/out, 5; ~650 MB of disk)
# BEFORE=PATH (a copy of an older build of this benchmark binary, e.g.
# target/release/deps/terraform_state-HASH saved before a change): its cold
# collection runs interleaved with the current one, and both are reported.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benches/out}
runs=${2:-5}
cargo build --release --bench terraform_state -q
bin=$(ls -t target/release/deps/terraform_state-* | grep -v '\.d$' | head -1)
[ -f "$out/big.tfstate" ] || "$bin" gen "$out"
[ -f "$out/aws.tfstate" ] || "$bin" gen-aws "$out"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for shape in big aws; do
  f="$out/$shape.tfstate"
  ls -l "$f" | awk -v s="$shape" '{printf "--- %s.tfstate: %.1f MB\n", s, $5/1e6}'
  cat "$f" > /dev/null   # warm the page cache for every contender alike
  tmp=$(mktemp)
  for i in $(seq "$runs"); do
    # Interleaved, so that the machine's load hits every contender alike.
    { TIMEFORMAT='cat %3R s,'; time cat "$f" > /dev/null; } 2>> "$tmp"
    "$bin" validate "$f" | sed 's/^/validate /' >> "$tmp"
    "$bin" collect "$f" | grep '^cold' | sed 's/^/collect /' >> "$tmp"
    if [ -n "${BEFORE:-}" ]; then
      "$BEFORE" collect "$f" | grep '^cold' | sed 's/^/before /' >> "$tmp"
    fi
  done
  cat "$tmp"
  secs() { grep "^$1 " "$tmp" | awk '{for(i=1;i<=NF;i++) if($i=="s,") print $(i-1)}' | median; }
  peak() { grep "^$1 " "$tmp" | sed 's/.*peak RSS \([0-9.]*\) MiB.*/\1/' | sort -n | tail -1; }
  k=$(secs cat); v=$(secs validate); c=$(secs collect)
  echo "$shape median of $runs: cat ${k} s | read+validate ${v} s (peak RSS $(peak validate) MiB) | cold collection ${c} s (peak RSS $(peak collect) MiB) | collection/validate $(awk -v c="$c" -v v="$v" 'BEGIN{printf "%.2f", c/v}')x | collection/cat $(awk -v c="$c" -v k="$k" 'BEGIN{printf "%.1f", (k>0)?c/k:0}')x"
  if [ -n "${BEFORE:-}" ]; then
    b=$(secs before)
    echo "$shape before (\$BEFORE): cold collection ${b} s (peak RSS $(peak before) MiB) | before/validate $(awk -v c="$b" -v v="$v" 'BEGIN{printf "%.2f", c/v}')x | after/before $(awk -v c="$c" -v b="$b" 'BEGIN{printf "%.2f", c/b}')x"
  fi
  rm -f "$tmp"
done
echo "--- fleet: 200 states of ~1 MB"
cat "$out"/fleet/*/terraform.tfstate > /dev/null
for i in 1 2 3; do
  "$bin" validate "$out/fleet"
  "$bin" collect "$out/fleet"
  if [ -n "${BEFORE:-}" ]; then "$BEFORE" collect "$out/fleet" | sed 's/^/before: /'; fi
done

#!/usr/bin/env bash
# Starter policies on the 60,000-instance aws.tfstate (scripts/bench.sh's
# escape-heavy shape): the plain collection without policies (the anchor),
# the policies evaluated whole-state (the library with its
# `# policy-scope: resource` lines removed) and per-resource (as shipped),
# interleaved, each in its own process under /usr/bin/time -v; medians.
# Usage: scripts/bench-policies.sh [OUT_DIR] [RUNS]   (default benches/out, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benches/out}
runs=${2:-3}
cargo build --release --bench terraform_state -q
bin=$(ls -t target/release/deps/terraform_state-* | grep -v '\.d$' | head -1)
[ -f "$out/aws.tfstate" ] || "$bin" gen-aws "$out"
f="$out/aws.tfstate"
whole=$(mktemp -d)
cp policies/*.rego "$whole/"
sed -i '/^# policy-scope: resource$/d' "$whole"/*.rego
big=$((1 << 40))
tmp=$(mktemp)
cat "$f" > /dev/null
for i in $(seq "$runs"); do
  for mode in none whole resource; do
    case $mode in
      none) args=(collect "$f") ;;
      whole) args=(collect-policies "$f" "$big" "$whole") ;;
      resource) args=(collect-policies "$f" "$big" "$PWD/policies") ;;
    esac
    line=$( { /usr/bin/time -v "$bin" "${args[@]}" | grep '^cold'; } 2> "$tmp.time")
    rss=$(awk '/Maximum resident/ {printf "%.1f", $NF/1024}' "$tmp.time")
    echo "$mode $line | time -v max RSS $rss MiB" | tee -a "$tmp"
  done
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for mode in none whole resource; do
  s=$(grep "^$mode " "$tmp" | sed 's/.*cold collection: \([0-9.]*\) s.*/\1/' | median)
  r=$(grep "^$mode " "$tmp" | sed 's/.*max RSS \([0-9.]*\) MiB/\1/' | median)
  echo "$mode median of $runs: ${s} s, peak RSS ${r} MiB"
done
rm -rf "$whole" "$tmp" "$tmp.time"

#!/usr/bin/env bash
# Run every fuzz target for a bounded time (default 60 s each) with cargo-fuzz
# (libFuzzer, nightly toolchain). Seeds live in fuzz/corpus/<target>/ and stay
# small: new inputs libFuzzer finds go to a scratch corpus, not the repository.
# A crash is saved under fuzz/artifacts/<target>/: turn it into a regression
# test beside the parser's unit tests, then fix it.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(terraform_state terraform_plan config certificates backups)
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  echo "== $t: ${secs}s"
  cargo +nightly fuzz run "$t" "$scratch/$t" "corpus/$t" -- -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 2>&1 \
    | grep -E '^(#[0-9]+ +DONE|Done|==|SUMMARY|.*ERROR|.*panicked)' || true
done

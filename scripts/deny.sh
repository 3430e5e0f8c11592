#!/usr/bin/env bash
# Dependency advisories and licenses with cargo-deny (installed if missing).
# With ../shared/rustsec-advisory-db (the build machines' offline snapshot of the
# RustSec database) the check runs offline against it; elsewhere cargo-deny
# fetches the database, and if that is impossible the advisory check is skipped
# with a message (licenses, bans and sources are still checked).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deny >/dev/null 2>&1 || cargo install cargo-deny --locked --target-dir target/cargo-tools
snapshot=../shared/rustsec-advisory-db
db=target/advisory-dbs/advisory-db-3157b0e258782691
if [ -d "$snapshot" ]; then
  if [ ! -d "$db/.git" ]; then
    rm -rf "$db"
    mkdir -p "$db"
    cp -r "$snapshot"/. "$db"/
    date=$(sed -n 's/.* of \([0-9-]*\)\..*/\1/p' "$snapshot/SNAPSHOT.txt" | head -1)
    (
      cd "$db"
      git init -q
      git add -A
      GIT_COMMITTER_DATE="${date:-2026-08-21}T00:00:00Z" GIT_AUTHOR_DATE="${date:-2026-08-21}T00:00:00Z" \
        git -c user.name=snapshot -c user.email=snapshot@localhost commit -qm snapshot
    )
  fi
  cargo fetch --locked -q  # cargo metadata runs offline below: every platform's crates must be here
  cargo deny --offline check
elif cargo deny check advisories 2>/dev/null; then
  cargo deny check licenses bans sources
else
  echo "note: the RustSec advisory database cannot be fetched here; checking licenses, bans and sources only"
  cargo deny --offline check licenses bans sources
fi

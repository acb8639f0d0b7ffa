#!/usr/bin/env bash
# Set up .venv for softmaxlab: create it, install torch ($TORCH_SPEC) first, then the package with
# its test extras, and Debian's dataset-fashion-mnist where we can. A second run skips what is done.
set -euo pipefail

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
USE_SYSTEM_TORCH=${USE_SYSTEM_TORCH:-0}
EXTRAS=${EXTRAS:-test}
STAMP="$VENV/.softmaxlab-installed"
say() { echo "setup: $*" >&2; }
is_root() { [ "$(id -u)" = 0 ]; }

want="torch=$TORCH_SPEC system=$USE_SYSTEM_TORCH extras=$EXTRAS pyproject=$(cksum < pyproject.toml)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/softmaxlab" ]; then
  say "$VENV is up to date"
else
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
      if command -v apt-get >/dev/null && is_root; then
        say "installing Debian's python3-venv"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
      else
        say "'$PYTHON -m venv' is not available: install it (Debian/Ubuntu: sudo apt-get install python3-venv)"
        exit 1
      fi
    fi
    flags=()
    [ "$USE_SYSTEM_TORCH" = 1 ] && flags+=(--system-site-packages)
    say "creating $VENV"
    "$PYTHON" -m venv "${flags[@]}" "$VENV"
  fi
  if [ "$USE_SYSTEM_TORCH" = 1 ]; then
    "$VENV/bin/python" -c 'import torch' 2>/dev/null || {
      say "USE_SYSTEM_TORCH=1 but the system Python has no torch"; exit 1; }
  elif ! "$VENV/bin/python" - "$TORCH_SPEC" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
spec = sys.argv[1]
# an exact pin that is already installed needs nothing more
name, _, want = spec.partition("==")
sys.exit(0 if want and version(name).split("+")[0] == want.split("+")[0] else 1)
PY
  then
    say "installing $TORCH_SPEC (installed first, so nothing pulls another torch build)"
    "$VENV/bin/pip" install -q --disable-pip-version-check "$TORCH_SPEC"
  fi
  say "installing softmaxlab[$EXTRAS]"
  "$VENV/bin/pip" install -q --disable-pip-version-check -e ".[$EXTRAS]"
  echo "$want" > "$STAMP"
fi

# The dataset: Debian's package where we can, else the program downloads it on first use.
if command -v apt-get >/dev/null && command -v dpkg >/dev/null && is_root; then
  if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
    say "installing Debian's dataset-fashion-mnist"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
  fi
fi

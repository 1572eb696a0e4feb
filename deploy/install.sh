#!/usr/bin/env bash
# Creates this checkout's Python environment (.venv in the checkout, ADMUSE_VENV to move it)
# from the committed lock files and installs admuse into it, editable. Each checkout has its
# own environment, so two clones on one machine never run each other's code.
#
# The versions come from deploy/lock/{cpu,gpu}.txt (hash-pinned, made by `make lock` from
# pyproject.toml's ranges): a fresh machine gets exactly the versions the tests passed with.
# uv installs them; its wheel cache (~/.cache/uv) is shared by every checkout and linked, not
# copied, so torch is downloaded once per machine. Exactly one ONNX Runtime is installed:
# onnxruntime-gpu (gpu.txt) where an NVIDIA GPU answers, else onnxruntime (cpu.txt).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ADMUSE_VENV:-$repo/.venv}"

py=""
for cand in python3.13 python3.12 python3.11 python3; do
  if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    py="$(command -v "$cand")"; break
  fi
done
[ -n "$py" ] || { echo "install.sh: Python 3.11 or newer is required (python3 --version)" >&2; exit 1; }

# uv itself: the one on PATH, else a private copy from PyPI (once per machine).
uv="$(command -v uv || true)"
if [ -z "$uv" ]; then
  tools="${ADMUSE_TOOLS_DIR:-$HOME/.cache/admuse/tools}"
  if [ ! -x "$tools/bin/uv" ]; then
    echo "install.sh: installing uv into $tools (once per machine)"
    "$py" -m venv "$tools"
    "$tools/bin/pip" install -q 'uv>=0.5,<1'
  fi
  uv="$tools/bin/uv"
fi

if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then variant=gpu; else variant=cpu; fi
lock="$repo/deploy/lock/$variant.txt"

if [ ! -x "$venv/bin/python" ]; then
  echo "install.sh: creating $venv with $py"
  "$uv" venv -q --python "$py" "$venv"
fi

stamp="$venv/.admuse-installed"
want="$(cat "$lock" "$repo/pyproject.toml" | sha256sum | cut -c1-16) $repo $variant"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "install.sh: installing the locked environment ($variant) into $venv"
  log="$(mktemp)"
  # sync removes whatever the lock does not list (an old ONNX Runtime variant included).
  if ! "$uv" pip sync -q --python "$venv/bin/python" "$lock" >"$log" 2>&1 \
    || ! "$uv" pip install -q --python "$venv/bin/python" --no-deps -e "$repo" >>"$log" 2>&1; then
    cat "$log" >&2; echo "install.sh: installing into $venv failed (output above)" >&2; exit 1
  fi
  rm -f "$log"
  echo "$want" >"$stamp"
fi

# The console's browser tests drive Debian's chromium through Playwright (never a browser
# download of Playwright's own): install it from the distribution when it is missing.
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "install.sh: installing Debian's chromium (browser tests of the console)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
    >/tmp/admuse-chromium.log 2>&1; then
    cat /tmp/admuse-chromium.log >&2; echo "install.sh: apt-get install chromium failed" >&2; exit 1
  fi
fi

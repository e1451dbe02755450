# distill: `make demo` and `make test` install into .venv on first use (see README.md).
PYTHON ?= python3
VENV ?= .venv
OUT ?= out
TEACHER ?= tiny
PROMPTS ?= toy
SIZE ?= tiny
ARGS ?=
DISTILL = $(VENV)/bin/distill

.PHONY: install demo traces filter student eval test bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml distill/install.py
	$(PYTHON) distill/install.py $(VENV)

demo: install
	$(DISTILL) demo --out $(OUT) $(ARGS)

traces: install
	$(DISTILL) traces --teacher $(TEACHER) --prompts $(PROMPTS) --out $(OUT) $(if $(SHARD),--shard $(SHARD)) $(ARGS)

filter: install
	$(DISTILL) filter --teacher $(TEACHER) --prompts $(PROMPTS) --out $(OUT) $(ARGS)

student: install
	$(DISTILL) student --size $(SIZE) --teacher $(TEACHER) --prompts $(PROMPTS) --out $(OUT) $(if $(NODES),--nodes $(NODES)) $(if $(GPUS),--gpus $(GPUS)) $(ARGS)

eval: install
	$(DISTILL) eval --size $(SIZE) --out $(OUT) $(if $(filter command line,$(origin TEACHER)),--teacher $(TEACHER)) $(ARGS)

test: install
	$(VENV)/bin/python -m pytest -q tests

bench: install
	$(VENV)/bin/python bench/run_all.py --out $(OUT)/bench

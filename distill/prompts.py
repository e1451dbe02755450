"""Prompt sets and benchmarks from datasets/*.yaml: a hub dataset, a local file, or the toy task.

    from distill.prompts import load_prompts
    for prompt in load_prompts("aime24"):                       # datasets/aime24.yaml, from the hub
        ...
    load_prompts("aime24", ["path=../shared/data/benchmarks/aime24.jsonl"])   # same set, offline file
    load_prompts("gsm8k-train", limit=100, shard=(0, 4))        # first 100 prompts of shard 0 of 4

`load_prompts` returns a `PromptStream`: iterating it reads the source lazily (hub sets are
streamed, local JSONL is read line by line), so a million-prompt pool never sits in memory.

Schema of a datasets/*.yaml file (every key is a `PromptSetConfig` field; unknown keys are
rejected with a did-you-mean):

    name: aime24                 # prefix of every prompt id; default: the file name
    # The source: exactly one of `hub`, `path`, `toy`. `path` wins over `hub`, so the same YAML
    # serves offline with `path=/local/copy.jsonl` on the command line.
    hub: HuggingFaceH4/aime_2024  # hub dataset id (streamed; needs network or the HF cache)
    subset: null                 # hub config name (`name=` of datasets.load_dataset)
    split: train
    data_files: []               # hub files to read instead of the declared configs
    revision: null               # pin a hub commit for reproducible benchmarks
    path: null                   # local .jsonl / .jsonl.gz / .json (array) / .parquet
    toy: null                    # {split: train, n: 2000, seed: 0}: distill.toy.task.toy_problems
    task: math                   # math | choice | code: how distill.verify checks answers
    columns:                     # where the fields live in a row (`a.b` reads row["a"]["b"])
      problem: problem           # text, or a chat-message list (its last user turn is the problem)
      answer: answer             # math: the gold answer; choice: the correct option's text, or its letter
      id: null                   # stable id column; null: a hash of the problem text
      distractors: []            # choice: the wrong options' columns (GPQA: Incorrect Answer 1..3)
      choices: null              # choice: one column holding every option ({A: text, ...}, {label, text}, [text, ...])
      tests: []                  # code: the columns the tests come from (see `reference_format`)
      starter_code: null         # code: starter code column, shown in the prompt
      keep: []                   # extra columns copied into Prompt.meta (level, subject, ...)
    reference_format: auto       # math: auto | gsm8k | text (see `normalize_reference`); code: lcb | check | tests
    skip_references: []          # drop rows whose reference is one of these (NuminaMath: proof)
    instruction: null            # appended to the problem after a blank line; null: the task default
    choice_seed: 0               # seed of the option shuffle for task: choice

Prompt ids are `<name>/<id column>` or `<name>/<16 hex of sha256(problem)>`: stable across
runs, machines and row order, so trace ids (and resume) survive a re-download.

References are normalised so that a string comparison with the integer works:
AIME '023' -> '23', AMC 27.0 -> '27', GSM8K '... #### 1,234' -> '1234'. Multiple choice: the
reference is the gold letter. With `distractors` the options are shuffled with a fixed
per-prompt seed; with `choices`, or with options already lettered in the problem text ("A) ...",
"(B) ...", "C. ..." lines; no choices or distractors column), the source's letters are kept and
options already in the text are not repeated. Code:
the reference is a tests dict in the shapes `distill.verify.code` runs:
- `lcb` (LiveCodeBench; columns.tests = [public, private] test-case columns): `{"cases": [{"input",
  "output"}, ...]}` for stdin problems, plus `"fn_name"` for functional (LeetCode) ones; the
  number of public cases and the starter code go to `Prompt.meta`.
- `check` (HumanEval; columns.tests = [check source, entry point]): `{"check": ..., "entry_point": ...}`.
- `tests` (columns.tests = [one column] that already holds a tests dict, or its JSON): as it is.

This module is the config and the sources (hub, local file, toy; streamed, sharded); turning a row
into a `Prompt` is distill/prompt_rows.py, and LiveCodeBench's test encodings are decoded in
distill/verify/code_data.py, beside the code verifier.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from distill.config import ConfigError, load_config, menu_path
# Row -> Prompt lives in prompt_rows; its public names are importable from here too.
from distill.prompt_rows import (ColumnError, Prompt, guess_column, lettered_options, make_prompt,  # noqa: F401
                                 normalize_reference)

log = logging.getLogger(__name__)

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
CHOICE_INSTRUCTION = "Please reason step by step, and put the letter of the correct option within \\boxed{}."
CODE_INSTRUCTION = (
    "Please reason step by step, then give your complete solution as one Python program "
    "in a ```python code block."
)
DEFAULT_INSTRUCTIONS = {"math": MATH_INSTRUCTION, "choice": CHOICE_INSTRUCTION, "code": CODE_INSTRUCTION}
DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".json", ".json.gz", ".parquet")


@dataclass(frozen=True)
class ToySource:
    """Arguments of `distill.toy.task.toy_problems`, the embedded procedural task."""

    split: str = "train"
    n: int = 1000
    seed: int = 0
    levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    """Numbers of operations to draw problems from (difficulty)."""

    def __post_init__(self) -> None:
        if self.split not in ("train", "test") or self.n < 1 or not self.levels:
            raise ConfigError(f"toy: need split 'train' or 'test', n >= 1 and at least one level; got "
                              f"split={self.split!r}, n={self.n}, levels={self.levels}")


@dataclass(frozen=True)
class Columns:
    """Which column of a row holds what."""

    problem: str = "problem"
    answer: str | None = "answer"
    """Math: the gold answer. Choice: the text of the correct option. None: no reference."""
    id: str | None = None
    """A column with a stable unique id; None hashes the problem text instead."""
    distractors: list[str] = field(default_factory=list)
    """Choice: the columns of the wrong options."""
    choices: str | None = None
    """Choice: a column holding all the options, lettered by the source: {"A": text, ...},
    {"label": [...], "text": [...]} or a list of texts (A, B, ... in order). Not shuffled; wins
    over `distractors`, so `columns.choices=...` reads a copy of a set declared with them."""
    tests: list[str] = field(default_factory=list)
    """Code: the columns that go into the reference."""
    starter_code: str | None = None
    """Code: a column of starter code shown with the problem (LiveCodeBench `starter_code`)."""
    keep: list[str] = field(default_factory=list)
    """Extra columns copied into `Prompt.meta`."""


@dataclass(frozen=True)
class PromptSetConfig:
    """A prompt set or benchmark: where the rows come from and how a row becomes a `Prompt`."""

    name: str = ""
    """Prefix of every prompt id; defaults to the YAML file name."""
    hub: str | None = None
    """Hugging Face dataset id, streamed."""
    subset: str | None = None
    """Hub config name (the `name` argument of `datasets.load_dataset`)."""
    split: str = "train"
    data_files: list[str] = field(default_factory=list)
    """Hub files to read instead of the declared configs (e.g. one version of LiveCodeBench)."""
    revision: str | None = None
    """Hub commit or tag; pin it for benchmarks."""
    path: str | None = None
    """Local .jsonl, .jsonl.gz, .json (one array) or .parquet. Wins over `hub`."""
    toy: ToySource | None = None
    """The embedded procedural task (distill.toy.task), e.g. {split: train, n: 2000, seed: 0}."""
    task: Literal["math", "choice", "code"] = "math"
    columns: Columns = field(default_factory=Columns)
    reference_format: Literal["auto", "gsm8k", "text", "lcb", "check", "tests"] = "auto"
    """Math: how the answer column is normalised (`normalize_reference`). Code: which test layout."""
    skip_references: list[str] = field(default_factory=list)
    """Rows whose normalised reference is one of these are skipped (NuminaMath's 'proof', 'notfound')."""
    instruction: str | None = None
    """Appended to the problem after a blank line. None: the task's default (DeepSeek's math advice)."""
    choice_seed: int = 0
    """Seed of the per-prompt option shuffle for `task: choice`."""

    def __post_init__(self) -> None:
        code_formats = ("lcb", "check", "tests")
        if self.task == "code" and self.reference_format not in code_formats:
            raise ConfigError(f"prompt set '{self.name}': task 'code' needs reference_format 'lcb' (LiveCodeBench "
                              "test cases), 'check' (HumanEval check source + entry point) or 'tests' (a column "
                              f"holding a distill.verify.code tests dict), got '{self.reference_format}'")
        if self.task != "code" and self.reference_format in code_formats:
            raise ConfigError(f"prompt set '{self.name}': reference_format '{self.reference_format}' is for task 'code'")
        if self.task == "code" and not self.columns.tests:
            raise ConfigError(f"prompt set '{self.name}': task 'code' needs columns.tests (the test columns)")

    @property
    def source(self) -> str:
        """'path', 'toy' or 'hub': which source is read (a `path` wins, so hub sets run offline)."""
        if self.path:
            return "path"
        if self.toy is not None and self.hub:
            raise ConfigError(f"prompt set '{self.name}': both `toy` and `hub` are set; keep one")
        if self.toy is not None:
            return "toy"
        if self.hub:
            return "hub"
        raise ConfigError(f"prompt set '{self.name}': no source. Set one of `hub` (a hub dataset id), "
                          "`path` (a local .jsonl/.json/.parquet) or `toy` ({split: train, n: 1000})")

    @property
    def instruction_text(self) -> str:
        return DEFAULT_INSTRUCTIONS[self.task] if self.instruction is None else self.instruction


def load_prompt_config(name_or_path: str | Path | PromptSetConfig,
                       overrides: list[str] | None = None) -> PromptSetConfig:
    """datasets/<name>.yaml (or a YAML path, or a config) plus `key=value` overrides."""
    if isinstance(name_or_path, PromptSetConfig):
        if not overrides:
            return name_or_path
        from distill.config import to_dict

        return load_config(PromptSetConfig, to_dict(name_or_path), overrides)
    path = menu_path("datasets", name_or_path)
    cfg = load_config(PromptSetConfig, path, overrides)
    if not cfg.name:
        cfg = dataclasses.replace(cfg, name=path.stem)
    return cfg


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """'1/4' -> (1, 4): shard indices run from 0 to N-1."""
    if shard is None or isinstance(shard, tuple):
        pair = shard
    else:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(shard))
        if not m:
            raise ConfigError(f"--shard '{shard}' is not i/N (e.g. 0/4 for the first of four machines)")
        pair = (int(m.group(1)), int(m.group(2)))
    if pair is not None and pair[1] < 1:
        raise ConfigError(f"--shard {pair[0]}/{pair[1]}: N is the number of shards and must be at least 1 "
                          "(e.g. --shard 0/4 for the first of four machines)")
    if pair is not None and not 0 <= pair[0] < pair[1]:
        raise ConfigError(f"--shard {pair[0]}/{pair[1]}: i must be in 0..N-1 (shards of {pair[1]} are 0/{pair[1]} .. "
                          f"{pair[1] - 1}/{pair[1]})")
    return pair


def shard_of(prompt_id: str, num_shards: int) -> int:
    """The shard a prompt belongs to: a hash of its id, so every machine agrees without talking."""
    return int.from_bytes(hashlib.sha256(prompt_id.encode()).digest()[:8], "big") % num_shards


class PromptStream(Iterable[Prompt]):
    """The prompts of a set, read lazily each time it is iterated.

    `total` is the number of prompts when it can be known cheaply (local files, toy, hub sets
    with split sizes), for progress bars and ETAs; with a shard it is an estimate.
    """

    def __init__(self, cfg: PromptSetConfig, where: str, limit: int | None = None,
                 shard: tuple[int, int] | None = None):
        self.cfg, self.where, self.limit, self.shard = cfg, where, limit, shard
        self._total: int | None | bool = False  # False: not computed yet

    @property
    def total(self) -> int | None:
        if self._total is False:
            total = _count_rows(self.cfg)
            if total is not None and self.shard is not None:
                total = -(-total // self.shard[1])
            if self.limit is not None:
                total = self.limit if total is None else min(total, self.limit)
            self._total = total
        return self._total  # type: ignore[return-value]

    def __iter__(self) -> Iterator[Prompt]:
        cfg, made = self.cfg, 0
        if self.limit is not None and self.limit <= 0:
            return
        for rowno, row in _rows(cfg):
            prompt = make_prompt(cfg, row, f"{self.where} row {rowno}")
            if prompt is None:
                continue
            if self.shard is not None and shard_of(prompt.id, self.shard[1]) != self.shard[0]:
                continue
            yield prompt
            made += 1
            if self.limit is not None and made >= self.limit:
                return


def load_prompts(name_or_path: str | Path | PromptSetConfig, overrides: list[str] | None = None,
                 limit: int | None = None, shard: str | tuple[int, int] | None = None) -> PromptStream:
    """The prompts of datasets/<name>.yaml (or a YAML path, or a `PromptSetConfig`), streamed.

    `overrides` are `key=value` strings on the YAML (`path=/data/aime24.jsonl`, `split=test`,
    `columns.problem=question`); `limit` keeps the first N prompts (after sharding); `shard`
    ('i/N' or (i, N)) keeps the prompts whose id hashes to shard i of N.
    """
    cfg = load_prompt_config(name_or_path, overrides)
    where = cfg.path if cfg.source == "path" else (cfg.hub if cfg.source == "hub" else f"toy {cfg.toy}")
    return PromptStream(cfg, str(where), limit=limit, shard=parse_shard(shard))


# ---------------------------------------------------------------------------------------------
# Reading rows


def _local_path(cfg: PromptSetConfig) -> Path:
    path = Path(cfg.path).expanduser()  # type: ignore[arg-type]
    if not path.exists():
        raise ConfigError(f"prompt set '{cfg.name}': file {path} does not exist (path={cfg.path}, "
                          f"relative to {Path.cwd()}). Point `path=` at a .jsonl, .jsonl.gz, .json or .parquet file")
    if path.is_dir():
        files = sorted(p.name for p in path.iterdir() if p.name.lower().endswith(DATA_SUFFIXES))[:5]
        listing = f" It holds {', '.join(files)}." if files else ""
        raise ConfigError(f"prompt set '{cfg.name}': path={cfg.path} is a folder; point `path=` at one .jsonl, "
                          f".jsonl.gz, .json or .parquet file.{listing}")
    return path


def _rows(cfg: PromptSetConfig) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, row) pairs, numbered from 1 (for JSONL: the line number)."""
    source = cfg.source
    if source == "toy":
        # Imported here: the toy package pulls in its own model code, and only toy sets need it.
        from distill.toy.task import toy_problems

        toy = cfg.toy
        assert toy is not None
        try:  # the generator raises while it runs: more distinct problems asked than the levels hold
            yield from enumerate(toy_problems(split=toy.split, n=toy.n, seed=toy.seed, levels=toy.levels), start=1)
        except ValueError as e:
            raise ConfigError(f"prompt set '{cfg.name}': toy: {e}") from None
    elif source == "path":
        yield from _read_local(_local_path(cfg))
    else:
        yield from enumerate(_hub_dataset(cfg), start=1)


def _read_local(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        # Our own line reader rather than datasets' JSON builder: that one reports a bad line as
        # "Expected object or value at position 13", without file or line, and costs ~5 s to start.
        # The hub path below does use datasets (streaming).
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    raise ConfigError(f"{path}:{lineno}: not valid JSON ({e}); fix or delete that line") from None
                if not isinstance(row, dict):
                    raise ConfigError(f"{path}:{lineno}: expected a JSON object per line, got {type(row).__name__}")
                yield lineno, row
    elif name.endswith((".json", ".json.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rb") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}: not valid JSON ({e})") from None
        if isinstance(data, dict):  # {"data": [...]}-style files hold the rows under one key
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else data
        if not isinstance(data, list):
            raise ConfigError(f"{path}: expected a JSON array of objects (or JSONL, one object per line)")
        for i, row in enumerate(data, start=1):
            if not isinstance(row, dict):
                raise ConfigError(f"{path}: row {i} is a {type(row).__name__}, expected an object")
            yield i, row
    elif name.endswith(".parquet"):
        # pyarrow directly (what datasets uses underneath): batch by batch, without datasets' ~5 s start-up.
        import pyarrow.parquet as pq

        rowno = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                rowno += 1
                yield rowno, row
    else:
        raise ConfigError(f"{path}: unknown file type; use .jsonl, .jsonl.gz, .json or .parquet")


@functools.cache
def hub_reachable() -> bool:
    """One quick TCP connect to the hub per process. `datasets` retries an unreachable hub for
    about 30 s per dataset; the filter stage opens six benchmarks, so without this check an
    offline machine waits minutes before each benchmark is reported missing. HF_HUB_OFFLINE=1
    skips the check (datasets then reads its local cache)."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=5).close()
        return True
    except OSError:
        return False


def _hub_dataset(cfg: PromptSetConfig) -> Iterable[dict[str, Any]]:
    import datasets

    if not hub_reachable():
        raise ConfigError(
            f"prompt set '{cfg.name}': the hub is unreachable, so hub dataset '{cfg.hub}' cannot be opened. "
            "Run on a local copy with `path=/path/to/file.jsonl`, or set HF_HUB_OFFLINE=1 to read the "
            "datasets cache"
        )
    try:
        return datasets.load_dataset(cfg.hub, cfg.subset, split=cfg.split, streaming=True,
                                     data_files=cfg.data_files or None, revision=cfg.revision)
    except Exception as e:  # offline, gated, missing: all end the same way for the user
        raise ConfigError(
            f"prompt set '{cfg.name}': cannot open hub dataset '{cfg.hub}' (subset={cfg.subset}, split={cfg.split}): "
            f"{type(e).__name__}: {e}. Offline? Download it once with network, or run on a local copy with "
            f"`path=/path/to/file.jsonl`"
        ) from e


def _count_rows(cfg: PromptSetConfig) -> int | None:
    try:
        source = cfg.source
        if source == "toy":
            return cfg.toy.n if cfg.toy else None
        if source == "path":
            path = _local_path(cfg)
            name = path.name.lower()
            if name.endswith((".jsonl", ".ndjson")):
                with open(path, "rb") as f:
                    return sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 20), b""))
            if name.endswith(".parquet"):
                import pyarrow.parquet as pq

                return pq.ParquetFile(path).metadata.num_rows
            return None
        splits = _hub_dataset(cfg).info.splits  # type: ignore[attr-defined]
        return splits[cfg.split].num_examples if splits and cfg.split in splits else None
    except Exception:  # noqa: BLE001 - a count is only for the progress bar
        return None

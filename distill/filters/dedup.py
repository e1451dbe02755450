"""Duplicates and benchmark contamination: `dedup` (exact + MinHash LSH) and `decontaminate` (word n-grams)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from distill.filters.base import TraceFilter
from distill.trace import Trace

log = logging.getLogger(__name__)

_WORD = re.compile(r"[a-z0-9]+|[^\x00-\x7f]")


def words(text: str) -> list[str]:
    """Lowercase alphanumeric words; LaTeX punctuation and spacing vanish (`$x^2$` -> x, 2)."""
    return _WORD.findall(text.lower())


def digest64(text: str) -> int:
    """A stable 64-bit hash (Python's `hash` of str changes with each process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def prompt_text(trace: Trace) -> str:
    """The problem as asked: the last user turn."""
    return next((m["content"] for m in reversed(trace.messages) if m.get("role") == "user"), "")


# ---------------------------------------------------------------------------------------------
# Dedup


@dataclass
class Dedup(TraceFilter):
    """Drop exact and near duplicates of an earlier trace, over prompts or completions.

    Stateful (remembers what it has seen), so not frozen, runs in the main process and belongs
    at the end of a recipe. `on='prompt'` drops every sample of a prompt whose text duplicates
    an earlier, different prompt id (samples of one prompt share a prompt and all pass);
    `on='completion'` drops a completion that repeats an earlier one.

    Exact: 64-bit hash of the lowercased, whitespace-collapsed text. Near: Jaccard similarity
    of word `shingle`-grams >= `threshold`, estimated with datasketch MinHash (`num_perm`
    permutations) and found with MinHashLSH.

    Memory is bounded by `max_index`: the LSH index is kept in two generations of at most
    `max_index / 2` records; when the newer one fills, the older is dropped. So near duplicates
    are caught within the last `max_index / 2` to `max_index` records (samples of one prompt
    sit together in raw.jsonl, so that is where they are), while exact duplicates are caught over
    the whole file (8-byte hashes in a set, ~70 bytes per record in CPython).
    bench/filter_bench.py measures the bytes per record.
    """

    name: ClassVar[str] = "dedup"
    stateful: ClassVar[bool] = True
    on: Literal["completion", "prompt"] = "completion"
    near: bool = True
    threshold: float = 0.85
    num_perm: int = 64
    shingle: int = 5
    max_index: int = 500_000

    _exact: dict[int, str] = field(default_factory=dict, init=False, repr=False)
    _gens: list[Any] = field(default_factory=list, init=False, repr=False)
    _gen_size: int = field(default=0, init=False, repr=False)
    _dropped_prompts: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _perm: Any = field(default=None, init=False, repr=False)

    def prepare(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ValueError(f"dedup: threshold must be in (0, 1], got {self.threshold}")
        if self.max_index < 2:
            raise ValueError(f"dedup: max_index must be >= 2, got {self.max_index}")

    def _text(self, trace: Trace) -> str:
        return prompt_text(trace) if self.on == "prompt" else f"{trace.reasoning}\n{trace.answer}"

    def precompute(self, trace: Trace) -> tuple[int, Any]:
        """The per-trace work, which depends on the trace alone: (exact hash, MinHash values or
        None). `apply_filters` runs it in its worker processes; `check` does it itself otherwise."""
        text = self._text(trace)
        h = digest64(" ".join(text.lower().split()))
        if not self.near:
            return h, None
        mh = self._minhash(text)
        return h, None if mh is None else mh.hashvalues

    def judge(self, trace: Trace) -> str | None:
        return self.judge_with(trace, None)

    def judge_with(self, trace: Trace, pre: tuple[int, Any] | None) -> str | None:
        if self.on == "prompt" and trace.prompt_id in self._dropped_prompts:
            return self._dropped_prompts[trace.prompt_id]  # the other samples of a dropped prompt
        reason = self._check(trace, pre if pre is not None else self.precompute(trace))
        if reason and self.on == "prompt":
            self._dropped_prompts[trace.prompt_id] = reason
        return reason

    def _check(self, trace: Trace, pre: tuple[int, Any]) -> str | None:
        owner = trace.prompt_id if self.on == "prompt" else trace.id
        h, hashvalues = pre
        first = self._exact.get(h)
        if first is not None:
            if first == owner:
                return None  # another sample of the same prompt
            return f"exact duplicate: same {self.on} as {first}"
        self._exact[h] = owner
        if not self.near or hashvalues is None:
            return None
        mh = self._from_hashvalues(hashvalues)
        for lsh in self._gens:
            hits = lsh.query(mh)
            if hits:
                return f"near duplicate: {self.on} >= {self.threshold:.0%} similar to {min(hits)}"
        self._insert(owner, mh)
        return None

    def _minhash(self, text: str) -> Any:
        from datasketch import MinHash

        ws = words(text)
        n = self.shingle
        shingles = {" ".join(ws[i:i + n]).encode() for i in range(max(1, len(ws) - n + 1))} if ws else set()
        if not shingles:
            return None
        if self._perm is None:
            # Generating permutations costs more than hashing a short text: do it once.
            self._perm = MinHash(num_perm=self.num_perm, seed=1, scheme="affine32").permutations
        mh = MinHash(num_perm=self.num_perm, seed=1, permutations=self._perm, scheme="affine32")
        mh.update_batch(list(shingles))
        return mh

    def _from_hashvalues(self, hashvalues: Any) -> Any:
        from datasketch import LeanMinHash

        # LeanMinHash keeps the seed and values only: all LSH needs, without the permutations.
        return LeanMinHash(seed=1, hashvalues=hashvalues, scheme="affine32")

    def _insert(self, owner: str, mh: Any) -> None:
        from datasketch import MinHashLSH

        if not self._gens or self._gen_size >= self.max_index // 2:
            # 8-byte band keys instead of datasketch's raw band bytes: a third of the memory.
            self._gens.append(MinHashLSH(threshold=self.threshold, num_perm=self.num_perm, hashfunc=_band_key))
            self._gen_size = 0
            if len(self._gens) > 2:
                self._gens.pop(0)
        # The key is the prompt id or the trace id; each is inserted once (exact hits return early).
        self._gens[-1].insert(owner, mh, check_duplication=False)
        self._gen_size += 1


def _band_key(band: bytes) -> bytes:
    return hashlib.blake2b(band, digest_size=8).digest()


# ---------------------------------------------------------------------------------------------
# Decontaminate

TEXT_FIELDS = ("problem", "question", "prompt", "Question")


def _informative(gram: list[str]) -> bool:
    """An n-gram with at least 3 words of 3+ characters: 'a 1 a 3 a 2 a 4' (GSM8K's die rolls) matches
    an AIME problem's list of numbers by chance, and carries no sign of copying."""
    return sum(1 for w in gram if len(w) >= 3) >= 3


def read_benchmark_file(path: str | Path, text_field: str | None = None) -> list[str]:
    """Problem texts from a JSONL file or a JSON array (fields tried: problem, question, prompt)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"decontaminate: benchmark file {path} does not exist")
    raw = path.read_text()
    if raw.lstrip().startswith("["):
        rows = list(enumerate(json.loads(raw), start=1))
    else:
        rows = [(i, json.loads(line)) for i, line in enumerate(raw.splitlines(), start=1) if line.strip()]
    texts = []
    for i, row in rows:
        fields = (text_field,) if text_field else TEXT_FIELDS
        value = next((row.get(f) for f in fields if isinstance(row, dict) and isinstance(row.get(f), str)), None)
        if value is None:
            keys = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise ValueError(f"decontaminate: {path}:{i}: no text field {' or '.join(fields)} (row has {keys}); "
                             "set decontaminate.field to the problem's field")
        texts.append(value)
    return texts


def load_benchmark(name: str) -> list[str]:
    """Problem texts of a benchmark named in datasets/<name>.yaml, through `distill.prompts`."""
    try:
        from distill.prompts import load_prompts
    except ImportError as e:
        raise ValueError(f"decontaminate: cannot load benchmark {name!r} by name ({e}); "
                         "list its file under `files:` instead") from e
    texts = []
    for p in load_prompts(name):
        # The problem without the set's instruction: a shared instruction would match every prompt.
        text = p.meta.get("problem") if isinstance(p.meta, dict) else None
        texts.append(text or next((m["content"] for m in reversed(p.messages) if m["role"] == "user"), ""))
    return texts


@dataclass
class Decontaminate(TraceFilter):
    """Drop prompts that share a word `n`-gram with a benchmark problem (default 8, as open-r1 and s1).

    Benchmarks come by name (`benchmarks: [math500, aime24]`, loaded with
    `distill.prompts.load_prompts`), from files (`files:` JSONL or JSON with a problem field), or
    as `texts`. Words are lowercased alphanumeric runs, so LaTeX spacing and punctuation do not
    hide a copy. A problem shorter than `n` words matches as a whole. N-grams of mostly one- and
    two-character tokens (number lists, variables) are not evidence and are skipped. N-grams found in
    several problems of one benchmark (more than `max_shared` of them and at least 2, for sets of
    20 problems or more) are boilerplate (AIME's "where m and n are relatively prime positive
    integers", an instruction) and ignored; a copied problem still shares its own n-grams.
    With `min_coverage` (default 0.5) a prompt is flagged when it holds half of one problem's
    n-grams: AIME 1983-2023 loses 13% of its problems to AIME 2024 boilerplate at `min_coverage=0`
    (any one 8-gram; one AIME 2024 problem is a third boilerplate, "\\frac{m\\sqrt n}{p} where m,
    n, p are positive integers ... not divisible by the square of any prime"), and none at 0.5,
    while copies, even two thirds of a problem inside a longer prompt, are caught
    (tests/test_filters_real.py).
    The index (8-byte hashes, ~100 per problem) is built once in `prepare()`.
    `missing='warn'` skips a benchmark that cannot be loaded (it is named in the log and the
    report); `'error'` stops.
    """

    name: ClassVar[str] = "decontaminate"
    benchmarks: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    n: int = 8
    field: str | None = None
    """Text field in `files` (default: the first of problem, question, prompt)."""
    min_coverage: float = 0.5
    """Flag when the prompt holds at least this share of one problem's n-grams (0: any one n-gram,
    as open-r1). A shared phrase ("where m and n are relatively prime positive integers") is not
    a copy; half a problem is."""
    max_shared: float = 0.01
    """Skip n-grams found in more than this share of one benchmark's problems (and in 2 or more)."""
    missing: Literal["error", "warn"] = "error"

    def __post_init__(self) -> None:
        self._grams: dict[int, int] | None = None  # n-gram hash -> problem number
        self._problems: list[tuple[str, int]] = []  # problem number -> (benchmark, its indexed n-grams)
        self._short: dict[int, dict[int, str]] = {}  # length -> {hash: benchmark} for problems under n words
        self.skipped: dict[str, str] = {}

    def prepare(self) -> None:
        if self._grams is not None:
            return
        if self.n < 2:
            raise ValueError(f"decontaminate: n must be >= 2, got {self.n}")
        sources: list[tuple[str, Iterable[str]]] = [("texts", self.texts)] if self.texts else []
        for path in self.files:
            sources.append((Path(path).stem, read_benchmark_file(path, self.field)))
        for bench in self.benchmarks:
            try:
                sources.append((bench, load_benchmark(bench)))
            except Exception as e:
                if self.missing == "error":
                    raise ValueError(f"decontaminate: benchmark {bench!r} could not be loaded: {e}. "
                                     "Give its file under `files:`, or set missing=warn to skip it.") from e
                self.skipped[bench] = str(e)[:200]
                log.warning("decontaminate: benchmark %s skipped (%s)", bench, e)
        self._grams = {}
        for bench, texts in sources:
            self._add(bench, list(texts))
        if not self._grams and not self._short:
            log.warning("decontaminate: no benchmark text to check against")

    def _add(self, bench: str, texts: list[str]) -> None:
        counts: dict[int, int] = {}
        per_text = []
        for text in texts:
            ws = words(text)
            if len(ws) < self.n:
                if len(ws) >= 3:
                    self._short.setdefault(len(ws), {})[digest64(" ".join(ws))] = bench
                continue
            grams = {digest64(" ".join(g)) for g in (ws[i:i + self.n] for i in range(len(ws) - self.n + 1))
                     if _informative(g)}
            if not grams:  # all formula: match the problem as a whole instead
                self._short.setdefault(len(ws), {})[digest64(" ".join(ws))] = bench
                continue
            per_text.append((ws, grams))
            for g in grams:
                counts[g] = counts.get(g, 0) + 1
        limit = max(1.0, self.max_shared * len(per_text)) if len(per_text) >= 20 else float("inf")
        for text_words, grams in per_text:
            own = [g for g in grams if counts[g] <= limit]
            if not own:  # nothing but shared phrases: match the problem as a whole
                self._short.setdefault(len(text_words), {})[digest64(" ".join(text_words))] = bench
            self._problems.append((bench, len(own)))
            for g in own:
                self._grams.setdefault(g, len(self._problems) - 1)  # type: ignore[union-attr]

    def match(self, text: str) -> str | None:
        """The benchmark `text` overlaps, or None."""
        self.prepare()
        ws = words(text)
        n = self.n
        hits: dict[int, list[int]] = {}
        for i in range(len(ws) - n + 1):
            problem = self._grams.get(digest64(" ".join(ws[i:i + n])))  # type: ignore[union-attr]
            if problem is not None:
                hits.setdefault(problem, []).append(i)
        for problem, starts in hits.items():
            bench, size = self._problems[problem]
            if len(starts) >= max(1, math.ceil(self.min_coverage * size)):
                i = starts[0]
                return (f"{bench}: shares {len(starts)} of the {size} {n}-grams of one of its problems, "
                        f"e.g. {' '.join(ws[i:i + n])!r}")
        for length, table in self._short.items():
            for i in range(len(ws) - length + 1):
                bench = table.get(digest64(" ".join(ws[i:i + length])))
                if bench is not None:
                    return f"{bench}: contains the whole problem {' '.join(ws[i:i + length])!r}"
        return None

    def judge(self, trace: Trace) -> str | None:
        hit = self.match(prompt_text(trace))
        return f"contaminated: {hit}" if hit else None

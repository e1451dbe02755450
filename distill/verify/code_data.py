"""Code test cases as published datasets store them -> the tests dict `distill.verify.code` runs.

    from distill.verify.code_data import lcb_reference
    tests, public = lcb_reference({"public_test_cases": row["public_test_cases"],
                                   "private_test_cases": row["private_test_cases"]}, row["metadata"], "row 3")

LiveCodeBench keeps its public tests as a JSON list and its private tests as
base64(zlib(pickle(JSON text))); both become `{"cases": [...]}` (stdin tests) or, for functional
(LeetCode) problems, `{"fn_name": ..., "cases": [...]}`. The pickle is read by an unpickler that
refuses every class, so a dataset row cannot make us import or call code. Used by
`distill.prompt_rows` when a prompt set has `task: code` and `reference_format: lcb`.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import zlib
from typing import Any

from distill.config import ConfigError


def lcb_reference(columns: dict[str, Any], metadata: Any, where: str) -> tuple[dict[str, Any], int]:
    """(tests dict, number of public cases) from LiveCodeBench's test columns ({name: value}, the
    public column first) and its `metadata` column (the function name of functional problems)."""
    cases: list[dict[str, Any]] = []
    public = 0
    for i, (col, value) in enumerate(columns.items()):
        decoded = decode_tests(value, f"{where}: column '{col}'")
        cases.extend(decoded)
        if i == 0:
            public = len(decoded)
    if not cases:
        raise ConfigError(f"{where}: no test cases in columns {list(columns)}")
    kinds = {c["testtype"] for c in cases}
    if len(kinds) > 1:
        raise ConfigError(f"{where}: mixes test types {sorted(kinds)}; expected all 'stdin' or all 'functional'")
    ref: dict[str, Any] = {"cases": [{"input": c["input"], "output": c["output"]} for c in cases]}
    if kinds == {"functional"}:
        metadata = metadata or {}
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata) if metadata.strip() else {}
            except json.JSONDecodeError:
                raise ConfigError(f"{where}: column 'metadata' is not JSON: {metadata!r:.80}") from None
        fn_name = metadata.get("func_name") if isinstance(metadata, dict) else None
        if not fn_name:
            raise ConfigError(f"{where}: functional tests need the function name in metadata.func_name")
        ref["fn_name"] = fn_name
    return ref, public


class _StringsOnly(pickle.Unpickler):
    """LiveCodeBench pickles a plain JSON string; refuse anything that would import or call code."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: test data must be plain strings")


def decode_tests(value: Any, where: str) -> list[dict[str, Any]]:
    """One column of LiveCodeBench test cases (a JSON list, its text, or base64(zlib(pickle(JSON text))))
    -> [{input, output, testtype}]; an empty cell is no cases."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        cases = value
    elif isinstance(value, str):
        try:
            cases = json.loads(value)
        except json.JSONDecodeError:
            try:
                blob = zlib.decompress(base64.b64decode(value.encode(), validate=True))
                inner = _StringsOnly(io.BytesIO(blob)).load()
                cases = json.loads(inner) if isinstance(inner, str) else inner
            except (ValueError, zlib.error, pickle.UnpicklingError, EOFError) as e:
                raise ConfigError(f"{where}: test cases are neither JSON nor LiveCodeBench's "
                                  f"base64/zlib/pickle encoding ({type(e).__name__}: {e})") from None
    else:
        raise ConfigError(f"{where}: test cases must be a JSON list or string, got {type(value).__name__}")
    if not isinstance(cases, list) or not all(isinstance(c, dict) and "input" in c and "output" in c for c in cases):
        raise ConfigError(f"{where}: test cases must be a list of {{input, output, testtype}} objects")
    return [{"input": c["input"], "output": c["output"], "testtype": c.get("testtype", "stdin")} for c in cases]

"""TeacherConfig: one teachers/*.yaml file, the teacher menu entry; TracesConfig: one stage-1 run.

    from distill.teachers import TeacherConfig, load_teacher_config
    cfg = load_teacher_config("r1", ["sampling.temperature=0.7", "base_url=http://gpu1:8000/v1"])
    cfg = TeacherConfig(name="mine", backend="hf", model="/path/to/model")   # a local model dir

    from distill.teachers.config import load_traces_config
    run = load_traces_config("r1", "openr1-math", ["teacher.sampling.temperature=0.7", "prompts.split=test",
                                                   "limit=10", "n=4"])   # n=4: a short form (ALIASES)

Overrides are dotted `key=value` paths into the dataclass being built; the only short forms are
the sampling keys of `ALIASES` for a traces run (`temperature=0.7` is `teacher.sampling.temperature=0.7`).

The API key never enters a config: the YAML names the environment variable that holds it
(`api_key_env`), and only the OpenAI-compatible backend reads it, when it opens a connection.
So dumping a config, or writing `record()` into every trace, cannot leak it.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from distill.config import ConfigError, load_config, load_yaml, menu_path, to_dict
from distill.prompts import PromptSetConfig, load_prompt_config
from distill.teachers.base import SamplingParams


@dataclass(frozen=True)
class TeacherConfig:
    """A teacher: which model, served how, sampled how."""

    name: str = ""
    """Label in traces and reports; defaults to the YAML file name (or the model)."""
    backend: Literal["openai", "hf", "vllm"] = "openai"
    """openai: any OpenAI-compatible server (DeepSeek API, vLLM, SGLang, transformers serve).
    vllm: the offline engine on local GPUs. hf: transformers generate, CPU or GPU."""
    model: str = ""
    """Server model name (openai), or a hub id / local dir / toy://name (hf, vllm)."""
    sampling: SamplingParams = field(default_factory=SamplingParams)
    system_prompt: str | None = None
    """DeepSeek advises none for R1: every instruction goes in the user turn."""
    prefill: str = ""
    """Text the assistant turn starts with, e.g. '<think>\\n' to force thinking (R1 usage advice).
    hf/vllm append it to the rendered prompt unless the chat template already ends with it;
    openai sends it as a final assistant message with `continue_final_message` (vLLM, SGLang)."""

    # --- openai backend
    base_url: list[str] = field(default_factory=list)
    """One or more OpenAI-compatible endpoints ending in /v1; requests go to the least busy one."""
    api_key_env: str | None = None
    """NAME of the environment variable holding the key (never the key itself); None: no auth."""
    concurrency: int = 64
    """Requests in flight at once, over all endpoints."""
    timeout: float = 1800.0
    """Seconds per request. R1 at 32k tokens can think for 15 minutes without streaming."""
    max_retries: int = 8
    """Retries per request for 429, 5xx, timeouts, dropped connections and empty content."""
    backoff: float = 1.0
    """First retry waits about this long (seconds), doubling each time, with jitter."""
    max_backoff: float = 60.0
    max_consecutive_failures: int = 100
    """Stop the run when this many requests in a row fail after all retries (the server is down)."""
    extra_body: dict[str, Any] = field(default_factory=dict)
    """Extra sampling arguments passed through as they are: request body fields (openai, e.g.
    top_k, chat_template_kwargs), vllm.SamplingParams fields (vllm), generate() kwargs (hf)."""

    # --- hf and vllm backends
    batch_size: int = 16
    """Sequences per generate call (prompts x samples)."""
    dtype: str = "auto"
    """'auto' (bf16 on GPU, fp32 on CPU), 'bfloat16', 'float16' or 'float32'."""
    device: str | None = None
    """hf: 'cpu', 'cuda', 'cuda:1'; None picks a GPU when there is one."""
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    """vllm: engine replicas, each on its own tensor_parallel_size GPUs in its own process (8 GPUs evaluate a 7B 8x at
    once). vLLM refuses LLM(data_parallel_size>1) in one process, so distill starts the replicas itself."""
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    """vllm: context of the engine (prompt + completion). None: the model's own (config.json max_position_embeddings).
    A prompt plus max_tokens beyond it gets max_tokens clamped, counted and logged."""
    trust_remote_code: bool = False
    filters: list[Any] | None = None
    """The filter recipe `make filter TEACHER=<this>` applies (names or {name: {options}} items, as in
    distill.filters.recipe); None: the default R1 recipe. Sampling ignores it."""

    def __post_init__(self) -> None:
        where = f"teacher '{self.name or self.model}'"
        if not self.model:
            raise ConfigError(f"{where}: `model` is empty; set the served model name or a model path")
        if self.backend == "openai" and not self.base_url:
            raise ConfigError(f"{where}: backend 'openai' needs `base_url` (e.g. https://api.deepseek.com or "
                              "http://localhost:8000/v1)")
        for key in ("concurrency", "batch_size", "tensor_parallel_size", "data_parallel_size",
                    "max_consecutive_failures"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{where}: `{key}` must be at least 1, got {getattr(self, key)}")
        if self.dtype not in ("auto", "bfloat16", "float16", "float32", "half", "float"):
            raise ConfigError(f"{where}: dtype {self.dtype!r} is not one of auto, bfloat16, float16, float32")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"{where}: gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.max_retries < 0 or self.timeout <= 0 or self.backoff < 0:
            raise ConfigError(f"{where}: max_retries >= 0, timeout > 0 and backoff >= 0 are required")
        s = self.sampling
        if s.n < 1 or s.max_tokens < 1 or s.temperature < 0 or not 0 < s.top_p <= 1:
            raise ConfigError(f"{where}: sampling needs n >= 1, max_tokens >= 1, temperature >= 0 and "
                              f"0 < top_p <= 1, got {s}")
        if self.api_key_env and not self.api_key_env.replace("_", "").isalnum():
            raise ConfigError(f"{where}: api_key_env must be the NAME of an environment variable "
                              f"(like DEEPSEEK_API_KEY), not a key; got a value of {len(self.api_key_env)} characters")

    @property
    def label(self) -> str:
        return self.name or Path(self.model.rstrip("/")).name or self.model

    def api_key(self) -> str | None:
        """The key from the environment, or a clear error naming the variable; None when the server takes no key."""
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            raise ConfigError(
                f"teacher '{self.label}' reads its API key from the environment variable {self.api_key_env}, "
                f"which is not set. Set it (export {self.api_key_env}=...) and rerun; or try the whole "
                "pipeline without a key on CPU with `make demo` (the embedded tiny teacher)."
            )
        return key

    def fingerprint_fields(self) -> dict[str, Any]:
        """What decides the output distribution: model, backend, sampling (not n), prompt shaping.

        Not the endpoints, the key, concurrency or timeouts: moving a run to other replicas, or
        raising `n` from 4 to 8, keeps the ids of the samples already made.
        """
        sampling = {k: v for k, v in dataclasses.asdict(self.sampling).items() if k != "n"}
        return {"model": self.model, "backend": self.backend, "sampling": sampling,
                "system_prompt": self.system_prompt, "prefill": self.prefill, "extra_body": self.extra_body}

    def fingerprint(self) -> str:
        """The teacher key in trace ids (`distill.trace.trace_id`)."""
        blob = json.dumps(self.fingerprint_fields(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def record(self) -> dict[str, Any]:
        """`Trace.teacher`: name, model, backend, sampling and fingerprint; never the key or endpoints."""
        fields = self.fingerprint_fields()
        out: dict[str, Any] = {"name": self.label, "model": self.model, "backend": self.backend,
                               "sampling": fields["sampling"], "fingerprint": self.fingerprint()}
        for key in ("system_prompt", "prefill", "extra_body"):
            if fields[key]:
                out[key] = fields[key]
        return out


REMOVED_KEYS = {
    "transport": "`transport` (the hand-written aiohttp client) was removed: requests go through the openai SDK only",
    "client_processes": "`client_processes` (requests sent from child processes) was removed: one process sends them",
}
REMOVED_WHY = ("R1-class teachers answer in minutes per request, so even 512 in flight is a few requests per second, "
               "and one process with the openai SDK keeps 256 in flight at a few seconds per request at the ideal "
               "rate (bench/sample_bench.py). Delete the key.")


def refuse_removed_keys(where: str, keys: list[str]) -> None:
    """A clear error for keys an older teacher YAML or command line may still name."""
    for key in keys:
        if key in REMOVED_KEYS:
            raise ConfigError(f"{where}: {REMOVED_KEYS[key]}. {REMOVED_WHY}")


def load_teacher_config(name_or_path: str | Path | TeacherConfig, overrides: list[str] | None = None) -> TeacherConfig:
    """teachers/<name>.yaml (or a YAML path, or a config) plus dotted `key=value` overrides into
    TeacherConfig (`sampling.temperature=0.7`, `concurrency=64`)."""
    refuse_removed_keys("override", [item.split("=", 1)[0].strip() for item in overrides or []])
    if isinstance(name_or_path, TeacherConfig):
        if not overrides:
            return name_or_path
        return load_config(TeacherConfig, to_dict(name_or_path), overrides)
    path = menu_path("teachers", name_or_path)
    refuse_removed_keys(str(path), list(load_yaml(path)))
    cfg = load_config(TeacherConfig, path, overrides)
    return cfg if cfg.name else dataclasses.replace(cfg, name=path.stem)


# ---------------------------------------------------------------------------------------------
# Stage 1's config: the teacher, the prompt set and the run keys, one dataclass


@dataclass(frozen=True)
class TracesConfig:
    """One `distill traces` run. Overrides are dotted paths into it: `teacher.sampling.temperature=0.7`,
    `teacher.concurrency=64`, `prompts.split=test`, `limit=10` (and the short forms in `ALIASES`)."""

    teacher: TeacherConfig
    """teachers/<name>.yaml (`--teacher`)."""
    prompts: PromptSetConfig
    """datasets/<name>.yaml (`--prompts`)."""
    limit: int | None = None
    """Sample only the first N prompts (of this shard)."""
    log_every: float = 30.0
    """Seconds between progress lines in the log (the bar, on a terminal, updates continuously)."""
    allow_mixed: bool = False
    """Allow appending to a raw.jsonl made with a different teacher config (model or sampling)."""

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit={self.limit}: use a positive number of prompts, or leave it unset for all")
        if self.log_every <= 0:
            raise ConfigError(f"log_every={self.log_every}: use a positive number of seconds")


# The short forms of the keys users tune most, so `n=4 temperature=0.7` keeps working. Each is
# just another name for one dotted path; every other key is written in full.
ALIASES: dict[str, str] = {key: f"teacher.sampling.{key}"
                           for key in ("n", "temperature", "top_p", "max_tokens", "seed")}


def load_traces_config(teacher: str | Path | TeacherConfig, prompts: str | Path | PromptSetConfig,
                       overrides: list[str] | None = None) -> TracesConfig:
    """teachers/<teacher>.yaml + datasets/<prompts>.yaml + dotted `key=value` overrides -> TracesConfig.

    `teacher.*` and `prompts.*` overrides go, prefix dropped, to the loader of that part (so the
    part's YAML and its overrides are checked together, and a mistake names the YAML file); the
    rest are this dataclass's own keys.
    """
    items = []
    for item in overrides or []:
        key, eq, value = item.strip().partition("=")
        items.append(f"{ALIASES.get(key.strip(), key.strip())}{eq}{value}")
    refuse_removed_keys("override", [item.partition("=")[0].removeprefix("teacher.") for item in items])
    parts: dict[str, list[str]] = {"teacher": [], "prompts": []}
    own = []
    fields = [f.name for f in dataclasses.fields(TracesConfig)]
    for item in items:
        key = item.partition("=")[0]
        head, dot, rest = item.partition(".")
        if dot and head in parts and "=" not in head:
            parts[head].append(rest)
        elif key.split(".")[0] in fields:
            own.append(item)
        else:
            raise ConfigError(f"override: unknown key '{key}'.{_did_you_mean(key)} Keys: "
                              f"{', '.join(fields[2:])}, teacher.<key> (teachers/*.yaml), prompts.<key> "
                              f"(datasets/*.yaml), and the short forms {', '.join(ALIASES)}")
    data = {"teacher": load_teacher_config(teacher, parts["teacher"]),
            "prompts": load_prompt_config(prompts, parts["prompts"])}
    return load_config(TracesConfig, data, own)


def _did_you_mean(key: str) -> str:
    """The closest short form or dotted key, matched on the whole key or on its last part
    (`concurrency` -> `teacher.concurrency`, `split` -> `prompts.split`)."""
    paths = [*ALIASES, *(f.name for f in dataclasses.fields(TracesConfig)),
             *(f"teacher.{f.name}" for f in dataclasses.fields(TeacherConfig)),
             *(f"prompts.{f.name}" for f in dataclasses.fields(PromptSetConfig))]
    # A key that is exactly a nested field's name was surely meant as that field (`split` is not `limit`).
    hint = [p for p in paths if p.split(".")[-1] == key] or difflib.get_close_matches(key, paths, n=1)
    if not hint:
        last = difflib.get_close_matches(key, [p.split(".")[-1] for p in paths], n=1)
        hint = [p for p in paths if last and p.split(".")[-1] == last[0]][:1]
    return f" Did you mean '{hint[0]}'?" if hint else ""


class Redactor(logging.Filter):
    """Hides the API key: `redact(text)` on a string, and as a logging filter on every record a handler
    writes (a library may log a request with its headers). A None key hides nothing."""

    def __init__(self, secret: str | None):
        super().__init__()
        self.secret = secret

    def __call__(self, text: str) -> str:
        return text.replace(self.secret, "***") if self.secret else text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secret:
            message = record.getMessage()
            if self.secret in message:
                record.msg, record.args = message.replace(self.secret, "***"), None
        return True

"""Rehearse a size preset on CPU: its own code path on a shrunk model of the base's architecture.

    make student SIZE=70b ARGS="rehearse=true tokenizer=../shared/data/tokenizers/llama3.1"
    make student SIZE=7b TEACHER=r1 PROMPTS=numinamath ARGS="rehearse=true"   # on your traces: their real lengths
    python -c "from distill.students.rehearse import run; run('8b-lora', 'out', processes=1, kill=False)"

A GPU preset's first real launch costs 8 to 64 GPUs; this runs everything that can go wrong before
then on 2 CPU cores in about a minute. What is real: the preset (every key, including its RoPE
override, max_length, batch and LR schedule), the base's architecture class and config.json
(vocabulary, RoPE and Llama 3's rope_scaling, GQA ratio, tied or untied head), the family's
tokenizer and the template, the trainer, the checkpoints, a kill -9 and the resume, the LoRA merge,
and final/ saved as the real run saves it. What is shrunk: 2 layers, hidden size 32, head_dim 16,
random weights, 3 optimizer steps. What cannot run on CPU (DeepSpeed ZeRO-3, bf16, flash-attention,
Liger, multi-node) is listed in the output as not rehearsed.

Where the base comes from: the hub's config.json and tokenizer when reachable (a few MB, never the
weights); otherwise students/bases/<name>.json (the config.json facts, with where each came from)
and `tokenizer=<folder>`.

Output, out/students/<size>-rehearsal/: base/ (the shrunk random base), traces/clean.jsonl (the
synthetic traces, when none are given), the run's own checkpoints/, final/, adapter/, run.json and
card.md, and rehearsal.json / rehearsal.md (the checks and the real run's numbers).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.config import REPO_ROOT, ConfigError, to_dict
from distill.paths import menu_name
from distill.students.config import StudentConfig, load_student_config
from distill.students.launch import estimate_hours
from distill.trace import Trace, trace_id, write_traces

log = logging.getLogger(__name__)

BASES_DIR = REPO_ROOT / "students" / "bases"
SHRUNK = {"num_hidden_layers": 2, "hidden_size": 32, "head_dim": 16}
MAX_KV_HEADS = 2  # GQA kept: query heads = the base's group size x these key/value heads
STEPS = 3
SYNTHETIC_TRACES = 24
OVERLONG_TRACES = 2  # made longer than max_length: the rehearsal must drop and count them


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Rehearsal:
    """What a rehearsal checked, and what the real run will do (rehearsal.json)."""

    size: str
    preset: str
    base: str
    out_dir: str
    processes: int
    checks: list[Check] = field(default_factory=list)
    not_rehearsed: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def clean(self) -> bool:
        return all(c.ok for c in self.checks)

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, bool(ok), detail))

    def text(self) -> str:
        s = self.summary
        lines = [f"rehearsal of {self.preset} ({self.base}) on CPU: {self.processes} process(es), {STEPS} steps, "
                 f"{self.wall_s:.0f} s: {'CLEAN' if self.clean else 'FAILED'}"]
        lines += [f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in self.checks]
        lines.append("not rehearsed on CPU: " + "; ".join(self.not_rehearsed))
        if s:
            lines.append(
                f"the real run ({self.size}, {s['devices']} GPUs) on {s['data']}: {s['kept']} of {s['read']} traces kept, "
                f"{s['too_long']} dropped by max_length {s['max_length']}; {s['tokens_per_trace']:.0f} tokens per trace "
                f"after the template (longest kept {s['longest_kept']}); {s['steps_per_epoch']} steps per epoch x "
                f"{s['epochs']:g} epochs = {s['optimizer_steps']} optimizer steps of global batch {s['global_batch']} "
                f"({s['batch']}); ~{s['wall_hours']:.3g} h on {s['devices']} GPUs = {s['gpu_hours']:.3g} GPU hours at "
                f"35% MFU ({s['params_b']:g}B parameters{', LoRA' if s['lora'] else ''}); per 100k traces like these: "
                f"{s['gpu_hours_per_100k']:.3g} GPU hours")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["clean"] = self.clean
        return out


# ---------------------------------------------------------------------------------------------
# The base: config.json facts and tokenizer, from the hub or from the repo


def base_facts(cfg: StudentConfig) -> tuple[dict[str, Any], str]:
    """(the base's config.json as a dict, where it came from): a local model dir, the hub, or students/bases/."""
    local = Path(cfg.base).expanduser()
    if (local / "config.json").exists():
        return json.loads((local / "config.json").read_text()), str(local / "config.json")
    hub_error = "HF_HUB_OFFLINE=1"
    if not _offline():
        try:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(cfg.base, revision=cfg.revision).to_dict()
            return config, f"the hub: {cfg.base}@{cfg.revision or 'main'} config.json"
        except OSError as e:  # unreachable, gated
            hub_error = str(e).splitlines()[0][:160]
    path = BASES_DIR / f"{cfg.base.rsplit('/', 1)[-1]}.json"
    if path.exists():
        doc = json.loads(path.read_text())
        if doc.get("base") == cfg.base:
            return doc["config"], f"{path.relative_to(REPO_ROOT)} (the hub is unreachable: {hub_error})"
    known = ", ".join(json.loads(p.read_text())["base"] for p in sorted(BASES_DIR.glob("*.json")))
    raise ConfigError(f"rehearse: cannot read {cfg.base}'s config.json: the hub is unreachable ({hub_error}) and "
                      f"students/bases/ has no file for it (it has {known}). Run where the hub is reachable once, or add "
                      f"students/bases/{path.name} with the base's config.json under 'config'")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def base_tokenizer(cfg: StudentConfig):
    """(tokenizer, where from): `tokenizer=<folder>`, a local base dir, or the hub."""
    from transformers import AutoTokenizer

    if cfg.tokenizer:
        return AutoTokenizer.from_pretrained(os.path.expanduser(cfg.tokenizer)), cfg.tokenizer
    try:
        return AutoTokenizer.from_pretrained(os.path.expanduser(cfg.base), revision=cfg.revision), cfg.base
    except OSError as e:
        family = "llama3.1" if cfg.template == "llama3" else "qwen2.5"
        raise ConfigError(f"rehearse: cannot load {cfg.base}'s tokenizer ({str(e).splitlines()[0][:160]}); where the hub "
                          f"is unreachable pass tokenizer=<folder with tokenizer.json and tokenizer_config.json>, e.g. "
                          f"ARGS=\"rehearse=true tokenizer=../shared/data/tokenizers/{family}\"") from None


def shrink(config: dict[str, Any]) -> dict[str, Any]:
    """The base's config.json with 2 layers, hidden 32, head_dim 16; vocabulary, RoPE, GQA ratio and tying kept."""
    small = {k: v for k, v in config.items() if k not in ("_name_or_path", "transformers_version", "head_dim")}
    heads = config["num_attention_heads"]
    kv = config.get("num_key_value_heads") or heads
    kv_small = min(kv, MAX_KV_HEADS)
    small.update(SHRUNK)
    small["num_key_value_heads"] = kv_small
    small["num_attention_heads"] = heads // kv * kv_small
    # The MLP keeps the base's width ratio (Qwen2.5-7B: 18944 / 3584 = 5.3x), rounded to a multiple of 8.
    # Hidden 32, not more: the embedding and head keep the real vocabulary (152,064 x 32 each for Qwen2.5-7B).
    small["intermediate_size"] = 8 * max(1, round(SHRUNK["hidden_size"] * config["intermediate_size"]
                                                  / config["hidden_size"] / 8))
    return small


def real_parameters(config: dict[str, Any]) -> float:
    """Parameters of the full-size model in billions, counted on the meta device (no memory, ~0.3 s for 70B)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))
    return sum(p.numel() for p in model.parameters()) / 1e9


def build_base(config: dict[str, Any], tokenizer, folder: Path, seed: int = 0) -> Any:
    """A random base of the real class with the shrunk config, saved (bf16, as the hub ships it) with the tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.bfloat16)
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


# ---------------------------------------------------------------------------------------------
# Data: synthetic traces (the toy task in R1's format) plus a few longer than max_length


def synthetic_traces(tokenizer, max_length: int, n: int = SYNTHETIC_TRACES,
                     overlong: int = OVERLONG_TRACES) -> list[Trace]:
    from distill.toy.task import INSTRUCTION, toy_problems

    problems = list(toy_problems("train", n=n + overlong, seed=19))
    # A padding line measured with the real tokenizer, repeated past max_length: those traces must be dropped, never cut.
    filler = "Let me check this step once more: every value stays between 0 and 9.\n"
    per_line = len(tokenizer.encode(filler, add_special_tokens=False))
    repeats = max_length // per_line + 16
    out = []
    for i, p in enumerate(problems):
        reasoning = p["reasoning"] if i < n else p["reasoning"] + "\n" + filler * repeats
        out.append(Trace(id=trace_id(p["id"], 0, "rehearsal"), prompt_id=p["id"],
                         messages=[{"role": "user", "content": f"{p['problem']} {INSTRUCTION}"}],
                         reasoning=reasoning, answer=p["solution"], finish_reason="stop",
                         teacher={"model": "rehearsal-synthetic", "backend": "none"}, reference=p["answer"]))
    return out


# ---------------------------------------------------------------------------------------------
# What the real run will do: steps, batch, LR schedule, GPU hours


def real_steps(kept: int, cfg: StudentConfig) -> tuple[int, int]:
    """(steps per epoch, optimizer steps) as transformers' Trainer counts them for `kept` traces on cfg.devices."""
    per_rank = math.ceil(kept / cfg.devices)  # the distributed sampler pads every rank to the same count
    batches = math.ceil(per_rank / cfg.per_device_batch_size)
    per_epoch = max(math.ceil(batches / cfg.gradient_accumulation_steps), 1)
    total = cfg.max_steps if cfg.max_steps > 0 else math.ceil(cfg.num_epochs * per_epoch)
    return per_epoch, total


def lr_curve(cfg: StudentConfig, steps: int) -> list[float]:
    """The learning rate of each of `steps` optimizer steps, as the Trainer schedules it."""
    import torch
    from transformers import TrainingArguments, get_scheduler

    args = TrainingArguments(output_dir="/tmp/unused", warmup_steps=cfg.warmup_ratio, report_to=[], use_cpu=True)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.learning_rate)
    kwargs = {"min_lr_rate": cfg.min_lr_rate} if cfg.lr_scheduler == "cosine_with_min_lr" else {}
    scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=args.get_warmup_steps(steps),
                              num_training_steps=steps, scheduler_specific_kwargs=kwargs)
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr()[0])  # the rate step k trains with: what the Trainer logs for it
        optimizer.step()
        scheduler.step()
    return out


def not_rehearsed(cfg: StudentConfig, processes: int) -> list[str]:
    out = []
    sharded = "" if processes < 2 or cfg.lora else "; FSDP2 fully_shard checked on its own instead"
    if cfg.parallelism.startswith("zero3"):
        out.append(f"DeepSpeed {cfg.parallelism} (needs CUDA; the trainer ran DDP replicas{sharded})")
    elif cfg.parallelism == "fsdp":
        out.append(f"FSDP2 through accelerate (one process on CPU; the trainer ran DDP{sharded})")
    if cfg.bf16:
        out.append("bf16 mixed precision (fp32 on CPU; LoRA merges still run in bf16)")
    if (cfg.attn_implementation or "").startswith("flash"):
        out.append(f"{cfg.attn_implementation} (sdpa on CPU)" + (" and padding-free batches" if cfg.padding_free else ""))
    if cfg.use_liger_kernel:
        out.append("Liger kernels (plain layers on CPU)")
    if cfg.nodes > 1:
        out.append(f"multi-node: {cfg.nodes} nodes (NODE_RANK/MASTER_ADDR rendezvous, the interconnect)")
    out.append(f"{cfg.devices} GPUs (rehearsed with {processes} CPU process{'es' if processes > 1 else ''})")
    out.append(f"full-size weights and memory at {cfg.max_length}-token sequences ({SHRUNK['num_hidden_layers']} layers x "
               f"{SHRUNK['hidden_size']} hidden, random weights)")
    return out


# ---------------------------------------------------------------------------------------------
# The sharded path: torch FSDP2 `fully_shard` on 2 CPU processes (gloo), against one unsharded process


def fsdp_step(base: str, data: str, template: str, out: str) -> None:
    """One SGD step of the shrunk base under FSDP2 (each decoder layer and the root sharded), one trace per rank;
    rank 0 then repeats the step unsharded and writes the largest weight difference to `out` (JSON).

    Started by `torch.distributed.run --nproc_per_node 2 -m distill.students.rehearse fsdp ...`. The Trainer cannot
    run FSDP on CPU (accelerate falls back to one process), so this checks the sharding of the real class directly.
    """
    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.students.data import tokenize_messages, trace_messages
    from distill.students.templates import get_format, prepare_tokenizer
    from distill.trace import read_traces

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    tokenizer = AutoTokenizer.from_pretrained(base)
    prepare_tokenizer(tokenizer, get_format(template))
    traces = [t for _, t in zip(range(world), read_traces(data))]
    rows = [tokenize_messages(tokenizer, trace_messages(t)) for t in traces]

    def loss_of(model, row):
        ids = torch.tensor([row["input_ids"]])
        labels = torch.where(torch.tensor([row["assistant_masks"]]) == 1, ids, -100)
        return model(input_ids=ids, labels=labels, use_cache=False).loss

    def load():
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)

    model = load()
    mesh = init_device_mesh("cpu", (world,))
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = loss_of(model, rows[rank])
    loss.backward()  # FSDP2 reduce-scatters the gradients: the mean over ranks
    optimizer.step()
    sharded = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        reference = load()
        ref_optimizer = torch.optim.SGD(reference.parameters(), lr=0.5)
        (sum(loss_of(reference, r) for r in rows) / world).backward()
        ref_optimizer.step()
        ref = reference.state_dict()
        diff = max((sharded[k].float() - ref[k].float()).abs().max().item() for k in sharded)
        moved = max((ref[k].float() - load().state_dict()[k].float()).abs().max().item() for k in ref)
        Path(out).write_text(json.dumps({"ranks": world, "tensors": len(sharded), "max_abs_diff": diff,
                                         "largest_update": moved, "sharded_modules": len(model.model.layers) + 1}))
    dist.barrier()
    dist.destroy_process_group()


def _fsdp_check(report: Rehearsal, cfg: StudentConfig, out_dir: Path, data: Path) -> None:
    result = out_dir / "fsdp2.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "distill.students.rehearse", "fsdp", str(out_dir / "base"), str(data), cfg.template, str(result)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0 or not result.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        report.check("FSDP2 fully_shard", False, f"2 gloo processes failed (exit {proc.returncode}): {' | '.join(tail)}")
        return
    r = json.loads(result.read_text())
    ok = r["max_abs_diff"] <= 1e-5 * max(r["largest_update"], 1e-3) + 1e-6 and r["largest_update"] > 0
    report.check("FSDP2 fully_shard", ok, f"{r['sharded_modules']} modules sharded over {r['ranks']} gloo processes, one "
                 f"SGD step: gathered weights within {r['max_abs_diff']:.1e} of the unsharded step (largest update "
                 f"{r['largest_update']:.1e}); the sharded path the {cfg.parallelism} launch takes on GPUs")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# run(): the entry point `distill student ... rehearse=true` calls


def run(size: str | Path, out: str | Path = "out", *, data: str | Path | None = None, overrides: list[str] | None = None,
        nodes: int | None = None, gpus: int | None = None, processes: int = 2, kill: bool = True) -> Rehearsal:
    """Rehearse students/<size>.yaml into <out>/students/<size>-rehearsal/; returns what it checked.

    `processes`: CPU processes for the training (2: DDP over gloo, as the real launch shards data).
    `kill`: train in a subprocess, kill -9 it after its first checkpoint, and resume.
    """
    started = time.time()
    user = [o for o in overrides or [] if o.split("=", 1)[0].strip() not in ("rehearse", "dry_run", "overwrite")]
    real, preset = load_student_config(size, user, nodes, gpus)  # the preset as the GPU run would read it
    name = menu_name(size)
    out_dir = Path(out) / "students" / f"{name}-rehearsal"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    report = Rehearsal(size=name, preset=str(preset), base=real.base, out_dir=str(out_dir), processes=processes)
    report.not_rehearsed = not_rehearsed(real, processes)

    # ---- the base: real config and tokenizer, shrunk model
    facts, facts_from = base_facts(real)
    tokenizer, tokenizer_from = base_tokenizer(real)
    small = shrink(facts)
    model = build_base(small, tokenizer, out_dir / "base", seed=real.seed)
    params_b = real_parameters(facts)
    arch = facts.get("architectures", ["?"])[0]
    kv, heads = facts.get("num_key_value_heads") or facts["num_attention_heads"], facts["num_attention_heads"]
    report.check("architecture", type(model).__name__ == arch,
                 f"{type(model).__name__} from {facts_from}; full size {params_b:.2f}B parameters (meta device), "
                 f"{facts['num_hidden_layers']} layers x {facts['hidden_size']}, {heads} heads / {kv} kv heads; rehearsed "
                 f"with {small['num_hidden_layers']} layers x {small['hidden_size']}, {small['num_attention_heads']} / "
                 f"{small['num_key_value_heads']} heads (GQA {heads // kv}:1 kept), vocabulary {facts['vocab_size']:,} rows, "
                 f"tied head: {bool(facts.get('tie_word_embeddings'))}")
    del model
    too_many = len(tokenizer) > facts["vocab_size"]
    report.check("tokenizer", not too_many,
                 f"{tokenizer_from}: {len(tokenizer):,} tokens for {facts['vocab_size']:,} embedding rows"
                 + (" (more tokens than rows: another family's tokenizer?)" if too_many else ""))

    # ---- data: the given traces, else synthetic ones with OVERLONG_TRACES past max_length
    if data is None:
        data = out_dir / "traces" / "clean.jsonl"
        data.parent.mkdir(parents=True)
        write_traces(data, synthetic_traces(tokenizer, real.max_length))
    data = Path(data)

    # ---- train: the preset's own keys; steps, batch and parallelism scaled to CPU
    # A checkpoint after every step when a kill -9 is rehearsed, else one at the end (each holds the optimizer state).
    rehearsal = [*user, "rehearse=true", f"max_steps={STEPS}", f"save_steps={1 if kill else STEPS}",
                 f"save_total_limit={STEPS}",
                 "logging_steps=1", "torch_threads=1", "report_to=none", "parallelism=ddp",
                 f"global_batch_size={real.per_device_batch_size * 2 * processes}"]  # 2 accumulation steps
    cfg, _ = load_student_config(size, rehearsal, 1, processes)
    killed = _train_killed(preset, data, out_dir, rehearsal, processes) if kill else None

    from distill.students.train import run as train_run

    try:
        train_run(str(preset), data, out_dir, nodes=1, gpus=processes, overrides=rehearsal)
    except Exception as e:  # noqa: BLE001 - what a rehearsal is for: the failure the GPU run would have met
        report.check("training", False, f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''} "
                     f"(raised in {_origin(e)})")
        log.exception("rehearsal training failed")
        report.wall_s = time.time() - started
        _write_report(report, out_dir)
        print(report.text())
        return report
    _check_outputs(report, real, cfg, facts, out_dir, data, killed)
    if processes > 1 and real.parallelism != "ddp" and not real.lora:
        _fsdp_check(report, real, out_dir, data)

    # ---- the real run's numbers
    record = json.loads((out_dir / "run.json").read_text())
    stats = record["data"]
    per_epoch, steps = real_steps(stats["kept"], real)
    tokens = stats["tokens"] * (real.num_epochs if real.max_steps <= 0 else 1)
    wall = estimate_hours(params_b, tokens, real.devices, lora=real.lora, checkpointing=real.gradient_checkpointing)
    per_trace = stats["tokens"] / max(stats["kept"], 1)
    per_100k = estimate_hours(params_b, per_trace * 1e5 * real.num_epochs, 1, lora=real.lora,
                              checkpointing=real.gradient_checkpointing)
    report.summary = {
        "data": str(data), "read": stats["read"], "kept": stats["kept"], "too_long": stats["too_long"],
        "max_length": real.max_length, "tokens_per_trace": per_trace, "longest_kept": stats["longest_kept"],
        "steps_per_epoch": per_epoch, "epochs": real.num_epochs, "optimizer_steps": steps,
        "global_batch": real.per_device_batch_size * real.gradient_accumulation_steps * real.devices,
        "batch": f"{real.per_device_batch_size} per device x {real.gradient_accumulation_steps} accumulation x "
                 f"{real.devices} GPUs",
        "devices": real.devices, "params_b": round(params_b, 2), "lora": real.lora, "wall_hours": wall,
        "gpu_hours": wall * real.devices, "gpu_hours_per_100k": per_100k, "lr_schedule": _schedule_shape(real, steps),
        "config": to_dict(real),
    }
    report.wall_s = time.time() - started
    _write_report(report, out_dir)
    print(report.text())
    return report


def _train_killed(preset: Path, data: Path, out_dir: Path, overrides: list[str], processes: int) -> dict[str, Any]:
    """Train in a subprocess and kill -9 all of it (launcher and ranks) once its first checkpoint is complete."""
    cmd = [sys.executable, "-m", "distill.students.train", "--size", str(preset), "--data", str(data),
           "--out-dir", str(out_dir), "--nodes", "1", "--gpus", str(processes), *overrides]
    marker = out_dir / "checkpoints" / "checkpoint-1" / "trainer_state.json"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 600
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    finished_first = proc.poll() is not None
    for pid in [*_descendants(proc.pid), proc.pid]:  # the ranks run in sessions of their own: kill each by id
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, err = proc.communicate()
    if finished_first and not marker.exists():
        raise RuntimeError(f"rehearsal training failed before its first checkpoint:\n{err.decode()[-3000:]}")
    done = sorted(p.name for p in (out_dir / "checkpoints").glob("checkpoint-*") if (p / "trainer_state.json").exists())
    return {"killed": not finished_first, "complete_checkpoints": done}


def _origin(e: BaseException) -> str:
    """file:line of the innermost frame of a traceback, for the one-line report."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    path = Path(tb.tb_frame.f_code.co_filename)
    short = "/".join(path.parts[path.parts.index("site-packages") + 1:]) if "site-packages" in path.parts else path.name
    return f"{short}:{tb.tb_lineno}"


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, deepest first (from /proc; Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out[::-1]


def _schedule_shape(cfg: StudentConfig, steps: int) -> str:
    lrs = lr_curve(cfg, steps)
    peak = max(range(steps), key=lambda i: lrs[i])
    return (f"{cfg.lr_scheduler}: warmup to {lrs[peak]:.3g} at step {peak + 1}, {lrs[steps // 2]:.3g} at step "
            f"{steps // 2 + 1}, {lrs[-1]:.3g} at step {steps}")


def _check_outputs(report: Rehearsal, real: StudentConfig, cfg: StudentConfig, facts: dict[str, Any], out_dir: Path,
                   data: Path, killed: dict[str, Any] | None) -> None:
    """Read back what the run wrote and check it against the preset."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.students.serving import THINK_TOKENS
    from distill.students.templates import get_format

    record = json.loads((out_dir / "run.json").read_text())
    results, stats = record["results"], record["data"]
    final = out_dir / "final"
    config = json.loads((final / "config.json").read_text())

    # Context: the preset's RoPE override (or the base's), in rope_parameters and in the legacy keys.
    from transformers import AutoConfig

    rope = dict(AutoConfig.for_model(**facts).rope_parameters)
    want_theta = float(real.rope_theta or rope["rope_theta"])
    want_mpe = real.max_position_embeddings or facts["max_position_embeddings"]
    saved = config["rope_parameters"]
    legacy = config.get("rope_scaling") or {}
    ok = (config.get("rope_theta") == saved["rope_theta"] == want_theta and config["max_position_embeddings"] == want_mpe
          and saved.get("rope_type", "default") == rope.get("rope_type", "default")
          and legacy.get("rope_type", "default") == rope.get("rope_type", "default")
          and legacy.get("factor") == rope.get("factor"))
    report.check("context", ok, f"max_position_embeddings {config['max_position_embeddings']}, rope_theta "
                 f"{config.get('rope_theta'):g} ({'the preset override' if real.rope_theta else 'the base'}), rope_scaling "
                 f"{json.dumps(config.get('rope_scaling'))}; legacy top-level keys beside rope_parameters, as serving "
                 f"stacks read them")

    # max_length: long traces dropped and counted, none cut.
    planted = OVERLONG_TRACES if data == out_dir / "traces" / "clean.jsonl" else None
    ok = stats["longest_kept"] <= real.max_length and (planted is None or stats["too_long"] == planted)
    report.check("max_length", ok, f"{stats['too_long']} of {stats['read']} traces longer than {real.max_length} tokens "
                 f"dropped and counted (longest {stats['longest_dropped']:,}); longest kept {stats['longest_kept']}")

    # LR schedule: the logged learning rate at every step against the schedule computed independently.
    state = json.loads((out_dir / "checkpoints" / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    logged = [h["learning_rate"] for h in state["log_history"] if "learning_rate" in h]
    expected = lr_curve(cfg, STEPS)
    ok = len(logged) == STEPS and all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12) for a, b in zip(logged, expected))
    report.check("LR schedule", ok, f"{cfg.lr_scheduler}, logged {[f'{x:.3g}' for x in logged]} = expected "
                 f"{[f'{x:.3g}' for x in expected]}")

    # Checkpoints, kill -9, resume.
    if killed is not None:
        ok = killed["killed"] and results.get("resumed_from") in killed["complete_checkpoints"] \
            and results["optimizer_steps"] == STEPS
        report.check("kill -9 + resume", ok, f"killed after {', '.join(killed['complete_checkpoints'])} "
                     f"({'all processes' if killed['killed'] else 'NOT killed: it finished first'}); resumed from "
                     f"{results.get('resumed_from')} to step {results['optimizer_steps']}")
    else:
        report.check("checkpoints", results["optimizer_steps"] == STEPS,
                     f"{STEPS} steps, checkpoint-{STEPS} complete (kill -9 not rehearsed: kill=False)")

    # Parallelism: every rank trained, and the replicas agree.
    if report.processes > 1:
        ranks = results.get("replica_sha256") or []
        report.check("DDP", results["processes"] == report.processes and len(set(ranks)) == 1 and len(ranks) > 1,
                     f"{results['processes']} processes over gloo; replicas identical after training "
                     f"(sha256 {ranks[0][:12] if ranks else '-'})")

    # LoRA: adapter saved, final/ merged into a plain model.
    merged = AutoModelForCausalLM.from_pretrained(final)
    keys = list(merged.state_dict())
    if real.lora:
        adapter = out_dir / "adapter" / "adapter_config.json"
        ok = adapter.exists() and not any("lora_" in k for k in keys) and real.merge_lora
        report.check("LoRA merge", ok, f"adapter/ (r {real.lora_r}, {len(real.lora_target_modules)} target modules) and "
                     f"final/ merged: {len(keys)} plain tensors, dtype {config.get('dtype') or config.get('torch_dtype')}")

    # final/: loads as the real class; serving tokenizer; single-token <think>; eos = end of turn.
    tok = AutoTokenizer.from_pretrained(final)
    fmt = get_format(real.template)
    think = [len(tok.encode(t, add_special_tokens=False)) for t in THINK_TOKENS]
    prompt = tok.apply_chat_template([{"role": "user", "content": "Compute 2+3."}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    with torch.no_grad():
        logits = merged(**prompt).logits
    ok = (type(merged).__name__ == config["architectures"][0] == facts["architectures"][0] and think == [1, 1]
          and tok.eos_token == fmt.end_of_turn and tok.chat_template == fmt.serve
          and (final / "chat_template_train.jinja").exists() and logits.shape[-1] == facts["vocab_size"]
          and bool(torch.isfinite(logits).all()))
    report.check("final/", ok, f"loads as {type(merged).__name__} and runs the serving template; <think> </think> "
                 f"{think} token(s); eos {tok.eos_token}; use_cache {config.get('use_cache')}")
    card = (out_dir / "card.md").read_text() if (out_dir / "card.md").exists() else ""
    report.check("card.md", real.base in card and (final / "README.md").exists(), "written, and final/README.md")


def _write_report(report: Rehearsal, out_dir: Path) -> None:
    (out_dir / "rehearsal.json").write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    (out_dir / "rehearsal.md").write_text("```\n" + report.text() + "\n```\n")
    # The model in final/ is a rehearsal: random weights, 2 layers. Say so where a reader of the card looks.
    banner = (f"> **Rehearsal, not a student**: {report.base} shrunk to 2 layers with random weights, trained "
              f"{STEPS} steps on CPU to check the preset's code path (rehearsal.md). Do not serve it.\n\n")
    for card in (out_dir / "card.md", out_dir / "final" / "README.md"):
        if card.exists():
            card.write_text(banner + card.read_text())


if __name__ == "__main__":  # python -m distill.students.rehearse fsdp <base> <data> <template> <out.json>, under torchrun
    if len(sys.argv) != 6 or sys.argv[1] != "fsdp":
        sys.exit("usage: python -m torch.distributed.run --nproc_per_node 2 -m distill.students.rehearse fsdp "
                 "<base dir> <clean.jsonl> <template> <out.json>  (rehearsals: make student ARGS=\"rehearse=true\")")
    fsdp_step(*sys.argv[2:])

"""The per-GPU memory estimate the dry run prints for the 32B/70B presets, and context parallelism.

The estimate is computed from the base's config.json facts (layers, hidden size, heads, vocabulary),
the sharding over the launch's GPUs, LoRA or full fine-tuning and the activations at max_length;
pure arithmetic, no model is built.
"""

from __future__ import annotations

import dataclasses

import pytest

from distill.config import ConfigError
from distill.students.config import KNOWN_BASES, load_student_config
from distill.students.launch import (ARCHITECTURES, GIB, Architecture, architecture, estimate_memory, launch_command,
                                     memory_report)
from distill.students.train import run

LLAMA_70B = "meta-llama/Llama-3.3-70B-Instruct"


def test_parameter_counts_from_the_config_facts_match_the_published_sizes():
    for base, arch in ARCHITECTURES.items():
        assert arch.parameters() / 1e9 == pytest.approx(KNOWN_BASES[base].params_b, rel=0.01), base
        assert arch.vocab == KNOWN_BASES[base].vocab_rows


def test_the_70b_preset_by_hand():
    """students/70b.yaml: full fine-tuning, ZeRO-3 over 8 x 8 GPUs, 32768 tokens, checkpointing, Liger, TRL's
    chunked LM head. Llama-3.3-70B's config.json: 80 layers, hidden 8192, MLP 28672, 64 heads, 8 KV heads
    (head_dim 128, so k and v are 1024 wide), vocabulary 128256, untied embeddings, no biases."""
    cfg, _ = load_student_config("70b")
    h, kv, i, vocab, layers, tokens = 8192, 1024, 28672, 128256, 80, 32768
    layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h  # q, o; k, v; gate, up, down; two norms
    params = layers * layer + 2 * vocab * h + h  # + embedding, LM head, final norm
    assert params == 70_553_706_496  # the published Llama-3.3-70B size

    states = 16 * params / 64  # bf16 weights + grads, fp32 master + Adam m, v; sharded over 64 GPUs
    gathered = 3 * 2 * layer  # running + prefetched layer, and its full gradient, in bf16
    checkpoints = layers * tokens * h * 2  # each layer's bf16 input
    one_layer = tokens * 2 * (6 * h + 2 * kv + 3 * i)  # recomputed: norms, q, k, v, attention, o; gate, up, product
    in_flight = tokens * 2 * (2 * i + h)  # gradients of gate and up, and of the hidden state
    head = 2 * vocab * h + 4 * vocab * h + 4096 * 32768 * 4 + tokens * h * 2  # gathered head, fp32 grad, tile, hidden
    assert one_layer + in_flight > head
    expected = (states + gathered + checkpoints + one_layer + in_flight) / GIB + 3.0  # + CUDA/NCCL overhead
    assert expected == pytest.approx(76.6, abs=0.05)

    est = estimate_memory(cfg, architecture(cfg.base))
    assert est.total_gib == pytest.approx(expected, rel=1e-9)
    assert est.fits and not est.comfortable  # under 80 GiB, with less than 10% to spare


def test_the_estimate_grows_with_max_length_and_shrinks_with_more_gpus():
    cfg, _ = load_student_config("70b")
    arch = architecture(cfg.base)
    totals = [estimate_memory(dataclasses.replace(cfg, max_length=n), arch).total_gib
              for n in (4096, 8192, 16384, 32768, 65536)]
    assert totals == sorted(totals) and len(set(totals)) == len(totals)
    by_nodes = [estimate_memory(dataclasses.replace(cfg, nodes=n), arch).total_gib for n in (2, 4, 8, 16)]
    assert by_nodes == sorted(by_nodes, reverse=True) and len(set(by_nodes)) == 4
    # DDP holds whole replicas: more GPUs change nothing per GPU.
    ddp = [estimate_memory(dataclasses.replace(cfg, parallelism="ddp", nodes=n), arch).total_gib for n in (1, 8)]
    assert ddp[0] == ddp[1]


def test_lora_offload_context_parallelism_and_the_unfused_head_move_the_estimate_the_right_way():
    cfg, _ = load_student_config("32b", nodes=1)
    arch = architecture(cfg.base)
    full = estimate_memory(cfg, arch)
    assert estimate_memory(dataclasses.replace(cfg, lora=True), arch).total_gib < full.total_gib
    offload = estimate_memory(dataclasses.replace(cfg, parallelism="zero3_offload"), arch)
    assert offload.terms["model states"][0] == 0.0
    cp = estimate_memory(dataclasses.replace(cfg, parallelism="fsdp", context_parallel=2), arch)
    assert cp.terms["checkpointed activations"][0] == pytest.approx(full.terms["checkpointed activations"][0] / 2)
    # The model's own loss on full logits: 32768 x 152064 entries at 10 B each (bf16 logits, fp32 copy, fp32 grad).
    at_32k = dataclasses.replace(cfg, max_length=32768)
    unfused = estimate_memory(dataclasses.replace(at_32k, fused_lm_head=False, token_metrics=False), arch)
    assert unfused.terms["backward peak"][0] == pytest.approx(32768 * 152064 * 10 / GIB)
    assert unfused.total_gib > estimate_memory(at_32k, arch).total_gib + 30
    no_liger = estimate_memory(dataclasses.replace(cfg, use_liger_kernel=False), arch)
    assert no_liger.terms["backward peak"][0] > full.terms["backward peak"][0]


def test_a_local_base_is_estimated_from_its_own_config_json(tiny_qwen2):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_qwen2)
    arch = architecture(str(tiny_qwen2))
    assert arch == Architecture.from_config(config.to_dict())
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    assert arch.parameters() == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size", ["32b", "32b-lora", "70b", "70b-lora"])
def test_the_dry_run_states_the_memory_per_gpu(size, tmp_path, capsys):
    cfg, _ = load_student_config(size)
    est = estimate_memory(cfg, architecture(cfg.base))
    assert run(size, tmp_path / "clean.jsonl", tmp_path / "out", overrides=["dry_run=true"]) is None
    printed = capsys.readouterr().out
    assert f"memory per GPU: ~{est.total_gib:.1f} GiB of 80" in printed
    assert f"max_length {cfg.max_length}, zero3 over {cfg.devices} GPUs" in printed
    for term in ("model states", "checkpointed activations", "backward peak", "TRL's chunked LM head"):
        assert term in printed


def test_over_budget_the_dry_run_offers_context_parallelism_and_a_lower_max_length(tmp_path, capsys):
    """70b on 4 nodes: the ZeRO-3 states double to 33 GiB per GPU and 32k sequences no longer fit."""
    assert run("70b", tmp_path / "clean.jsonl", tmp_path / "out", nodes=4, overrides=["dry_run=true"]) is None
    printed = capsys.readouterr().out
    assert "DOES NOT FIT" in printed
    offer = 'ARGS="parallelism=fsdp context_parallel=2 attn_implementation=sdpa"'
    assert offer in printed and 'ARGS="max_length=' in printed
    # Taking the offer: FSDP2 + accelerate's ParallelismConfig flags, the global batch kept, and it fits.
    overrides = ["parallelism=fsdp", "context_parallel=2", "attn_implementation=sdpa"]
    cfg, _ = load_student_config("70b", overrides, nodes=4)
    assert (cfg.data_parallel, cfg.gradient_accumulation_steps, cfg.global_batch_size) == (16, 4, 64)
    assert estimate_memory(cfg, architecture(cfg.base)).comfortable
    cmd = launch_command(cfg, size="70b", data="d.jsonl", out_dir="o", machine_rank=0, main_process_ip="10.0.0.1")
    joined = " ".join(cmd)
    assert "students/launch/fsdp.yaml" in joined
    assert ("--use_parallelism_config --parallelism_config_dp_shard_size 16 --parallelism_config_cp_size 2"
            in joined)
    # accelerate's own launcher takes the command and hands the processes a 16 x 2 FSDP2 mesh over 32 GPUs.
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.parallelism_config import ParallelismConfig
    from accelerate.utils.launch import prepare_multi_gpu_env

    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(cmd[3:]))
    env = prepare_multi_gpu_env(args)
    assert (env["FSDP_VERSION"], env["FSDP_AUTO_WRAP_POLICY"]) == ("2", "TRANSFORMER_BASED_WRAP")
    assert env["ACCELERATE_USE_PARALLELISM_CONFIG"] == "true"
    sizes = {k: int(env[f"PARALLELISM_CONFIG_{k.upper()}"]) for k in ("dp_shard_size", "cp_size")}
    assert ParallelismConfig(**sizes).total_size == args.num_processes == 32
    assert run("70b", tmp_path / "clean.jsonl", tmp_path / "out", nodes=4,
               overrides=[*overrides, "dry_run=true"]) is None
    printed = capsys.readouterr().out
    assert "4 accumulation x 32 devices / context_parallel 2 = 64" in printed and "DOES NOT FIT" not in printed


def test_context_parallelism_needs_fsdp_sdpa_and_a_divisor_of_the_node():
    with pytest.raises(ConfigError) as e:
        load_student_config("70b", ["context_parallel=3"])
    message = str(e.value)
    assert "needs parallelism: fsdp" in message and "needs attn_implementation: sdpa" in message
    assert "must divide gpus_per_node = 8" in message


def test_presets_without_known_facts_say_so_and_the_toy_base_prints_nothing():
    cfg, _ = load_student_config("70b")
    assert memory_report(dataclasses.replace(cfg, base="someone/unknown-model"))[0].startswith(
        "memory per GPU: not estimated")
    tiny, _ = load_student_config("tiny")
    assert memory_report(tiny) == []

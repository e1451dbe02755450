"""Teacher backends and the teacher menu: hf on a tiny Qwen2, openai against a real
`transformers serve`, vllm's config mapping (its engine only with CUDA), every teachers/*.yaml."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from teacher_fixtures import write_prompt_set

from distill.config import ConfigError, load_config
from distill.teachers import Completion, SamplingParams, TeacherConfig, load_teacher, load_teacher_config
from distill.teachers.render import render_chat
from distill.teachers.sample import run
from distill.teachers.vllm_backend import completion_from_vllm, vllm_engine_kwargs, vllm_sampling_kwargs
from distill.trace import read_traces

REPO = Path(__file__).resolve().parents[1]
CHATS = [
    [{"role": "user", "content": "Compute 3 + 4."}],
    [{"role": "user", "content": "A much longer question, so that the batch needs left padding: what is 7 - 5 + 3?"}],
    [{"role": "user", "content": "Hi"}],
]


# ---------------------------------------------------------------------------------------------
# The menu and the config


def test_every_teacher_yaml_loads():
    paths = sorted((REPO / "teachers").rglob("*.yaml"))
    assert {"r1", "qwq", "r1-distill-qwen-32b", "tiny"} <= {p.stem for p in paths}
    for path in paths:
        load_config(TeacherConfig, path)
    r1 = load_teacher_config("r1")
    s = r1.sampling
    assert (s.temperature, s.top_p, s.max_tokens) == (0.6, 0.95, 32768)
    assert r1.system_prompt is None and r1.api_key_env == "DEEPSEEK_API_KEY" and r1.backend == "openai"
    assert load_teacher_config("tiny").model == "toy://teacher" and load_teacher_config("tiny").backend == "hf"
    assert load_teacher_config("qwq").backend == "vllm"
    assert load_teacher_config("r1-distill-qwen-32b").prefill == "<think>\n"


def test_fingerprint_covers_the_distribution_not_the_plumbing():
    base = TeacherConfig(name="a", model="m", base_url=["http://x/v1"], api_key_env="K")
    same = [
        TeacherConfig(name="b", model="m", base_url=["http://y/v1", "http://z/v1"], api_key_env="OTHER",
                      concurrency=3, timeout=5, max_retries=0),
        TeacherConfig(name="a", model="m", base_url=["http://x/v1"], sampling=SamplingParams(n=8)),
    ]
    other = [
        TeacherConfig(name="a", model="m2", base_url=["http://x/v1"]),
        TeacherConfig(name="a", model="m", base_url=["http://x/v1"], sampling=SamplingParams(temperature=0.7)),
        TeacherConfig(name="a", model="m", base_url=["http://x/v1"], sampling=SamplingParams(max_tokens=100)),
        TeacherConfig(name="a", model="m", base_url=["http://x/v1"], prefill="<think>\n"),
        TeacherConfig(name="a", model="m", backend="hf"),
    ]
    assert all(c.fingerprint() == base.fingerprint() for c in same)
    assert len({c.fingerprint() for c in other} | {base.fingerprint()}) == len(other) + 1
    record = base.record()
    assert record["model"] == "m" and record["backend"] == "openai" and record["sampling"]["temperature"] == 0.6
    assert "n" not in record["sampling"] and "base_url" not in record and "K" not in str(record)


def test_config_errors_say_what_to_do():
    with pytest.raises(ConfigError, match="needs `base_url`"):
        TeacherConfig(model="m")
    with pytest.raises(ConfigError, match="NAME of an environment variable"):
        TeacherConfig(model="m", base_url=["http://x/v1"], api_key_env="sk-abc-123")
    with pytest.raises(ConfigError, match="top_p"):
        load_teacher_config("r1", ["sampling.top_p=0"])
    with pytest.raises(ConfigError, match="No teachers entry 'qwk'.*Did you mean 'qwq'"):
        load_teacher_config("qwk")


def test_traces_overrides_are_dotted_paths_and_the_aliases_name_the_same_path(tmp_path):
    from distill.teachers.config import ALIASES, load_traces_config

    prompt_set = write_prompt_set(tmp_path, ["Q."])
    cfg = load_traces_config("r1", prompt_set, ["teacher.sampling.temperature=0.7", "teacher.concurrency=8",
                                                "prompts.split=test", "limit=10"])
    assert cfg.teacher.sampling.temperature == 0.7 and cfg.teacher.concurrency == 8
    assert cfg.prompts.split == "test" and cfg.limit == 10
    assert cfg.teacher.name == "r1" and cfg.prompts.name == "set"  # names default to the YAML file names
    # Each short form is the same config as its dotted path, nothing more.
    assert ALIASES == {k: f"teacher.sampling.{k}" for k in ("n", "temperature", "top_p", "max_tokens", "seed")}
    for alias, path in ALIASES.items():
        value = "0.5" if alias in ("temperature", "top_p") else "3"
        assert load_traces_config("r1", prompt_set, [f"{alias}={value}"]) == \
            load_traces_config("r1", prompt_set, [f"{path}={value}"])
    # The teacher's own loader takes dotted paths into TeacherConfig: no bare sampling keys there.
    assert load_teacher_config("r1", ["sampling.temperature=0.3"]).sampling.temperature == 0.3
    with pytest.raises(ConfigError, match="unknown key 'temperature' for TeacherConfig.*'sampling.temperature'"):
        load_teacher_config("r1", ["temperature=0.3"])


def test_traces_unknown_keys_say_what_was_meant(tmp_path):
    from distill.teachers.config import load_traces_config

    prompt_set = write_prompt_set(tmp_path, ["Q."])
    for key, meant in [("concurrency", "teacher.concurrency"), ("split", "prompts.split"),
                       ("temprature", "temperature"), ("limt", "limit")]:
        with pytest.raises(ConfigError, match=rf"unknown key '{key}'\. Did you mean '{meant}'\?"):
            load_traces_config("r1", prompt_set, [f"{key}=1"])
    with pytest.raises(ConfigError, match=r"unknown key 'concurency' for TeacherConfig\. Did you mean 'concurrency'"):
        load_traces_config("r1", prompt_set, ["teacher.concurency=1"])
    with pytest.raises(ConfigError, match=r"`transport` .* was removed"):
        load_traces_config("r1", prompt_set, ["teacher.transport=aiohttp"])


def test_a_dotted_override_reaches_the_backends_sampling_params(tmp_path, monkeypatch):
    """The whole way: command-line key -> TracesConfig -> the SamplingParams the backend's generate gets."""
    import distill.teachers

    engine = FlakyEngine()
    seen = []
    monkeypatch.setattr(engine, "generate", lambda prompts, params: seen.append(params) or
                        [[Completion(reasoning="r", answer="a", finish_reason="stop")] * params.n for _ in prompts])
    monkeypatch.setattr(distill.teachers, "load_teacher", lambda cfg: engine)
    prompt_set = write_prompt_set(tmp_path, ["Q0.", "Q1."])
    teacher = tmp_path / "local.yaml"
    teacher.write_text("backend: vllm\nmodel: some/model\nsampling: {temperature: 0.6, max_tokens: 64}\n")
    run(teacher, prompt_set, tmp_path / "a", overrides=["teacher.sampling.temperature=0.25", "max_tokens=9"])
    run(teacher, prompt_set, tmp_path / "b", overrides=["temperature=0.75", "teacher.sampling.n=2"])
    assert [(p.temperature, p.max_tokens, p.n) for p in seen] == [(0.25, 9, 1), (0.75, 64, 2)]


def test_removed_request_keys_say_they_were_removed_and_why(tmp_path):
    """`transport` and `client_processes` served >1,000 requests/s of short completions; an old YAML
    or command line naming them gets told, not a bare 'unknown key'."""
    old = tmp_path / "old.yaml"
    old.write_text("backend: openai\nmodel: m\nbase_url: [http://x/v1]\ntransport: aiohttp\n")
    with pytest.raises(ConfigError, match=r"old.yaml: `transport` .* was removed.*minutes per request.*Delete the key"):
        load_teacher_config(old)
    with pytest.raises(ConfigError, match=r"`client_processes` .* was removed.*bench/sample_bench.py"):
        load_teacher_config("local-server", ["client_processes=2"])
    with pytest.raises(ConfigError, match=r"`transport` .* was removed"):
        run("local-server", write_prompt_set(tmp_path, ["Q."]), tmp_path / "out", overrides=["transport=aiohttp"])


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"environment variable DEEPSEEK_API_KEY, which is not set.*make demo"):
        load_teacher("r1")
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test")
    assert load_teacher("r1").name == "r1"  # builds without contacting the API


def test_openai_request_maps_sampling_prefill_and_system_prompt(monkeypatch):
    from distill.teachers.openai_backend import OpenAITeacher

    cfg = TeacherConfig(model="m", base_url=["http://x/v1"], system_prompt="Be brief.", prefill="<think>\n",
                        extra_body={"top_k": 20}, sampling=SamplingParams(stop=["END"]))
    body = OpenAITeacher(cfg).request_body(CHATS[0], SamplingParams(temperature=0.3, top_p=0.9, max_tokens=77,
                                                                    seed=5, stop=["END"]))
    assert body == {"model": "m", "messages": [{"role": "system", "content": "Be brief."}, *CHATS[0],
                                                {"role": "assistant", "content": "<think>\n"}],
                    "temperature": 0.3, "top_p": 0.9, "max_tokens": 77, "seed": 5, "stop": ["END"],
                    "top_k": 20, "continue_final_message": True, "add_generation_prompt": False}


# ---------------------------------------------------------------------------------------------
# hf backend on a tiny model


@pytest.fixture(scope="module")
def varied_qwen2(tiny_qwen2, tmp_path_factory):
    """tiny_qwen2 with larger random weights: its default init answers every prompt with newlines,
    which would make the batch-vs-single comparison below pass even with broken padding."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tmp_path_factory.mktemp("varied-qwen2")
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_qwen2).save_pretrained(path)
    return path


def test_hf_batched_greedy_equals_one_at_a_time(varied_qwen2):
    """Left padding must not change what a prompt generates: batch == single, token for token."""
    teacher = load_teacher(TeacherConfig(name="tiny", backend="hf", model=str(varied_qwen2), batch_size=8))
    greedy = SamplingParams(temperature=0.0, max_tokens=12)
    batched = teacher.generate(CHATS, greedy)
    single = [teacher.generate([chat], greedy)[0] for chat in CHATS]
    assert [[(c.reasoning, c.answer, c.completion_tokens) for c in cs] for cs in batched] == \
        [[(c.reasoning, c.answer, c.completion_tokens) for c in cs] for cs in single]
    tok = teacher.tokenizer
    for chat, (c,) in zip(CHATS, batched):
        assert c.prompt_tokens == len(tok(render_chat(tok, chat), add_special_tokens=False)["input_ids"])
        assert c.finish_reason in ("stop", "length") and 1 <= c.completion_tokens <= 12
    assert len({c[0].reasoning + c[0].answer for c in batched}) == 3


def test_hf_batches_prompts_of_similar_length_and_answers_in_input_order(varied_qwen2, monkeypatch):
    teacher = load_teacher(TeacherConfig(name="tiny", backend="hf", model=str(varied_qwen2), batch_size=2))
    chats = [[{"role": "user", "content": "x" * n}] for n in (40, 2, 30, 1, 20, 3)]
    seen: list[list[int]] = []
    real = teacher._generate_batch

    def spy(prompts, params):
        seen.append([len(p[0]["content"]) for p in prompts])
        return real(prompts, params)

    monkeypatch.setattr(teacher, "_generate_batch", spy)
    greedy = SamplingParams(temperature=0.0, max_tokens=6)
    out = teacher.generate(chats, greedy)
    assert seen == [[1, 2], [3, 20], [30, 40]]
    single = [real([chat], greedy)[0] for chat in chats]
    assert [[c.reasoning + c.answer for c in cs] for cs in out] == [[c.reasoning + c.answer for c in cs] for cs in single]


def test_hf_samples_n_per_prompt_with_a_seed(varied_qwen2):
    teacher = load_teacher(TeacherConfig(name="tiny", backend="hf", model=str(varied_qwen2), batch_size=4))
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=10, n=3, seed=11)
    out = teacher.generate(CHATS, params)
    assert [len(cs) for cs in out] == [3, 3, 3]
    texts = [c.reasoning + c.answer for c in out[0]]
    assert len(set(texts)) > 1  # sampled, not three copies
    again = teacher.generate(CHATS, params)
    assert [[c.reasoning for c in cs] for cs in again] == [[c.reasoning for c in cs] for cs in out]  # seeded


def test_render_chat_adds_the_prefill_once():
    class Template:
        def __init__(self, ending):
            self.ending = ending

        def apply_chat_template(self, msgs, tokenize, add_generation_prompt):
            return "".join(f"<{m['role']}>{m['content']}" for m in msgs) + "<assistant>" + self.ending

    assert render_chat(Template(""), CHATS[0], "Sys", "<think>\n") == \
        "<system>Sys<user>Compute 3 + 4.<assistant><think>\n"
    # R1-Distill / QwQ templates open the thinking themselves: no second <think>.
    assert render_chat(Template("<think>\n"), CHATS[0], None, "<think>\n").count("<think>") == 1


def test_toy_model_uri_is_resolved_lazily(tiny_qwen2, monkeypatch):
    calls = []
    fake = types.ModuleType("distill.toy.models")
    fake.resolve_model = lambda uri: calls.append(uri) or tiny_qwen2
    monkeypatch.setitem(sys.modules, "distill.toy.models", fake)
    teacher = load_teacher(TeacherConfig(name="tiny", backend="hf", model="toy://teacher"))
    assert calls == ["toy://teacher"] and teacher.model.config.num_hidden_layers == 2


def test_run_with_the_hf_backend_resumes_in_batches(tiny_qwen2, tmp_path):
    prompt_set = write_prompt_set(tmp_path, [f"Compute {i} + 1." for i in range(5)])
    teacher = tmp_path / "hf.yaml"
    teacher.write_text(f"backend: hf\nmodel: {tiny_qwen2}\nbatch_size: 4\nsampling: {{n: 2, max_tokens: 8}}\n")
    first = run(teacher, prompt_set, tmp_path / "out")
    assert first["written"] == 10 and first["failed"] == 0
    traces = list(read_traces(tmp_path / "out" / "raw.jsonl"))
    assert {(t.prompt_id, t.sample_index) for t in traces} == {(f"set/q{i}", k) for i in range(5) for k in range(2)}
    assert all(t.teacher["backend"] == "hf" and t.completion_tokens for t in traces)
    again = run(teacher, prompt_set, tmp_path / "out", overrides=["n=3"])
    assert again["already_done"] == 10 and again["written"] == 5


class FlakyEngine:
    """A local engine that runs out of memory on batches over 2 prompts, chokes on one prompt and
    returns one completion too few for another."""

    name = "flaky"
    batching = "batches"

    @staticmethod
    def sequences_per_call(cfg):
        return cfg.batch_size

    def __init__(self):
        self.calls = []

    def generate(self, prompts, params):
        self.calls.append(len(prompts))
        if len(prompts) > 2:
            raise MemoryError("CUDA out of memory (simulated)")
        if any("BAD" in p[-1]["content"] for p in prompts):
            raise ValueError("prompt too long for the context")
        return [[Completion(reasoning="r", answer=f"a{k}", finish_reason="stop", completion_tokens=3)
                 for k in range(params.n - ("SHORT" in p[-1]["content"]))] for p in prompts]


def test_a_failing_batch_is_halved_down_to_the_bad_prompt(tmp_path, monkeypatch):
    import distill.teachers

    engine = FlakyEngine()
    monkeypatch.setattr(distill.teachers, "load_teacher", lambda cfg: engine)
    prompt_set = write_prompt_set(tmp_path, ["Q0.", "Q1.", "Q2 BAD.", "Q3.", "Q4 SHORT.", "Q5.", "Q6.", "Q7."])
    teacher = tmp_path / "local.yaml"
    teacher.write_text("backend: vllm\nmodel: some/model\nbatch_size: 16\nsampling: {n: 2}\n")
    summary = run(teacher, prompt_set, tmp_path / "out")
    assert summary["written"] == 13 and summary["failed"] == 3
    failures = [json.loads(line) for line in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()]
    assert sorted((f["prompt_id"], f["sample_index"], f["kind"]) for f in failures) == [
        ("set/q2", 0, "ValueError"), ("set/q2", 1, "ValueError"), ("set/q4", 1, "missing")]
    assert "prompt too long" in failures[0]["reason"]
    assert engine.calls[0] == 8 and max(engine.calls[1:]) <= 4


# ---------------------------------------------------------------------------------------------
# vllm backend: the mapping always, the engine only with CUDA


def test_vllm_config_mapping():
    cfg = load_teacher_config("qwq", ["sampling.seed=3", "gpu_memory_utilization=0.85"])
    assert vllm_engine_kwargs(cfg) == {
        "model": "Qwen/QwQ-32B", "tensor_parallel_size": 2, "dtype": "auto", "gpu_memory_utilization": 0.85,
        "trust_remote_code": False, "seed": 3, "max_model_len": 36864}
    params = SamplingParams(temperature=0.6, top_p=0.95, max_tokens=1000, n=4, seed=9, stop=["</answer>"])
    assert vllm_sampling_kwargs(params, {"top_k": 40}) == {
        "n": 4, "temperature": 0.6, "top_p": 0.95, "max_tokens": 1000, "skip_special_tokens": False,
        "seed": 9, "stop": ["</answer>"], "top_k": 40}
    request = types.SimpleNamespace(prompt_token_ids=[1, 2, 3])
    output = types.SimpleNamespace(text="step one\n</think>\n\nThe answer is 4.", finish_reason="length",
                                   token_ids=[5, 6, 7, 8])
    c = completion_from_vllm(request, output)
    assert (c.reasoning, c.answer, c.finish_reason, c.prompt_tokens, c.completion_tokens) == \
        ("step one", "The answer is 4.", "length", 3, 4)


def test_vllm_without_vllm_says_how_to_install_or_use_hf(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # importing it now raises ImportError
    with pytest.raises(ImportError, match=r"pip install -e '\.\[vllm\]'.*backend: hf"):
        load_teacher("qwq")


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


@pytest.mark.skipif(not _cuda(), reason="the vLLM engine needs a CUDA GPU")
def test_vllm_engine_generates(tiny_qwen2):
    pytest.importorskip("vllm", reason="vllm is an optional extra: pip install -e '.[vllm]'")
    teacher = load_teacher(TeacherConfig(name="tiny", backend="vllm", model=str(tiny_qwen2),
                                         gpu_memory_utilization=0.3, max_model_len=512))
    out = teacher.generate(CHATS, SamplingParams(n=2, max_tokens=8, seed=0))
    assert [len(cs) for cs in out] == [2, 2, 2]
    assert all(c.finish_reason in ("stop", "length") and c.completion_tokens for cs in out for c in cs)


# ---------------------------------------------------------------------------------------------
# openai backend against a real OpenAI-compatible server: `transformers serve` on the tiny model


@pytest.fixture(scope="session")
def transformers_server(tiny_qwen2, tmp_path_factory):
    from distill.config import ConfigError
    from distill.export.serve import free_port, running, serve_command

    port = free_port()
    try:
        cmd = serve_command(Path(tiny_qwen2), "127.0.0.1", port, gpu=False)
    except ConfigError as e:  # no `transformers` beside this Python: the serving extra is missing
        pytest.skip(str(e))
    cache = tmp_path_factory.mktemp("hf-cache")
    with running(cmd.argv, port, cache / "serve.log", ready_timeout=90,
                 env={"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1", "HF_HUB_CACHE": str(cache)}) as url:
        yield url  # the server is killed by PID when the session ends


@pytest.mark.slow
def test_openai_backend_against_transformers_serve(transformers_server, tiny_qwen2, tmp_path):
    prompt_set = write_prompt_set(tmp_path, ["Compute 3 + 4.", "Compute 7 - 5.", "Compute 2 + 2."])
    teacher = tmp_path / "served.yaml"
    # The request's model must be the path the server was started with; it serves one request at a time.
    teacher.write_text(f"backend: openai\nmodel: {tiny_qwen2}\nbase_url: [{transformers_server}]\n"
                       "concurrency: 1\ntimeout: 60\nsampling: {n: 1, max_tokens: 8}\n")
    summary = run(teacher, prompt_set, tmp_path / "out")
    assert summary["written"] == 3 and summary["failed"] == 0
    traces = list(read_traces(tmp_path / "out" / "raw.jsonl"))
    assert sorted(t.prompt_id for t in traces) == ["set/q0", "set/q1", "set/q2"]
    for t in traces:
        assert t.finish_reason in ("stop", "length") and 0 < t.completion_tokens <= 8 and t.prompt_tokens > 0
        assert (t.reasoning + t.answer).strip() and t.teacher["model"] == str(tiny_qwen2)
    # The eval path: the same backend through generate().
    out = load_teacher(teacher).generate(CHATS[:2], SamplingParams(n=1, max_tokens=4))
    assert [len(cs) for cs in out] == [1, 1] and all(cs[0].finish_reason in ("stop", "length") for cs in out)
    assert all(cs[0].completion_tokens and cs[0].raw.get("id") for cs in out)


def test_backends_declare_their_batching_and_eval_chunk_and_the_eval_follows_them():
    from distill.eval.config import EvalConfig
    from distill.teachers import backend_class

    declared = {b: (backend_class(b).batching, backend_class(b).eval_chunk(16)) for b in ("hf", "vllm", "openai")}
    assert declared == {"hf": ("batches", 64), "vllm": ("batches", 2048), "openai": ("requests", 2048)}
    assert [EvalConfig().chunk_for(b, 16) for b in declared] == [64, 2048, 2048]
    assert EvalConfig(chunk=8).chunk_for("vllm", 16) == 8  # the user's chunk wins

"""Hub pushes, offline: cards parse back through huggingface_hub's card classes, and each upload is
driven against a stub hub on 127.0.0.1 that this test starts (it speaks the few routes
huggingface_hub calls: create repo, preupload, commit, branch, validate-yaml) and records them."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from distill.hub import dataset_card, model_card, push_checkpoint_callback, push_student, push_trace_set
from distill.trace import write_traces


class StubHub(BaseHTTPRequestHandler):
    calls: list[tuple[str, str, object]] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, body: object, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?")[0]
        if path.endswith("/preupload/" + path.rsplit("/", 1)[-1]) and "/preupload/" in path:
            files = json.loads(raw)["files"]
            self.calls.append(("preupload", path, [f["path"] for f in files]))
            return self._reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                          for f in files]})
        if "/commit/" in path:
            lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
            files = {ln["value"]["path"]: base64.b64decode(ln["value"]["content"])
                     for ln in lines if ln.get("key") == "file"}
            self.calls.append(("commit", path, files))
            repo = path.split("/api/", 1)[1].split("/commit/")[0]
            return self._reply({"commitUrl": f"http://{self.headers['Host']}/{repo.removeprefix('models/')}/commit/abc123",
                                "commitOid": "abc123",
                                "success": True})
        if path == "/api/repos/create":
            body = json.loads(raw)
            self.calls.append(("create", path, body))
            prefix = "datasets/" if body.get("type") == "dataset" else ""
            name = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
            return self._reply({"url": f"http://{self.headers['Host']}/{prefix}{name}"})
        if "/branch/" in path:
            self.calls.append(("branch", path, None))
            return self._reply({})
        if path == "/api/validate-yaml":
            body = json.loads(raw)
            self.calls.append(("validate", path, body))
            return self._reply({"errors": [], "warnings": []})
        self.calls.append(("unexpected", path, raw[:200]))
        return self._reply({"error": f"stub: no route {path}"}, 404)

    def do_GET(self):
        self.calls.append(("unexpected-get", self.path, None))
        return self._reply({"error": "stub: no GET routes"}, 404)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A stub hub on 127.0.0.1 (a free port), with huggingface_hub's offline switch lifted for it alone."""
    import huggingface_hub.constants as constants
    from huggingface_hub.utils import _detect_agent

    server = ThreadingHTTPServer(("127.0.0.1", 0), StubHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    StubHub.calls = []
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", url)  # RepoCard.validate posts here
    monkeypatch.setenv("HF_TOKEN", "hf_stub_token_for_tests")
    # Its user-agent lookup would fetch a registry from the endpoint and cache it under ~/.cache: pin it here.
    monkeypatch.setattr(_detect_agent, "_registry", {"standardEnvVars": [], "harnesses": {}})
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))
    yield url
    server.shutdown()
    server.server_close()


def clean_set(folder: Path, make_trace, n: int = 3, **overrides) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    traces = [make_trace(prompt_id=f"p{i}", **overrides) for i in range(n)]
    write_traces(folder / "clean.jsonl", traces)
    (folder / "filter_report.json").write_text(json.dumps({"n_in": 5, "n_kept": n, "dropped": {"math_correct": 2}}))
    return folder


def test_dataset_card_has_yaml_metadata_and_validates(tmp_path, make_trace, hub):
    from huggingface_hub import DatasetCard

    folder = clean_set(tmp_path / "traces" / "r1" / "toy", make_trace, teacher={"model": "deepseek-ai/DeepSeek-R1"})
    card = dataset_card(folder, "me/toy-traces", license="apache-2.0")
    card.validate(repo_type="dataset")  # posts the YAML to the stub's /api/validate-yaml
    parsed = DatasetCard(str(card))
    assert parsed.data.license == "apache-2.0" and parsed.data.size_categories == ["n<1K"]
    assert parsed.data.configs[0]["data_files"][0]["path"] == "data/train.jsonl"
    assert "`deepseek-ai/DeepSeek-R1`: 3 traces" in parsed.text and "| math_correct | 2 |" in parsed.text
    assert StubHub.calls[-1][0] == "validate" and StubHub.calls[-1][2]["repoType"] == "dataset"


def test_an_imported_set_keeps_its_license_and_source(tmp_path, make_trace):
    folder = clean_set(tmp_path / "set", make_trace)
    (folder / "import.json").write_text(json.dumps({"source": "open-r1/OpenR1-Math-220k", "subset": "default",
                                                    "license": "apache-2.0"}))
    card = dataset_card(folder, "me/x")
    assert card.data.license == "apache-2.0" and card.data.source_datasets == ["open-r1/OpenR1-Math-220k"]
    assert dataset_card(clean_set(tmp_path / "own", make_trace), "me/y").data.license == "unknown"


def test_push_trace_set_is_one_commit_against_the_stub(tmp_path, make_trace, hub):
    folder = clean_set(tmp_path / "set", make_trace)
    url = push_trace_set(folder, "me/toy-traces", endpoint=hub, license="mit")
    assert url.endswith("/commit/abc123")
    kinds = [c[0] for c in StubHub.calls]
    # huggingface_hub has the hub validate README.md's YAML before it commits: the stub says it is fine.
    assert kinds == ["create", "validate", "preupload", "commit"], StubHub.calls
    files = StubHub.calls[-1][2]
    assert set(files) == {"README.md", "data/train.jsonl", "filter_report.json"}
    assert files["data/train.jsonl"] == (folder / "clean.jsonl").read_bytes()
    assert b"license: mit" in files["README.md"]
    assert json.loads((folder / "hub.json").read_text())["repo_id"] == "me/toy-traces"


def student_run(tmp_path: Path, make_trace, pushed_set: str | None = None) -> Path:
    """A finished run folder as `make student` leaves it (run.json, card.md, final/), with an eval report."""
    from distill.students.card import write_card, write_record

    data = clean_set(tmp_path / "out" / "traces" / "openr1-math" / "default", make_trace,
                     teacher={"model": "deepseek-ai/DeepSeek-R1", "source": "open-r1/OpenR1-Math-220k"})
    if pushed_set:
        (data / "hub.json").write_text(json.dumps({"repo_id": pushed_set}))
    run = tmp_path / "out" / "students" / "7b"
    (run / "final").mkdir(parents=True)
    (run / "final" / "config.json").write_text("{}")
    (run / "final" / "model.safetensors").write_bytes(b"weights")
    write_record(run, {"size": "7b", "config": {"base": "Qwen/Qwen2.5-Math-7B", "kd": "none"},
                       "data": {"path": str(data / "clean.jsonl")}, "results": {"final_loss": 0.5}})
    report = tmp_path / "out" / "eval" / "7b" / "report.json"
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"benchmarks": {"math500": {"student": {"k": 4, "pass@1": {"mean": 0.8, "stderr": 0.01}},
                                                            "original": {"k": 4, "pass@1": {"mean": 0.5, "stderr": 0.01}}}},
                                  "rows": [{"benchmark": "math500", "original": "50.0", "student": "80.0"}]}))
    write_card(run)
    return run


def test_model_card_base_model_datasets_and_eval_results(tmp_path, make_trace, hub):
    from huggingface_hub import ModelCard

    run = student_run(tmp_path, make_trace, pushed_set="me/openr1-clean")
    card = model_card(run, "me/qwen-7b-distill")
    card.validate(repo_type="model")
    parsed = ModelCard(str(card))
    assert parsed.data.base_model == "Qwen/Qwen2.5-Math-7B"
    assert parsed.data.datasets == ["me/openr1-clean", "open-r1/OpenR1-Math-220k"]
    (result,) = parsed.data.eval_results  # parsed back from model-index
    assert (result.dataset_type, result.metric_type, result.metric_value) == ("HuggingFaceH4/MATH-500", "pass@1", 80.0)
    assert "| math500 |" in parsed.text  # card.md's eval table in the body


def test_push_student_uploads_final_with_the_card(tmp_path, make_trace, hub):
    run = student_run(tmp_path, make_trace)
    push_student(run, "me/qwen-7b-distill", endpoint=hub)
    kinds = [c[0] for c in StubHub.calls]
    assert kinds == ["create", "validate", "preupload", "commit"], StubHub.calls
    files = StubHub.calls[-1][2]
    assert {"README.md", "config.json", "model.safetensors"} <= set(files)
    assert b"base_model: Qwen/Qwen2.5-Math-7B" in files["README.md"]


def test_checkpoints_go_up_as_revisions_without_resume_state(tmp_path, hub):
    from types import SimpleNamespace

    ckpt = tmp_path / "checkpoints" / "checkpoint-20"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"w")
    (ckpt / "optimizer.pt").write_bytes(b"o")
    (ckpt / "rng_state.pth").write_bytes(b"r")
    callback = push_checkpoint_callback("me/run", endpoint=hub)
    # The two fields on_save reads, as the Trainer passes them (TrainingArguments, TrainerState).
    args = SimpleNamespace(output_dir=str(tmp_path / "checkpoints"))
    state = SimpleNamespace(global_step=20, is_world_process_zero=True)
    callback.on_save(args, state, None)
    assert callback.pushed == ["checkpoint-20"]
    kinds = [c[0] for c in StubHub.calls]
    assert kinds == ["create", "branch", "preupload", "commit"], StubHub.calls
    assert StubHub.calls[1][1].endswith("/branch/checkpoint-20") and "/commit/checkpoint-20" in StubHub.calls[-1][1]
    assert set(StubHub.calls[-1][2]) == {"model.safetensors"}

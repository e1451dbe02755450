"""Multi-node runs on CPU: two processes stand in for two nodes of one job.

Each "node" is a real process of a 2-process gloo job (RANK 0 and 1, each its node's local main:
LOCAL_RANK=0, NODE_RANK=0/1), so the shared-filesystem check runs its real broadcast, gather and
barrier. One folder given to both stands in for a shared filesystem; two folders for two nodes'
own disks. Each process writes what it saw to a JSON file; the test reads both.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from student_fixtures import arithmetic_traces, write_clean

from distill.config import ConfigError
from distill.students.config import load_student_config
from distill.students.launch import SHARED_FS_MARKER, wait_for_marker

pytestmark = pytest.mark.slow  # every test here starts processes or trains end to end

REPO = Path(__file__).resolve().parents[1]

NODE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from accelerate import PartialState
    from distill.config import ConfigError
    from distill.students.launch import check_shared_filesystem

    folder, report, timeout = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    PartialState(cpu=True)
    try:
        check_shared_filesystem(folder, timeout_s=timeout, poll_s=0.1)
        report.write_text(json.dumps({"ok": True}))
    except ConfigError as e:
        report.write_text(json.dumps({"ok": False, "error": str(e)}))
""")

TOKENISE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from accelerate import PartialState
    from transformers import AutoTokenizer
    import distill.students.data as data
    from distill.config import ConfigError
    from distill.students.config import load_student_config
    from distill.students.train import tokenise_once

    out_dir, report, traces, tokenizer = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    calls = []
    original = data.tokenize_messages
    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)
    data.tokenize_messages = counting
    cfg, _ = load_student_config("tiny", ["max_length=512", "per_device_batch_size=16", "shared_fs_timeout_s=1"], nodes=2, gpus=1)
    state = PartialState(cpu=True)
    try:
        dataset, stats = tokenise_once(cfg, traces, AutoTokenizer.from_pretrained(tokenizer), out_dir, state)
        report.write_text(json.dumps({"ok": True, "tokenised": len(calls), "rows": len(dataset)}))
    except ConfigError as e:
        report.write_text(json.dumps({"ok": False, "error": str(e), "tokenised": len(calls)}))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(tmp_path: Path, script: str, folders: list[Path], *args: str) -> list[dict]:
    """Run `script` as rank 0 (node 0) and rank 1 (node 1) of one gloo job; each gets its own folder."""
    port = _free_port()
    procs, reports = [], []
    for rank, folder in enumerate(folders):
        report = tmp_path / f"node{rank}.json"
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
               "NODE_RANK": str(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        procs.append(subprocess.Popen([sys.executable, "-c", script, str(folder), str(report), *args], env=env,
                                      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        reports.append(report)
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    return [json.loads(r.read_text()) for r in reports]


def test_nodes_on_their_own_disks_stop_on_every_node_with_the_fix(tmp_path):
    """Node 1's out dir is its own disk: the marker rank 0 wrote is not there, and both nodes stop."""
    disk0, disk1 = tmp_path / "node0-disk" / "out", tmp_path / "node1-disk" / "out"
    results = two_nodes(tmp_path, NODE, [disk0, disk1], "1")
    for result in results:  # node 0 stops too, instead of waiting in a collective for node 1
        assert result["ok"] is False
        error = result["error"]
        assert "not one filesystem shared by every node" in error
        assert "node 1" in error and "does not exist here" in error and "node 0" not in error
        assert "OUT=/shared/out" in error and "shared_fs_timeout_s" in error
    assert not (disk1 / SHARED_FS_MARKER).exists()


def test_a_stale_marker_from_another_launch_does_not_pass(tmp_path):
    marker = tmp_path / SHARED_FS_MARKER
    marker.write_text("an-old-token\nwritten by rank 0 on elsewhere\n")
    assert "stale marker" in wait_for_marker(marker, "this-launch", timeout_s=0.2, poll_s=0.05)
    marker.write_text("this-launch\n")
    assert wait_for_marker(marker, "this-launch", timeout_s=0.2) is None


def test_two_nodes_on_one_shared_filesystem_tokenise_once(tmp_path, tiny_tokenizer_path):
    """Both nodes see one out dir: the check passes, rank 0 of the job tokenises into the shared cache and node 1
    reads it, tokenising nothing."""
    traces = write_clean(tmp_path / "clean.jsonl", arithmetic_traces(12))
    shared = tmp_path / "shared" / "students" / "tiny"
    results = two_nodes(tmp_path, TOKENISE, [shared, shared], str(traces), str(tiny_tokenizer_path))
    assert [r["ok"] for r in results] == [True, True]
    assert results[0]["tokenised"] == 12 and results[1]["tokenised"] == 0
    assert results[0]["rows"] == results[1]["rows"] == 12
    assert not (shared / SHARED_FS_MARKER).exists()  # rank 0 removes its marker once every node has seen it


def test_the_check_runs_before_any_trace_is_tokenised(tmp_path, monkeypatch):
    """On separate disks every node would tokenise again into its own cache: the check stops the job first."""
    import distill.students.data as data
    import distill.students.train as train

    cfg, _ = load_student_config("tiny", ["per_device_batch_size=16"], nodes=2, gpus=1)
    state = types.SimpleNamespace(num_processes=2)
    checked, built = [], []

    def not_shared(folder, timeout_s):
        checked.append((folder, timeout_s))
        raise ConfigError(f"multi-node run: {folder} is not one filesystem shared by every node")

    monkeypatch.setattr(train, "check_shared_filesystem", not_shared)
    monkeypatch.setattr(data, "build_dataset", lambda *a, **k: built.append(a))
    with pytest.raises(ConfigError, match="not one filesystem shared"):
        train.tokenise_once(cfg, tmp_path / "clean.jsonl", None, tmp_path / "out", state)
    assert checked == [(tmp_path / "out", cfg.shared_fs_timeout_s)] and built == []

    # One node (any number of GPUs) has one disk: nothing to check.
    one_node, _ = load_student_config("tiny", ["per_device_batch_size=16"], nodes=1, gpus=2)
    state.main_process_first = contextlib.nullcontext
    train.tokenise_once(one_node, tmp_path / "clean.jsonl", None, tmp_path / "out", state)
    assert len(checked) == 1 and len(built) == 1


@pytest.mark.parametrize("size", ["32b", "70b"])
def test_multi_node_presets_say_the_out_dir_must_be_shared(size):
    header = (REPO / "students" / f"{size}.yaml").read_text().split("\nbase:", 1)[0]
    assert "OUT (default out/) on a filesystem every node mounts at the same path" in header

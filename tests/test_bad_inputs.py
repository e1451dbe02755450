"""Bad inputs through the real CLI: each is one short message and exit 2, nothing is
lost or overwritten, and nothing succeeds silently on no data.

Everything here fails before a model loads: pure Python plus `import torch`, seconds in all.
The filter runs use `filters=[finished]` so no benchmark is opened for decontamination.
"""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path

import pytest

from distill.cli import main
from distill.trace import write_traces

FAST_FILTERS = "filters=[finished]"


def fail(capsys, argv: list[str], match: str) -> str:
    """Run the CLI, expect exit 2 and one message on stderr matching `match` (a substring); no traceback."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert match in err, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    """out/students/tiny as a finished run leaves it (final/, run.json, card.md)."""
    run_dir = tmp_path / "out" / "students" / "tiny"
    (run_dir / "final").mkdir(parents=True)
    (run_dir / "final" / "config.json").write_text("{}")
    (run_dir / "run.json").write_text(json.dumps({"results": {"final_loss": 0.1}}))
    (run_dir / "card.md").write_text("# tiny\n")
    return run_dir


def assert_untouched(run_dir: Path) -> None:
    assert (run_dir / "final" / "config.json").exists()
    assert json.loads((run_dir / "run.json").read_text())["results"] == {"final_loss": 0.1}
    assert (run_dir / "card.md").read_text() == "# tiny\n"


# ---------------------------------------------------------------------------------------------
# 0. Data lost


@pytest.mark.parametrize("content, match", [
    ("", "no traces to train on"),
    ("x\n", "1: not valid JSON"),
])
def test_student_overwrite_with_bad_data_keeps_the_trained_model(tmp_path, capsys, trained, make_trace, content,
                                                                  match):
    data = tmp_path / "clean.jsonl"
    data.write_text(content)
    fail(capsys, ["student", "--size", "tiny", "--data", data, "--out", tmp_path / "out", "overwrite=true"], match)
    assert_untouched(trained)


def test_student_overwrite_with_a_bad_line_in_the_middle_keeps_the_trained_model(tmp_path, capsys, trained,
                                                                                 make_trace):
    data = tmp_path / "clean.jsonl"
    write_traces(data, [make_trace(prompt_id=f"p{i}") for i in range(3)])
    lines = data.read_text().splitlines()
    data.write_text("\n".join([lines[0], '{"id": "x"}', *lines[1:]]) + "\n")
    fail(capsys, ["student", "--size", "tiny", "--data", data, "--out", tmp_path / "out", "overwrite=true"],
         "clean.jsonl:2: field 'prompt_id'")
    assert_untouched(trained)


def test_student_overwrite_with_a_missing_base_keeps_the_trained_model(tmp_path, capsys, trained, make_trace):
    data = write_traces_file(tmp_path / "clean.jsonl", make_trace)
    fail(capsys, ["student", "--size", "tiny", "--data", data, "--out", tmp_path / "out", "overwrite=true",
                  f"base={tmp_path / 'no-model'}"], "is not a model folder")
    assert_untouched(trained)


def write_traces_file(path: Path, make_trace, n: int = 3) -> Path:
    write_traces(path, [make_trace(prompt_id=f"p{i}") for i in range(n)])
    return path


def test_filter_on_a_file_without_traces_keeps_the_good_clean_file(tmp_path, capsys, make_trace):
    folder = tmp_path / "run"
    folder.mkdir()
    raw = write_traces_file(folder / "raw.jsonl", make_trace)
    assert main(["filter", "--input", str(raw), FAST_FILTERS]) == 0
    good = (folder / "clean.jsonl").read_text()
    assert good.count("\n") == 3
    (folder / "raw.jsonl").write_text('{"not": "a trace"}\nnonsense\n')
    fail(capsys, ["filter", "--input", folder / "raw.jsonl", FAST_FILTERS], "no readable trace in 2 line(s)")
    assert (folder / "clean.jsonl").read_text() == good
    assert not list(folder.glob(".*.tmp-*"))


# ---------------------------------------------------------------------------------------------
# 1. Tracebacks instead of errors


@pytest.mark.parametrize("stage", [["traces"], ["filter"], ["student", "--size", "tiny"], ["eval", "--size", "tiny"],
                                   ["demo"]])
@pytest.mark.parametrize("under", ["", "sub"])
def test_out_naming_a_file_or_under_one(tmp_path, capsys, stage, under):
    f = tmp_path / "f"
    f.write_text("")
    out = f / under if under else f
    fail(capsys, [*stage, "--out", out], f"{f} is a file")


@pytest.mark.parametrize("stage", [["traces"], ["filter"], ["student", "--size", "tiny"], ["eval", "--size", "tiny"]])
def test_out_on_a_read_only_folder(tmp_path, capsys, monkeypatch, stage):
    # Tests run as root here, where chmod does not stop writes; os.access is what a read-only mount answers.
    import distill.cli

    monkeypatch.setattr(distill.cli.os, "access", lambda path, mode: Path(path) != tmp_path)
    fail(capsys, [*stage, "--out", tmp_path / "out"], f"cannot write in {tmp_path} (read-only or no permission)")


def test_an_os_error_on_a_user_path_is_one_line(tmp_path, capsys, monkeypatch):
    import distill.filters.run

    def read_only(**kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "x"))

    monkeypatch.setattr(distill.filters.run, "run", read_only)
    fail(capsys, ["filter", "--out", tmp_path], f"{tmp_path / 'x'}: Read-only file system")


def test_student_on_garbage_or_empty_clean_file(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("x\n")
    fail(capsys, ["student", "--size", "tiny", "--data", bad, "--out", tmp_path / "out"],
         "bad.jsonl:1: not valid JSON")
    empty = tmp_path / "traces" / "tiny" / "toy" / "clean.jsonl"
    empty.parent.mkdir(parents=True)
    empty.write_text("")
    fail(capsys, ["student", "--size", "tiny", "--out", tmp_path], "no traces to train on")
    fail(capsys, ["student", "--size", "tiny", "--data", tmp_path, "--out", tmp_path / "out"], "is a folder")


def test_prompts_path_naming_a_folder(tmp_path, capsys):
    (tmp_path / "rows.jsonl").write_text('{"problem": "1+1", "answer": "2"}\n')
    fail(capsys, ["traces", "--prompts", "gsm8k-train", f"prompts.path={tmp_path}", "--out", tmp_path / "out"],
         "is a folder; point `path=` at one .jsonl")


def test_a_filter_setting_out_of_range(tmp_path, capsys, make_trace):
    raw = write_traces_file(tmp_path / "raw.jsonl", make_trace)
    fail(capsys, ["filter", "--input", raw, "filters=[dedup]", "dedup.threshold=3"], "threshold must be in (0, 1]")


def test_toy_prompt_set_asked_for_nothing(tmp_path, capsys):
    fail(capsys, ["traces", "prompts.toy.n=0", "--out", tmp_path], "n >= 1")


def test_unknown_toy_base(tmp_path, capsys, make_trace):
    data = write_traces_file(tmp_path / "clean.jsonl", make_trace)
    fail(capsys, ["student", "--size", "tiny", "--data", data, "--out", tmp_path, "base=toy://nope"],
         "unknown toy model 'toy://nope'")


# ---------------------------------------------------------------------------------------------
# 2. Silent success on nothing


def test_empty_prompts_file(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    fail(capsys, ["traces", "--prompts", "gsm8k-train", f"prompts.path={empty}", "--out", tmp_path / "out"],
         "has no prompts")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, match", [
    (["traces", "limit=-3"], "limit=-3: use a positive number"),
    (["traces", "limit=0"], "limit=0: use a positive number"),
    (["traces", "n=0"], "sampling needs n >= 1"),
    (["traces", "teacher.concurrency=0"], "`concurrency` must be at least 1"),
    (["traces", "concurrency=0"], "unknown key 'concurrency'. Did you mean 'teacher.concurrency'?"),
    (["traces", "teacher.timeout=0"], "timeout > 0"),
    (["traces", "--shard", "0/0"], "N is the number of shards and must be at least 1"),
    (["traces", "--shard", "4/4"], "i must be in 0..N-1"),
    (["traces", "teacher.dtype=int7"], "dtype 'int7' is not one of"),
    (["eval", "limit=-3"], "limit=-3; use a positive number"),
])
def test_numbers_out_of_range(tmp_path, capsys, argv, match):
    fail(capsys, [*argv, "--out", tmp_path], match)


@pytest.mark.parametrize("setting, match", [
    ("workers=-1", "workers must be 0"),
    ("chunk_size=0", "chunk_size at least 1"),
])
def test_filter_run_options_out_of_range(tmp_path, capsys, make_trace, setting, match):
    raw = write_traces_file(tmp_path / "raw.jsonl", make_trace)
    fail(capsys, ["filter", "--input", raw, FAST_FILTERS, setting], match)


def test_filter_names_a_garbage_line_in_the_middle(tmp_path, capsys, caplog, make_trace):
    raw = write_traces_file(tmp_path / "raw.jsonl", make_trace)
    lines = raw.read_text().splitlines()
    raw.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with caplog.at_level(logging.WARNING):
        assert main(["filter", "--input", str(raw), FAST_FILTERS]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"{raw}:2: not valid JSON" in w for w in warnings), warnings
    table = capsys.readouterr().out
    assert "unreadable lines" in table and "kept" in table
    report = json.loads((tmp_path / "filter_report.json").read_text())
    assert report["in"] == 4 and report["read_errors"] == 1 and report["kept"] == 3


# ---------------------------------------------------------------------------------------------
# 3. Outputs clobbered


def test_filter_input_writes_next_to_the_input(tmp_path, monkeypatch, make_trace):
    monkeypatch.chdir(tmp_path)
    demo = tmp_path / "out" / "traces" / "tiny" / "toy"
    demo.mkdir(parents=True)
    (demo / "clean.jsonl").write_text("demo\n")
    (tmp_path / "some").mkdir()
    some = write_traces_file(tmp_path / "some" / "raw.jsonl", make_trace)
    assert main(["filter", "--input", str(some), FAST_FILTERS]) == 0
    assert (tmp_path / "some" / "clean.jsonl").read_text().count("\n") == 3
    assert (demo / "clean.jsonl").read_text() == "demo\n"


def test_filter_refuses_to_replace_another_inputs_outputs(tmp_path, capsys, make_trace):
    folder = tmp_path / "out" / "traces" / "tiny" / "toy"
    folder.mkdir(parents=True)
    write_traces_file(folder / "raw.jsonl", make_trace)
    assert main(["filter", "--out", str(tmp_path / "out"), FAST_FILTERS]) == 0
    mine = write_traces_file(tmp_path / "mine.jsonl", make_trace, n=1)
    fail(capsys, ["filter", "--input", mine, "--out", tmp_path / "out", FAST_FILTERS],
         "holds the filtered traces of another input")
    assert (folder / "clean.jsonl").read_text().count("\n") == 3
    # Rerunning on the same input is fine; overwrite=true replaces on purpose.
    assert main(["filter", "--out", str(tmp_path / "out"), FAST_FILTERS]) == 0
    assert main(["filter", "--input", str(mine), "--out", str(tmp_path / "out"), FAST_FILTERS, "overwrite=true"]) == 0
    assert (folder / "clean.jsonl").read_text().count("\n") == 1


def test_filter_refuses_to_overwrite_its_own_input(tmp_path, capsys, make_trace):
    clean = write_traces_file(tmp_path / "clean.jsonl", make_trace)
    fail(capsys, ["filter", "--input", clean, FAST_FILTERS], "would be overwritten by this filter's own output")


def test_eval_student_that_is_not_a_model(tmp_path, capsys):
    (tmp_path / "final").mkdir()
    fail(capsys, ["eval", "--size", "tiny", "--student", tmp_path / "final", "--out", tmp_path / "out"],
         "is not a model folder (no config.json)")
    (tmp_path / "model.bin").write_text("")
    fail(capsys, ["eval", "--size", "tiny", "--student", tmp_path / "model.bin", "--out", tmp_path / "out"],
         "is a file; it takes a model folder")


def test_student_overwrite_failing_after_tokenising_puts_the_trained_model_back(tmp_path, capsys, trained,
                                                                                tiny_qwen2):
    """Every trace longer than max_length is found only after tokenising: overwrite=true had already
    deleted the trained run. Now the run is set aside and comes back."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from student_fixtures import arithmetic_traces, write_clean

    data = write_clean(tmp_path / "clean.jsonl", arithmetic_traces(4))
    fail(capsys, ["student", "--size", "tiny", "--data", data, "--out", tmp_path / "out", "overwrite=true",
                  f"base={tiny_qwen2}", "max_length=4", "max_steps=1"], "longer than max_length=4")
    assert_untouched(trained)
    assert not (trained / ".replaced").exists()


def test_student_overwrite_that_succeeds_leaves_nothing_aside(tmp_path, trained, tiny_qwen2):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from student_fixtures import arithmetic_traces, tiny_overrides, write_clean

    from distill.students.train import run

    data = write_clean(tmp_path / "clean.jsonl", arithmetic_traces(4))
    run("tiny", data, trained, overrides=tiny_overrides(tiny_qwen2, "overwrite=true", "max_steps=1", "save_steps=10"))
    assert json.loads((trained / "final" / "config.json").read_text())["model_type"] == "qwen2"  # the new model
    assert not (trained / ".replaced").exists()

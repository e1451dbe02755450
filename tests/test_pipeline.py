"""The thin chain through the CLI: traces -> filter -> student -> eval, on tiny random models.

Proves the seams and the fixed output places (what `make traces/filter/student/eval` write), not
model quality: the teacher is a randomly initialised 2-layer Qwen2, the filter is dedup only
(a random model rarely stops, so `finished` would drop everything), the student takes a few
TRL SFT steps. `test_demo.py` checks that distillation really helps, on the toy task.
"""

import json

import yaml

from distill.cli import main
from distill.config import REPO_ROOT


def test_four_stages_through_the_cli(tmp_path, tiny_qwen2, tiny_llama):
    prompts = tmp_path / "mini.jsonl"
    rows = [{"problem": f"What is {a} + {b}?", "answer": str(a + b)} for a, b in [(1, 2), (3, 4), (5, 6), (2, 2)]]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "mini.yaml").write_text(yaml.safe_dump({"name": "mini", "path": str(prompts), "task": "math"}))
    (tmp_path / "rand.yaml").write_text(yaml.safe_dump({
        "backend": "hf", "model": str(tiny_qwen2), "device": "cpu", "batch_size": 8,
        "sampling": {"temperature": 1.0, "top_p": 1.0, "max_tokens": 24, "n": 2, "seed": 0},
        "filters": ["dedup"],
    }))
    preset = yaml.safe_load((REPO_ROOT / "students" / "tiny.yaml").read_text())
    preset.update(base=str(tiny_llama), num_epochs=1, max_steps=-1, save_steps=2, eval=None,
                  per_device_batch_size=2, gradient_accumulation_steps=1, global_batch_size=2)
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(preset))
    out = tmp_path / "out"
    common = ["--out", str(out)]

    assert main(["traces", "--teacher", str(tmp_path / "rand.yaml"), "--prompts", str(tmp_path / "mini.yaml"), *common]) == 0
    folder = out / "traces" / "rand" / "mini"
    raw = [json.loads(line) for line in (folder / "raw.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in raw}) == 8 and all(r["reference"] for r in raw)

    assert main(["filter", "--teacher", str(tmp_path / "rand.yaml"), "--prompts", str(tmp_path / "mini.yaml"), *common]) == 0
    clean = (folder / "clean.jsonl").read_text().splitlines()
    rejects = (folder / "rejects.jsonl").read_text().splitlines()
    assert len(clean) + len(rejects) == 8 and clean
    assert json.loads((folder / "filter_report.json").read_text())

    assert main(["student", "--size", str(tmp_path / "small.yaml"), "--teacher", "rand", "--prompts", "mini", *common]) == 0
    student_dir = out / "students" / "small"
    assert (student_dir / "final" / "config.json").exists() and (student_dir / "card.md").exists()
    assert any(p.name.startswith("checkpoint-") for p in (student_dir / "checkpoints").iterdir())

    assert main(["eval", "--size", str(tmp_path / "small.yaml"), *common,
                 f"benchmarks=[{tmp_path / 'mini.yaml'}]", "default_k=1", "max_tokens=8"]) == 0
    report = json.loads((out / "eval" / "small" / "report.json").read_text())
    row = next(iter(report["benchmarks"].values()))
    assert {"original", "student"} <= set(row)
    assert (out / "eval" / "small" / "report.md").exists() and (out / "eval" / "small" / "report.png").exists()

"""The eval's figures reach the local run tracker (TensorBoard event files) by default."""

from __future__ import annotations

import pytest

from distill.eval.tracker import log_report, scalars

REPORT = {
    "size": "tiny",
    "benchmarks": {
        "toy-test": {
            "original": {"problems": 200, "samples": 200, "pass@1": {"mean": 0.245, "stderr": 0.03}, "truncation_rate": 0.0},
            "student": {"problems": 200, "samples": 800, "pass@1": {"mean": 0.71, "stderr": 0.03}, "cons@4": {"mean": 0.8, "stderr": 0.02}},
            "gain": {"mean": 0.465, "stderr": 0.04, "problems": 200},
            "teacher_share": 1.3,
        }
    },
}


def test_scalars_are_every_metric_of_every_role():
    assert scalars(REPORT) == {
        "toy-test/original/pass_at_1": 0.245,
        "toy-test/original/truncation_rate": 0.0,
        "toy-test/student/pass_at_1": 0.71,
        "toy-test/student/cons_at_4": 0.8,
        "toy-test/gain": 0.465,
        "toy-test/teacher_share": 1.3,
    }


def read_scalars(logdir) -> dict[str, float]:
    """Scalars of the TFRecord event files in `logdir` (length, crc, an Event proto, crc per record)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    out = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                out[value.tag] = value.simple_value
    return out


def test_tensorboard_event_files_hold_the_scalars(tmp_path):
    logdir = log_report(REPORT, tmp_path, "tensorboard")
    assert logdir == tmp_path / "runs"
    assert read_scalars(logdir) == pytest.approx(scalars(REPORT))
    assert log_report(REPORT, tmp_path / "none", "none") is None and not (tmp_path / "none").exists()
    with pytest.raises(ValueError, match="report_to='tb': use one of tensorboard, wandb, none"):
        log_report(REPORT, tmp_path, "tb")

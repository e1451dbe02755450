"""The eval's figures in the run tracker, beside report.json / report.md / report.png.

`report_to: tensorboard` (the default, as for training) writes event files under
out/eval/<size>/runs/: one scalar per benchmark, role and metric (pass@1, pass@k, cons@k,
truncation and no-answer rates), so `tensorboard --logdir out` shows a student's training curves
and its eval side by side. `wandb` logs the same keys to a W&B run; `none` writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TRACKERS = ("tensorboard", "wandb", "none")


def scalars(report: Mapping[str, Any]) -> dict[str, float]:
    """'<benchmark>/<role>/<metric>' -> value for every model column's metrics ('pass@1' is written
    'pass_at_1': TensorBoard tags take no '@'), and '<benchmark>/<comparison>' for the gain over the
    original, the teacher share and the gap closed."""
    out: dict[str, float] = {}
    for bench, row in report.get("benchmarks", {}).items():
        for key, value in row.items():
            if isinstance(value, Mapping) and "problems" in value and "samples" in value:  # a model column
                for metric, v in value.items():
                    number = v.get("mean") if isinstance(v, Mapping) else v if isinstance(v, float) else None
                    if isinstance(number, (int, float)):
                        out[f"{bench}/{key}/{metric.replace('@', '_at_')}"] = float(number)
            elif isinstance(value, Mapping) and isinstance(value.get("mean"), (int, float)):
                out[f"{bench}/{key}"] = float(value["mean"])
            elif isinstance(value, float):
                out[f"{bench}/{key}"] = value
    return out


def log_report(report: Mapping[str, Any], folder: Path, report_to: str, step: int = 0) -> Path | None:
    """Log the report's scalars to `report_to`; returns the tensorboard log folder (None otherwise)."""
    if report_to not in TRACKERS:
        raise ValueError(f"report_to={report_to!r}: use one of {', '.join(TRACKERS)}")
    values = scalars(report)
    if report_to == "none" or not values:
        return None
    if report_to == "wandb":
        import wandb

        run = wandb.init(project="distill", name=f"eval-{report.get('size', folder.name)}", reinit=True)
        run.log(values, step=step)
        run.finish()
        return None
    from tensorboardX import SummaryWriter

    logdir = Path(folder) / "runs"
    with SummaryWriter(str(logdir)) as writer:
        for key, value in values.items():
            writer.add_scalar(key, value, global_step=step)
    log.info("eval scalars in %s (tensorboard --logdir %s)", logdir, logdir)
    return logdir

"""What TensorBoard's HParams tab shows of a study: one session per run (its axes and its
final metrics) and one experiment summary for the study (which axes vary, which metrics).

Runs write only their session; the study writes the experiment summary once, at its folder's
root, over all its cells and Teacher_LR fits. TensorBoard takes the columns from that
summary and shows the first five axes that vary (alphabetically) and the first five
metrics (in `FINAL_METRICS`' order); axes that are constant over the study come last,
unticked. So the study's real axes (fraction, lam, seed, system, teacher) are what a reader
sees first, with the system named as the paper names it and the seed as an integer. Layout
(`tensorboard --logdir <study folder>`):

```
<study>/events.out.tfevents.east_ray_hparams   the experiment summary
<study>/cells/<cell id>/tb/                    a run's curves and its session
<study>/teacher_lr/<fit id>/tb/                a Teacher_LR fit's session and final metrics
```
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from google.protobuf import struct_pb2
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.summary.writer.record_writer import RecordWriter
from torch.utils.tensorboard import SummaryWriter

from east_ray.config import NO_TEACHER, Cell
from east_ray.train.result import METRIC_KEYS

# Every session's hparams, in this order; TensorBoard orders the columns alphabetically.
AXES = ("system", "teacher", "lam", "fraction", "seed", "dataset", "student")
FINAL_METRICS = (
    "final/test_mAP",
    "final/best_val_mAP",
    *(f"final/test_{k}" for k in METRIC_KEYS if k != "mAP"),
)
EXPERIMENT_FILE = "events.out.tfevents.east_ray_hparams"
SESSION_FILE = "events.out.tfevents.east_ray_session"

Hparams = dict[str, str | float]


def session_hparams(
    *,
    system: str,
    teacher: str | None,
    lam: float,
    fraction: float,
    seed: int,
    dataset: str,
    student: str | None,
) -> Hparams:
    """One run's hparams (`AXES`): the seed a string, so that TensorBoard prints it as an
    integer, a teacher-free system's teacher `NO_TEACHER`, and no student for a run that
    trains none (a Teacher_LR fit, whose row would otherwise make the student vary)."""
    hparams: Hparams = {
        "system": system,
        "teacher": teacher or NO_TEACHER,
        "lam": float(lam),
        "fraction": float(fraction),
        "seed": str(int(seed)),
        "dataset": dataset,
    }
    if student is not None:
        hparams["student"] = student
    return hparams


def cell_hparams(cell: Cell) -> Hparams:
    """A grid cell's hparams (`session_hparams`)."""
    return session_hparams(
        system=cell.system,
        teacher=cell.teacher,
        lam=cell.lam,
        fraction=cell.fraction,
        seed=cell.seed,
        dataset=cell.dataset,
        student=cell.student,
    )


def final_metrics(test: Mapping[str, float], best_val_map: float) -> dict[str, float]:
    """The `FINAL_METRICS` of a run: its test metrics and its best validation mAP."""
    metrics = {f"final/test_{k}": float(test[k]) for k in METRIC_KEYS}
    metrics["final/best_val_mAP"] = float(best_val_map)
    return {tag: metrics[tag] for tag in FINAL_METRICS}


def _value(value: str | float) -> struct_pb2.Value:
    if isinstance(value, str):
        return struct_pb2.Value(string_value=value)
    return struct_pb2.Value(number_value=value)


def _plugin_summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    data.version = metadata.PLUGIN_DATA_VERSION
    plugin = SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString()
    )
    return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])


def _session(hparams: Hparams) -> list[Summary]:
    start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
    for name, value in hparams.items():
        start.hparams[name].CopyFrom(_value(value))
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time())
    return [
        _plugin_summary(
            metadata.SESSION_START_INFO_TAG,
            plugin_data_pb2.HParamsPluginData(session_start_info=start),
        ),
        _plugin_summary(
            metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end)
        ),
    ]


def write_session(writer: SummaryWriter, hparams: Hparams, metrics: Mapping[str, float]) -> None:
    """A finished run's session and its final metrics, in the run's own event file."""
    # through this run's own writer: `add_hparams` would open a second event file
    file_writer = writer.file_writer
    assert file_writer is not None  # a SummaryWriter opens its file when constructed
    for summary in _session(hparams):
        file_writer.add_summary(summary)
    for tag, value in metrics.items():
        writer.add_scalar(tag, value)


def _write_events(path: Path, summaries: Sequence[Summary]) -> None:
    """An event file holding `summaries` (at step 0), replacing `path` atomically: the
    temporary file's name lacks "tfevents", so TensorBoard never reads it half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name.replace('tfevents', 'partial')}.{os.getpid()}")
    now = time.time()
    with tmp.open("wb") as f:
        records = RecordWriter(f)
        records.write(Event(wall_time=now, file_version="brain.Event:2").SerializeToString())
        for summary in summaries:
            records.write(Event(wall_time=now, step=0, summary=summary).SerializeToString())
        records.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_fit_session(tb_dir: Path, hparams: Hparams, metrics: Mapping[str, float]) -> None:
    """A run that trained outside the trainer (a Teacher_LR fit): its session and final
    metrics as one event file of `tb_dir`, rewritten whole each time."""
    scalars = [Summary(value=[Summary.Value(tag=t, simple_value=v)]) for t, v in metrics.items()]
    _write_events(tb_dir / SESSION_FILE, [*_session(hparams), *scalars])


def _hparam_info(name: str, values: Sequence[str | float]) -> api_pb2.HParamInfo:
    distinct = list(dict.fromkeys(values))
    info = api_pb2.HParamInfo(name=name, differs=len(distinct) > 1)
    if all(isinstance(v, str) for v in distinct):
        info.type = api_pb2.DATA_TYPE_STRING
        info.domain_discrete.extend(distinct)
    else:
        info.type = api_pb2.DATA_TYPE_FLOAT64
        numbers = [float(v) for v in distinct]
        info.domain_interval.min_value, info.domain_interval.max_value = min(numbers), max(numbers)
    return info


def write_experiment(logdir: Path, sessions: Sequence[Hparams]) -> None:
    """The study's experiment summary at `logdir`'s root, over every session it will hold:
    each axis marked as varying or not (over the sessions that have it), its values
    (strings, in the sessions' order) or range, and the `FINAL_METRICS` as its metrics.
    Rewritten whole, atomically."""
    experiment = api_pb2.Experiment(
        hparam_infos=[
            _hparam_info(name, [s[name] for s in sessions if name in s])
            for name in AXES
            if any(name in s for s in sessions)
        ],
        metric_infos=[
            api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag), display_name=tag.split("/")[1])
            for tag in FINAL_METRICS
        ],
    )
    data = plugin_data_pb2.HParamsPluginData(experiment=experiment)
    _write_events(logdir / EXPERIMENT_FILE, [_plugin_summary(metadata.EXPERIMENT_TAG, data)])

"""`python -m east_ray.check_install`: load and run every compiled library east_ray uses.

`make install` ends with this check so that a broken binary (a wheel built against another
torch, a missing system library) stops the install with the package's name and the fix,
instead of surfacing later inside a study as an unrelated-looking error. Each check runs a
tiny call through the same functions the pipeline calls, because several of these
libraries load their native code lazily, at first use rather than at import.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Sequence
from importlib import metadata


def _torch() -> None:
    import torch

    x = torch.ones(1, 1, 8, 8)
    torch.nn.functional.conv2d(x, torch.ones(1, 1, 3, 3)).sum().item()


def _torchaudio() -> None:
    import torch
    import torchaudio.functional as AF
    from torchaudio.compliance import kaldi

    AF.resample(torch.zeros(1, 320), 16000, 32000)
    AF.melscale_fbanks(513, 0.0, 8000.0, 8, 16000)
    AF.create_dct(8, 8, "ortho")
    AF.mask_along_axis_iid(torch.zeros(1, 1, 8, 8), 2, 0.0, 2)
    kaldi.get_mel_banks(8, 1024, 16000.0, 0.0, 8000.0, 100.0, -500.0, 1.0)


def _pyarrow() -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"x": [1.0, 2.0]}), sink)
    pq.read_table(pa.BufferReader(sink.getvalue()))


def _ray() -> None:
    import ray
    import ray.data
    import ray.tune
    from ray import _raylet  # noqa: F401  (the compiled core)

    ray.data.DataContext.get_current()


def _soundfile() -> None:
    import numpy as np
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(1600, dtype=np.float32), 16000, format="OGG")
    buffer.seek(0)
    sf.read(buffer)


def _scipy_sklearn() -> None:
    import numpy as np
    from scipy.stats import rankdata
    from sklearn.metrics import average_precision_score

    rankdata(np.arange(3))
    average_precision_score([0, 1, 1], [0.1, 0.8, 0.4])


def _tinysoundfont() -> None:
    import tinysoundfont

    tinysoundfont.Synth()


# (distribution, check): the distribution names the package to report and reinstall.
CHECKS: dict[str, Callable[[], None]] = {
    "torch": _torch,
    "torchaudio": _torchaudio,
    "pyarrow": _pyarrow,
    "ray": _ray,
    "soundfile": _soundfile,
    "scikit-learn": _scipy_sklearn,
    "tinysoundfont": _tinysoundfont,
}

FIX = (
    "fix: rebuild the environment from the lock with `make clean install`; "
    "if it persists, the locked wheel does not "
    "work on this machine: change its pin in pyproject.toml, run `make lock`, and report it"
)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def check() -> list[str]:
    """Run every check; return one line per failing package (empty when all load)."""
    failures = []
    for dist, run in CHECKS.items():
        try:
            run()
        except Exception as exc:  # any failure to load or run native code is the finding
            failures.append(f"{dist} {_version(dist)}: {type(exc).__name__}: {exc}")
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    failures = check()
    if failures:
        print("error: installed packages that do not load or run:", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
        print(FIX, file=sys.stderr)
        return 2
    print(f"install check: {', '.join(f'{d} {_version(d)}' for d in CHECKS)} load and run")
    return 0


if __name__ == "__main__":
    sys.exit(main())

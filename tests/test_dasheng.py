"""The Dasheng teacher (`east_ray.teachers.dasheng`): its layers equal the package's own
forward, its weights file loads (from a local folder and from a download served on
loopback), and its frames are 1 s from the clip's start."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
import torch
from dasheng.pretrained.pretrained import Dasheng

from east_ray.catalog import TEACHERS, get_teacher
from east_ray.data import fetch as fetch_module
from east_ray.errors import BadValueError
from east_ray.teachers.dasheng import hidden_states, load_dasheng_teacher
from tests.http_fixtures import serve

TINY = {"embed_dim": 16, "depth": 2, "num_heads": 2}
REFS = ("dasheng", "dasheng@0", "dasheng@1")


@pytest.fixture
def tiny_row(monkeypatch: pytest.MonkeyPatch) -> None:
    row = get_teacher("dasheng")
    layers = tuple((str(i), 16) for i in range(3))
    monkeypatch.setitem(
        TEACHERS, "dasheng", dataclasses.replace(row, dim=16, layers=layers, output="2")
    )


def _weights_file(model: Dasheng) -> bytes:
    """The package's file layout: the state dict and the model's settings."""
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "config": {"target_length": 1008, **TINY}}, buf)
    return buf.getvalue()


def _audio(seconds: float) -> torch.Tensor:
    return 0.1 * torch.randn(2, round(seconds * 16_000), generator=torch.Generator().manual_seed(2))


def test_the_last_layer_is_the_package_forward_and_frames_are_one_second() -> None:
    torch.manual_seed(0)
    model = Dasheng(**TINY).eval()
    audio = _audio(10.0)
    with torch.no_grad():
        states = hidden_states(model, audio)
        torch.testing.assert_close(states[-1], model(audio))
    assert [tuple(s.shape) for s in states] == [(2, 250, 16)] * 3  # 25 Hz patches
    info = get_teacher("dasheng")
    assert (info.frames(160_000), info.frames(round(29.1 * 16_000)), info.frames(1)) == (10, 29, 1)
    assert info.layer == "12" and len(info.layers) == 13


def test_a_weights_file_loads_and_one_of_other_sizes_is_refused(
    tiny_row: None, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = Dasheng(**TINY).eval()
    path = tmp_path / "dasheng_base.pt"
    path.write_bytes(_weights_file(model))
    extractor = load_dasheng_teacher("cpu", path, outputs=REFS, size=TINY)
    audio = _audio(10.0)
    out = extractor.embed_all(audio)
    assert [tuple(out[r].shape) for r in REFS] == [(2, 10, 16)] * 3
    # frame 0 of the last layer: the mean of the package's first 25 patches (0.0 .. 0.98 s)
    with torch.no_grad():
        expected = model(audio)[:, :25].mean(dim=1)
    torch.testing.assert_close(out["dasheng"][:, 0], expected)
    with pytest.raises(BadValueError, match=f"{path} does not hold dasheng weights"):
        load_dasheng_teacher("cpu", path, outputs=REFS, size={**TINY, "depth": 3})


def test_the_weights_are_downloaded_once_into_the_cache(
    tiny_row: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    body = _weights_file(Dasheng(**TINY))
    monkeypatch.setattr(fetch_module, "RETRY_DELAY_S", 0.0)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with serve(monkeypatch) as httpd:
        httpd.state.files["/dasheng_base.pt"] = body
        row = dataclasses.replace(get_teacher("dasheng"), weights_url=httpd.url + "dasheng_base.pt")
        monkeypatch.setitem(TEACHERS, "dasheng", row)
        first = load_dasheng_teacher("cpu", outputs=REFS, size=TINY)
        second = load_dasheng_teacher("cpu", outputs=REFS, size=TINY)
        assert [path for path, _ in httpd.state.requests] == ["/dasheng_base.pt"]
    audio = _audio(3.0)
    torch.testing.assert_close(first.embed_all(audio), second.embed_all(audio))
    assert (tmp_path / "hub" / "checkpoints" / "dasheng_base.pt").read_bytes() == body

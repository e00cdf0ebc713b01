"""The four pretrained-teacher wrappers keep their contract; run on random weights (no downloads).

Each teacher's real network runs on random audio of 10 s and 29.1 s (batch of 2) at its
sample rate. A teacher whose package is not installed is skipped (visibly), never faked.
The download path is exercised against a local HTTP server (the registry row's URL pointed
at it).
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import importlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from east_ray.catalog.teachers import TEACHERS, get_teacher
from east_ray.errors import BadValueError
from east_ray.teachers.extractor import Extractor
from east_ray.teachers.pretrained import load_openl3, load_vggish
from east_ray.teachers.registry import load_extractor
from east_ray.teachers.weights import WeightsUnavailableError, state_dict_of

DURATIONS = (10.0, 29.1)
EXPECTED_T = {  # the documented frame counts; OpenL3 and PaSST centred, as the authors'
    "vggish": {10.0: 10, 29.1: 30},
    "openl3": {10.0: 11, 29.1: 31},
    "passt": {10.0: 11, 29.1: 31},
    "panns": {10.0: 1, 29.1: 1},
    "dasheng": {10.0: 10, 29.1: 29},
}
PACKAGES = {
    "vggish": "torchvggish",
    "openl3": "torchopenl3",
    "passt": "hear21passt",
    "panns": "panns_hear",
    "dasheng": "dasheng",
}
PRETRAINED = sorted(name for name, info in TEACHERS.items() if info.weights_url)
CPU = torch.device("cpu")


def _audio(sample_rate: int, seconds: float, batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    n_samples = round(seconds * sample_rate)
    return (0.1 * torch.randn(batch, n_samples, generator=generator)).clamp(-1.0, 1.0)


def _build(name: str, seed: int = 1223) -> Extractor:
    pytest.importorskip(PACKAGES[name])
    torch.manual_seed(seed)
    return load_extractor(name, CPU, pretrained=False)


@pytest.fixture(scope="module")
def vggish() -> Extractor:
    return _build("vggish")


@pytest.fixture(scope="module")
def openl3() -> Extractor:
    return _build("openl3")


@pytest.fixture(scope="module")
def passt() -> Extractor:
    return _build("passt")


@pytest.fixture(scope="module")
def panns() -> Extractor:
    return _build("panns")


@pytest.fixture(scope="module")
def dasheng() -> Extractor:
    return _build("dasheng")


def _check_contract(extractor: Extractor, audio: torch.Tensor, seconds: float) -> torch.Tensor:
    """Run the extractor and check what holds for every teacher; return its output."""
    name = extractor.name
    info = get_teacher(name)
    assert (extractor.sample_rate, extractor.dim) == (info.sample_rate, info.dim)
    out = extractor(audio)
    frames = EXPECTED_T[name][seconds]
    assert info.frames(audio.shape[1]) == frames
    assert out.shape == (audio.shape[0], frames, info.dim)
    assert out.dtype == torch.float32
    assert out.device.type == "cpu"
    assert torch.isfinite(out).all()
    assert not torch.equal(out[0], out[1])  # two different clips, two different embeddings
    return out


# ------------------------------------------------------------------------------------------------
# The contract, per teacher


@pytest.mark.parametrize("seconds", DURATIONS)
def test_vggish_contract(vggish: Extractor, seconds: float) -> None:
    audio = _audio(vggish.sample_rate, seconds)
    out = _check_contract(vggish, audio, seconds)
    quantised = out * 256 + 128  # undo the normalisation: the 8-bit PCA output
    assert torch.equal(quantised, quantised.round())
    assert quantised.min() >= 0 and quantised.max() <= 255
    assert out.min() >= -0.5 and out.max() < 0.5
    assert quantised.unique().numel() > 100  # the random network's output is not swamped
    # Frame t is the network on torchvggish's t-th log-mel example, quantised, normalised.
    front_end = pytest.importorskip("torchvggish.vggish_input")
    examples = front_end.waveform_to_examples(audio[1].double().numpy(), 16_000, False)
    with torch.inference_mode():
        expected = (vggish.model(torch.from_numpy(examples).float()) - 128) / 256
    torch.testing.assert_close(out[1], expected)
    # A clip alone gets the embedding it gets in a batch.
    torch.testing.assert_close(vggish(audio[1:]), out[1:])


class _Pooled(nn.Module):
    """Stands in for PaSST's transformer: `PasstBasicWrapper` wants (logits, features)."""

    def forward(self, specs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = specs.mean(dim=(1, 2))
        return pooled, pooled


@pytest.mark.parametrize("n_samples", [1, 23_999, 24_001, 48_000, 70_080, 70_081, 480_000])
def test_openl3_frames_follow_torchopenl3(n_samples: int) -> None:
    """T(N) is the window count of torchopenl3's `center=True` framing at a 0.96 s hop."""
    core = pytest.importorskip("torchopenl3.core")
    count = core._get_num_windows(n_samples, 48_000, 46_080, True)
    assert get_teacher("openl3").frames(n_samples) == count


@pytest.mark.filterwarnings("ignore:.*autocast.*:FutureWarning")
@pytest.mark.filterwarnings("ignore:stft with return_complex=False:UserWarning")
@pytest.mark.parametrize("n_samples", [15_361, 30_719, 30_720, 61_440, 320_000, 931_200])
def test_passt_frames_follow_hear21passt(n_samples: int) -> None:
    """T(N) is the number of hear21passt's timestamp embeddings (960 ms window and hop)."""
    wrapper = pytest.importorskip("hear21passt.wrapper")
    preprocess = pytest.importorskip("hear21passt.models.preprocess")
    mel = preprocess.AugmentMelSTFT(fmax=15_000)
    model = wrapper.PasstBasicWrapper(mel=mel, net=_Pooled(), mode="embed_only").eval()
    with torch.inference_mode():
        out, _ = model.get_timestamp_embeddings(torch.zeros(1, n_samples), 30_720, 30_720)
    assert get_teacher("passt").frames(n_samples) == out.shape[1]


def test_vggish_frames_follow_its_front_end() -> None:
    """The documented T(N) is what torchvggish's own front end produces."""
    front_end = pytest.importorskip("torchvggish.vggish_input")
    for n_samples in (15_600, 31_019, 31_020, 160_000, 465_600):
        examples = front_end.waveform_to_examples(np.zeros(n_samples), 16_000, return_tensor=False)
        assert get_teacher("vggish").frames(n_samples) == examples.shape[0]


@pytest.mark.slow
@pytest.mark.parametrize("seconds", DURATIONS)
def test_openl3_contract(openl3: Extractor, seconds: float) -> None:
    audio = _audio(openl3.sample_rate, seconds)
    out = _check_contract(openl3, audio, seconds)
    # Frame t is the network, minus 2.24, on the t-th window torchopenl3 cuts with
    # center=True, hop_size=0.96 (the authors' call): centred on 0.96 t s.
    utils = pytest.importorskip("torchopenl3.utils")
    windows = utils.preprocess_audio_batch(audio, 48_000, center=True, hop_size=0.96)
    windows = windows.view(audio.shape[0], -1, 1, 48_000)
    assert windows.shape[1] == out.shape[1]
    for t in (0, out.shape[1] - 1):
        with torch.inference_mode():
            expected = openl3.model(windows[:, t]) - 2.24
        torch.testing.assert_close(out[:, t], expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Input image size:UserWarning")  # the direct calls below
@pytest.mark.filterwarnings("ignore:.*autocast.*:FutureWarning")
@pytest.mark.filterwarnings("ignore:stft with return_complex=False:UserWarning")
@pytest.mark.parametrize("seconds", DURATIONS)
def test_passt_contract(passt: Extractor, seconds: float) -> None:
    audio = _audio(passt.sample_rate, seconds)
    out = _check_contract(passt, audio, seconds)
    # Exactly hear21passt's timestamp embeddings with a 960 ms window and hop (the
    # authors' call): reflect-padded, frame t centred on 0.96 t s, not normalised.
    with torch.inference_mode():  # one clip of the two: the network is slow on a CPU
        expected, stamps = passt.model.get_timestamp_embeddings(audio[1:], 30_720, 30_720)
    torch.testing.assert_close(out[1:], expected, atol=1e-4, rtol=1e-4)
    assert stamps[0].tolist() == pytest.approx([960.0 * t for t in range(out.shape[1])])


@pytest.mark.slow
@pytest.mark.parametrize("seconds", DURATIONS)
def test_panns_contract(panns: Extractor, seconds: float) -> None:
    audio = _audio(panns.sample_rate, seconds)
    out = _check_contract(panns, audio, seconds)
    with torch.inference_mode():
        expected = panns.model(audio)["embedding"]  # not normalised
    torch.testing.assert_close(out[:, 0], expected, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", PRETRAINED)
def test_short_clips_give_one_frame(name: str, request: pytest.FixtureRequest) -> None:
    extractor: Extractor = request.getfixturevalue(name)
    out = extractor(_audio(extractor.sample_rate, 0.3, batch=1))
    assert out.shape == (1, 1, extractor.dim)
    assert torch.isfinite(out).all()
    assert extractor.info.frames(1) == 1


def test_bad_audio_is_refused(vggish: Extractor) -> None:
    with pytest.raises(ValueError, match="batch, samples"):
        vggish(torch.zeros(16_000))
    with pytest.raises(ValueError, match="empty"):
        vggish(torch.zeros(2, 0))
    with pytest.raises(TypeError, match="float"):
        vggish(torch.zeros(1, 16_000, dtype=torch.int16))


def test_the_registry_covers_the_pretrained_teachers() -> None:
    assert set(PRETRAINED) == set(EXPECTED_T) == set(PACKAGES)


# The attribute of the package (module, then a callable or constant) holding the URL that
# the package itself downloads: the registry must name the same files.
PACKAGE_URLS = {
    ("vggish", "weights_url"): ("torchvggish.torchvggish", "VGGISH_WEIGHTS"),
    ("vggish", "pca_url"): ("torchvggish.torchvggish", "PCA_PARAMS"),
    ("openl3", "weights_url"): ("torchopenl3.core", "get_model_path"),
    ("passt", "weights_url"): ("hear21passt.models.passt", "default_cfgs"),
}


@pytest.mark.parametrize("teacher,field", sorted(PACKAGE_URLS))
def test_registry_urls_are_the_packages_own(teacher: str, field: str) -> None:
    pytest.importorskip(PACKAGES[teacher])
    module_name, attribute = PACKAGE_URLS[teacher, field]
    value = getattr(importlib.import_module(module_name), attribute)
    if attribute == "get_model_path":
        value = value("mel128", "music", 512)
    elif attribute == "default_cfgs":
        value = value["passt_s_swa_p16_128_ap476"]["url"]
    assert getattr(get_teacher(teacher), field) == value


# ------------------------------------------------------------------------------------------------
# Checkpoints


@pytest.mark.parametrize("name", PRETRAINED)
def test_missing_checkpoint_names_the_path(name: str, tmp_path: Path) -> None:
    pytest.importorskip(PACKAGES[name])
    missing = tmp_path / "nowhere" / "weights.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_extractor(name, CPU, checkpoint=missing)


@pytest.mark.parametrize("name", PRETRAINED)
def test_unreadable_checkpoint_names_the_path(name: str, tmp_path: Path) -> None:
    pytest.importorskip(PACKAGES[name])
    garbage = tmp_path / "weights.pth"
    garbage.write_bytes(b"<html>not a checkpoint</html>")
    with pytest.raises(BadValueError, match=re.escape(str(garbage))):
        load_extractor(name, CPU, checkpoint=garbage)


def test_checkpoint_of_another_model_names_the_path(tmp_path: Path) -> None:
    pytest.importorskip("torchopenl3")
    other = tmp_path / "other.pth"
    torch.save({"layer.weight": torch.zeros(3)}, other)
    with pytest.raises(BadValueError, match=re.escape(f"{other} does not hold openl3 weights")):
        load_openl3(CPU, checkpoint=other)


def test_checkpoint_contradicting_pretrained_false_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("torchopenl3")
    with pytest.raises(BadValueError, match="pretrained=False"):
        load_openl3(CPU, checkpoint=tmp_path / "x.pth", pretrained=False)


def test_openl3_checkpoint_round_trip(openl3: Extractor, tmp_path: Path) -> None:
    path = tmp_path / "torchopenl3_mel128_music_512.pth.tar"
    torch.save(openl3.model.state_dict(), path)
    torch.manual_seed(99)  # the loaded model must not depend on the random init
    loaded = load_openl3(CPU, checkpoint=path)
    audio = _audio(openl3.sample_rate, 2.0, batch=1)
    torch.testing.assert_close(loaded(audio), openl3(audio))


@pytest.mark.slow
def test_vggish_checkpoint_folder_round_trip(vggish: Extractor, tmp_path: Path) -> None:
    """A folder holding the release's two files; the PCA stored as numpy arrays."""
    model = vggish.model
    torch.save(model.get_submodule("network").state_dict(), tmp_path / "vggish-10086976.pth")
    pca = {
        "pca_eigen_vectors": model.get_buffer("pca_matrix").numpy().astype(np.float64),
        "pca_means": model.get_buffer("pca_means").numpy().astype(np.float64).reshape(-1, 1),
    }
    torch.save(pca, tmp_path / "vggish_pca_params-970ea276.pth")
    audio = _audio(vggish.sample_rate, 2.0, batch=1)
    expected = vggish(audio)
    torch.manual_seed(99)
    torch.testing.assert_close(load_vggish(CPU, checkpoint=tmp_path)(audio), expected)
    # The weights file works too when the PCA file sits beside it ...
    weights = tmp_path / "vggish-10086976.pth"
    torch.testing.assert_close(load_vggish(CPU, checkpoint=weights)(audio), expected)
    # ... and its absence is named.
    (tmp_path / "vggish_pca_params-970ea276.pth").unlink()
    with pytest.raises(FileNotFoundError, match="vggish_pca_params-970ea276.pth"):
        load_vggish(CPU, checkpoint=weights)


def test_panns_state_is_unwrapped_from_its_model_key(tmp_path: Path) -> None:
    state = {"fc1.weight": torch.ones(2, 2)}
    path = tmp_path / "Cnn14_mAP=0.431.pth"
    unwrapped = state_dict_of("panns", {"model": state, "iteration": 3}, path)
    assert unwrapped.keys() == state.keys()
    with pytest.raises(BadValueError, match="does not hold panns weights"):
        state_dict_of("panns", {"model": {"fc1.weight": "x"}}, path)


# ------------------------------------------------------------------------------------------------
# Downloads (a local HTTP server stands in for the model hosts)


def _serve_from(monkeypatch: pytest.MonkeyPatch, teacher: str, url: str) -> None:
    """Point the registry row's download URLs at `url`."""
    row = dataclasses.replace(get_teacher(teacher), weights_url=url, pca_url=url)
    monkeypatch.setitem(TEACHERS, teacher, row)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`(base URL, folder it serves)`."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", folder
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_pretrained_weights_are_downloaded_once_and_cached(
    openl3: Extractor,
    server: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, folder = server
    name = "torchopenl3_mel128_music_512.pth.tar"
    torch.save(openl3.model.state_dict(), folder / name)
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    _serve_from(monkeypatch, "openl3", f"{base}/{name}")
    audio = _audio(openl3.sample_rate, 1.5, batch=1)
    torch.testing.assert_close(load_openl3(CPU, pretrained=True)(audio), openl3(audio))
    assert (hub / "checkpoints" / name).is_file()
    assert (hub / "checkpoints" / f"{name}.sha256").is_file()  # trust on first use
    (folder / name).unlink()  # a second load must not need the server
    torch.testing.assert_close(load_openl3(CPU, pretrained=True)(audio), openl3(audio))


@pytest.mark.parametrize("name", PRETRAINED)
def test_unreachable_weights_say_so_and_point_to_checkpoint(
    name: str, server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip(PACKAGES[name])
    base, _ = server
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    url = f"{base}/missing-{name}.pth"
    _serve_from(monkeypatch, name, url)
    with pytest.raises(WeightsUnavailableError, match="checkpoint=") as caught:
        load_extractor(name, CPU, pretrained=True)
    assert url in str(caught.value) and name in str(caught.value)
    left = [p.name for p in (hub / "checkpoints").iterdir() if p.suffix != ".lock"]
    assert left == []  # no partial file left behind (only the lock file)

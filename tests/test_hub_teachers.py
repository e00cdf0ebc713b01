"""Hub teachers (`east_ray.catalog.hub`, `east_ray.teachers.hub`): every row loaded through
the real path (a tiny configuration of the row's model class, saved with save_pretrained and
read back with from_pretrained, offline), frame counts, layer selection, alignment with both
students, and the errors of a missing cache, a wrong checkpoint and a bad layer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import transformers

from east_ray.catalog import TEACHERS, get_teacher
from east_ray.catalog.hub import HUB_MODELS
from east_ray.catalog.teachers import hub_teacher
from east_ray.config import SpecError, parse_study
from east_ray.errors import BadValueError, UnknownNameError
from east_ray.losses import align
from east_ray.teachers import load_extractor
from east_ray.teachers.__main__ import main
from east_ray.teachers.embeddings import extract_teachers
from east_ray.teachers.hub import pooling
from east_ray.teachers.weights import WeightsUnavailableError
from tests.hub_fixtures import tiny_model, tiny_row
from tests.release_fixtures import tiny_study

HUB = sorted(HUB_MODELS)


@pytest.fixture(params=HUB)
def tiny(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, Path]:
    """A hub row pointed at a tiny model of its class, saved in a folder; the hub cut off."""
    name = request.param
    torch.manual_seed(0)
    net, features, hidden = tiny_model(name)
    folder = tmp_path / name
    net.save_pretrained(folder)
    features.save_pretrained(folder)
    monkeypatch.setitem(TEACHERS, name, hub_teacher(name, tiny_row(name, hidden)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return name, folder


def _audio(info_rate: int, seconds: float, batch: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return 0.1 * torch.randn(batch, round(seconds * info_rate), generator=gen)


@pytest.mark.parametrize("name", HUB)
def test_each_hub_row_states_its_model_licence_and_frame_grid(name: str) -> None:
    row = get_teacher(name)
    model = HUB_MODELS[name]
    assert row.hub is model and row.licence == model.licence and row.layer == model.output
    assert model.revision is None or len(model.revision) == 40
    assert row.frames(10 * row.sample_rate) == 10 // model.frame_seconds
    assert row.frames(round(29.1 * row.sample_rate)) == int(29.1 // model.frame_seconds)
    assert row.frames(1) == 1  # the feature extractor pads a short clip
    # a native frame every hop fills every frame of the grid
    if model.native_hop is not None:
        assert model.native_hop < model.frame_seconds * model.sample_rate
    assert model.chunk_seconds % model.frame_seconds == 0
    assert get_teacher(f"{name}@0").dim == model.hidden[0]


def test_tiny_models_load_offline_and_give_every_layer_from_one_pass(
    tiny: tuple[str, Path],
) -> None:
    name, folder = tiny
    row = get_teacher(name)
    refs = tuple(f"{name}@{layer}" for layer, _ in row.layers)
    extractor = load_extractor(name, "cpu", folder, outputs=refs)
    for seconds in (10.0, 6.0, 0.5):
        audio = _audio(row.sample_rate, seconds)
        out = extractor.embed_all(audio)
        frames = row.frames(audio.shape[1])
        assert [tuple(out[r].shape) for r in refs] == [(2, frames, d) for _, d in row.layers]
        assert all(torch.isfinite(v).all() for v in out.values())
    # one layer alone equals that layer of the joint pass
    alone = load_extractor(refs[1], "cpu", folder)(audio)
    assert torch.allclose(alone, out[refs[1]], atol=1e-5)
    # a clip is its frames: the first 10 s of a 20 s clip embed as that clip alone would
    # (whole chunks; CLAP's and AST's chunks are 10 s, Whisper's and MERT's longer)
    model = HUB_MODELS[name]
    if model.chunk_seconds == 10.0:
        long = _audio(row.sample_rate, 20.0)
        head = extractor.embed_all(long[:, : 10 * row.sample_rate])[refs[-1]]
        whole = extractor.embed_all(long)[refs[-1]]
        assert whole.shape[1] == 2 * head.shape[1]
        assert torch.allclose(whole[:, : head.shape[1]], head, atol=1e-5)


def test_random_weights_read_the_config_only(tiny: tuple[str, Path]) -> None:
    name, folder = tiny
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    extractor = load_extractor(name, "cpu", folder, pretrained=False)
    row = get_teacher(name)
    assert extractor(_audio(row.sample_rate, 2.0)).shape[-1] == row.dim
    with pytest.raises(BadValueError, match="no file named|does not appear"):
        load_extractor(name, "cpu", folder)


def test_a_mert_config_loads_into_hubert_unless_it_uses_mert_only_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MERT's hub config names its own model type and class and carries its extra options,
    off; the weights load into HubertModel as they are. One with an option on is refused."""
    import json

    name = "mert_v1_95m"
    torch.manual_seed(0)
    net, features, hidden = tiny_model(name)
    net.save_pretrained(tmp_path)
    features.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    mert = {
        **config,
        "model_type": "mert_model",
        "architectures": ["MERTModel"],
        "auto_map": {"AutoModel": "modeling_MERT.MERTModel"},
        "feature_extractor_cqt": False,
        "deepnorm": False,
        "attention_relax": -1.0,
    }
    (tmp_path / "config.json").write_text(json.dumps(mert))
    monkeypatch.setitem(TEACHERS, name, hub_teacher(name, tiny_row(name, hidden)))
    audio = _audio(24_000, 3.0)
    out = load_extractor(name, "cpu", tmp_path)(audio)
    inputs = features(list(audio.numpy()), sampling_rate=24_000, return_tensors="pt")
    with torch.no_grad():
        net.eval()
        states = net(inputs["input_values"], output_hidden_states=True).hidden_states[-1]
    assert torch.allclose(out[:, 0], states[:, :75].mean(dim=1), atol=1e-5)  # frame 0: 0-1 s
    (tmp_path / "config.json").write_text(json.dumps({**mert, "deepnorm": True}))
    with pytest.raises(BadValueError, match=r"turns on \['deepnorm'\]"):
        load_extractor(name, "cpu", tmp_path)


def test_a_checkpoint_of_other_sizes_is_refused(
    tiny: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, folder = tiny
    monkeypatch.setitem(TEACHERS, name, hub_teacher(name, HUB_MODELS[name]))  # full sizes
    with pytest.raises(BadValueError, match=f"{folder} has hidden states of sizes"):
        load_extractor(name, "cpu", folder)


def test_the_audio_tower_of_a_whole_clap_checkpoint_is_complete(tmp_path: Path) -> None:
    """The row reads ClapAudioModelWithProjection out of a ClapModel checkpoint: every one of
    its weights is in the file (a prefix mismatch would leave them random, silently)."""
    net, _, _ = tiny_model("clap_music")
    net.save_pretrained(tmp_path)
    audio, info = transformers.ClapAudioModelWithProjection.from_pretrained(
        tmp_path, output_loading_info=True
    )
    assert info["missing_keys"] == set() or info["missing_keys"] == []
    full = net.state_dict()
    for key, value in audio.state_dict().items():
        assert torch.equal(value, full[key]), key


def test_a_model_missing_from_the_cache_offline_names_it_and_how_to_fetch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "ast"
    pinned = dataclasses.replace(HUB_MODELS[name], revision="0" * 40)
    monkeypatch.setitem(TEACHERS, name, hub_teacher(name, pinned))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(WeightsUnavailableError) as error:
        load_extractor(name, "cpu")
    message = str(error.value)
    assert pinned.repo in message and "0" * 40 in message
    assert f"python -m east_ray.teachers fetch --teacher {name}" in message
    assert main(["fetch", "--teacher", name]) == 2  # offline: the same error, nothing fetched
    assert pinned.repo in capsys.readouterr().err
    assert not (tmp_path / "hf" / "hub").exists() or not any(
        (tmp_path / "hf" / "hub").rglob("*.safetensors")
    )


def test_an_unpinned_row_loads_only_from_a_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "mert_v1_330m"
    unpinned = dataclasses.replace(HUB_MODELS[name], revision=None)
    monkeypatch.setitem(TEACHERS, name, hub_teacher(name, unpinned))
    with pytest.raises(BadValueError, match="no pinned revision yet"):
        load_extractor(name, "cpu")


def test_an_unknown_layer_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match="whisper_base@0, whisper_base@1, .*whisper_base@6"):
        get_teacher("whisper_base@7")


def test_pooling_averages_the_native_frames_centred_in_each_frame() -> None:
    mert = HUB_MODELS["mert_v1_95m"]
    weights = pooling(mert, 749, 240_000)  # HuBERT's 749 frames for 10 s at 24 kHz
    assert weights.shape == (10, 749)
    assert torch.allclose(weights.sum(dim=1), torch.ones(10))
    # native frame k is centred on 200 + 320 k: frame 0 takes k = 0 .. 74
    assert (weights[0] > 0).nonzero().flatten().tolist() == list(range(75))
    ast = HUB_MODELS["ast"]
    # 101 time patches of a 10 s chunk (1024 fbank frames), the padded ones past 10 s unused
    used = (pooling(ast, 101, 160_000).sum(dim=0) > 0).nonzero().flatten().tolist()
    assert used == [t for t in range(101) if 1600 * t + 1480 < 160_000]


@pytest.mark.parametrize("name", [*HUB, "dasheng"])
@pytest.mark.parametrize(
    ("seconds", "stages"),
    [(10.0, [(62, 0.16)] * 3), (29.1, [(30, 0.96), (15, 1.92), (15, 1.92)])],  # both students
)
def test_hub_frames_align_with_both_students(
    name: str, seconds: float, stages: list[tuple[int, float]]
) -> None:
    row = get_teacher(name)
    n_t = row.frames(round(seconds * row.sample_rate))
    teacher = torch.arange(n_t, dtype=torch.float64).view(1, n_t, 1)
    for n_s, hop_s in stages:
        student = torch.arange(n_s, dtype=torch.float64).view(1, n_s, 1)
        for alignment in ("authors", "time"):
            s, t = align(
                student,
                hop_s,
                teacher,
                row.hop_seconds,
                alignment=alignment,
                teacher_first_centre=row.first_centre_seconds,
            )
            assert s.shape[1] == t.shape[1] >= min(n_s, n_t)
            assert t[0, :, 0].diff().min() >= 0  # in time order
            # the pairs reach the end of the shorter sequence, within one frame
            covered = min(n_t * row.hop_seconds, n_s * hop_s)
            assert (t[0, -1, 0] + 1) * row.hop_seconds >= covered - max(hop_s, row.hop_seconds)


def test_non_commercial_weights_need_an_explicit_opt_in(tmp_path: Path) -> None:
    import tomllib

    text = tiny_study("hub").replace('teachers = ["handcrafted"]', 'teachers = ["mert_v1_95m@4"]')
    with pytest.raises(SpecError, match=r"grid.teachers\[0\]: .*CC BY-NC 4.0.*non_commercial"):
        parse_study(tomllib.loads(text))
    accepted = parse_study(tomllib.loads("non_commercial_weights = true\n" + text))
    assert accepted.grid.teachers == ("mert_v1_95m@4",)
    with pytest.raises(BadValueError, match="--accept-non-commercial"):
        extract_teachers(tmp_path, ["mert_v1_95m@4"])  # refused before anything is read
    assert not any(tmp_path.iterdir())
    assert (
        main(
            [
                "embed",
                str(tmp_path / "a.wav"),
                "--out",
                str(tmp_path / "e.npy"),
                "--teacher",
                "mert_v1_95m",
            ]
        )
        == 2
    )
    assert not any(tmp_path.iterdir())

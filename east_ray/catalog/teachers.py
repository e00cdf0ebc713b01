"""The teachers' catalog rows: one per teacher, everything known about it unloaded.

A teacher embeds a mono clip at its `sample_rate` as a sequence `(T, D)` of frames `hop`
samples apart, each seeing `window` samples; `hop` is None for a clip-level teacher that
emits one vector per clip (PANNs, whose `window` is then the shortest clip it embeds).
Where frame t lies is the row's `framing`, the one its package (and so the EAsT authors)
used:

- "start": frame t covers the `window` samples from `t · hop`; a trailing part shorter
  than a window is dropped, a clip shorter than one window is zero-padded to one window
  (or refused by a teacher with `pads_short_clips=False`). VGGish, musicnn, handcrafted.
- "centred_zeros": openl3 / torchopenl3 `center=True`: half a window of zeros in front,
  so frame t is centred on `t · hop`, and zeros at the end up to the last frame that
  still holds clip samples. OpenL3: 11 frames for 10 s, 31 for 29.1 s.
- "centred_reflect": hear21passt's timestamp embeddings: half a window reflected at each
  end, frame t centred on `t · hop`, a remainder shorter than a hop dropped. PaSST: 11
  frames for 10 s, 31 for 29.1 s.

So `T` depends on the clip's length only (`TeacherInfo.frames`), and `hop_seconds` (with
`first_centre_seconds`) puts student and teacher on one frame grid in the losses.

`builder` names the function that builds the teacher's `Extractor` (`module:function`),
imported only by `east_ray.teachers.load_extractor`: the optional packages of the
pretrained teachers are needed only for those teachers, and the catalog imports no torch.
`display` is the tables' name of the teacher, and `in_paper` marks the paper's four
teachers, whose columns come first. `licence` is the licence of the weights the row
loads, as their publisher states it.

Layers. A teacher whose network has several outputs worth teaching from lists them in
`layers`, `(layer, dim)` on its frame grid; its own output (`dim`) is `output`, else the
first. A study names
one as `<teacher>@<layer>` (`musicnn@mean_pool`); `get_teacher` gives that reference a
row of its own (its name, dim and `layer`), and everything keyed by a teacher's name
(stored embeddings, cells, tables, results) keys by the reference. The row's own output
keeps the bare name: `musicnn@penultimate` is `musicnn` (`canonical_teacher`).

Teacher sets. A cell may learn from several teachers at once: its teacher is a set
`<teacher>+<teacher>` (`passt+vggish`, layers allowed), whose regularizers are averaged
with equal weight, or with the weights it names (`passt=0.7+vggish=0.3`; `members` and
`member_weights` split it; a set has no row of its own). Extraction and
Teacher_LR stay per member; KD toward a set averages the members' probabilities.

Hub teachers (`east_ray.catalog.hub`: MERT, AST, Whisper's encoder, CLAP) are rows built
from their `HubModel`, which they keep as `hub`; their layers are the hidden states.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from east_ray.catalog.hub import HUB_MODELS, HubModel
from east_ray.errors import BadValueError, UnknownNameError

Framing = Literal["start", "centred_zeros", "centred_reflect"]


@dataclass(frozen=True)
class TeacherInfo:
    """What is known about a teacher without loading it."""

    name: str
    dim: int
    sample_rate: int
    window: int  # samples a frame covers (clip-level: the shortest clip, else padded)
    hop: int | None  # samples between two frames; None: one vector per clip
    description: str
    builder: str  # "module:function" building its Extractor (see `load_extractor`)
    pads_short_clips: bool = True
    framing: Framing = "start"  # where frame t lies (module docstring)
    # z-score each dimension with training-split statistics when loaded for training
    standardise: bool = False
    weights_url: str | None = None  # what its package downloads; fetched when pretrained
    pca_url: str | None = None  # VGGish's PCA parameters, fetched beside its weights
    display: str = ""  # the tables' name ("" : `name`)
    in_paper: bool = False  # one of the paper's four teachers
    licence: str = ""  # of the weights it loads ("none": it has none)
    # outputs a reference `<name>@<layer>` may select, (layer, dim), in depth order
    layers: tuple[tuple[str, int], ...] = ()
    output: str = ""  # the layer the bare name stands for ("": the first of `layers`)
    selected: str | None = None  # the layer a reference's row selects (`get_teacher`)
    hub: HubModel | None = None  # a hub teacher's model (`east_ray.catalog.hub`)

    @property
    def display_name(self) -> str:
        """How the tables write the teacher (`passt` → `PaSST`)."""
        return self.display or self.name

    @property
    def base(self) -> str:
        """The teacher whose network a reference's row runs (`musicnn` of `musicnn@taggram`)."""
        return self.name.partition("@")[0]

    @property
    def non_commercial(self) -> bool:
        """Whether its weights' licence forbids commercial use (used only on an opt-in)."""
        return self.hub is not None and self.hub.non_commercial

    @property
    def own_layer(self) -> str | None:
        """The layer the bare name stands for; None for a teacher with one output."""
        return self.output or (self.layers[0][0] if self.layers else None)

    @property
    def layer(self) -> str | None:
        """The output this row stands for, where the teacher has several; else None."""
        return self.selected or self.own_layer

    @property
    def hop_seconds(self) -> float | None:
        """Seconds between two frames; None for a clip-level teacher."""
        return None if self.hop is None else self.hop / self.sample_rate

    @property
    def centred(self) -> bool:
        """Whether frame t is centred on `t · hop` (half a window of padding in front)."""
        return self.framing != "start"

    @property
    def first_centre_seconds(self) -> float:
        """Seconds from the clip's start to the centre of frame 0."""
        return 0.0 if self.centred else self.window / 2 / self.sample_rate

    def frames(self, n_samples: int) -> int:
        """T for a clip of `n_samples` samples at `sample_rate` (0: too short to embed)."""
        if n_samples < 1:
            raise BadValueError(f"{self.name}: a clip needs at least one sample, got {n_samples}")
        if self.hop is None or self.framing == "start":
            if n_samples < self.window:
                return 1 if self.pads_short_clips else 0
            return 1 if self.hop is None else 1 + (n_samples - self.window) // self.hop
        half = self.window // 2
        if self.framing == "centred_zeros":
            # torchopenl3's _get_num_windows: n + half samples, a last partial frame kept
            return 1 + max(0, -(-(n_samples + half - self.window) // self.hop))
        # centred_reflect: reflection needs more samples than it mirrors, so a shorter
        # clip is zero-padded first
        return 1 + (max(n_samples, half + 1) + 2 * half - self.window) // self.hop


def hub_teacher(name: str, model: HubModel) -> TeacherInfo:
    """A hub model's row: its hidden states pooled to `frame_seconds` frames from the start
    of the clip, a clip shorter than one frame padded by its feature extractor."""
    frame = round(model.frame_seconds * model.sample_rate)
    dims = dict(model.layers)
    revision = model.revision or "revision not pinned"
    return TeacherInfo(
        name,
        dim=dims[model.output],
        sample_rate=model.sample_rate,
        window=frame,
        hop=frame,
        description=f"{model.repo} ({revision}), hidden states per {model.frame_seconds:g} s",
        builder="east_ray.teachers.hub:load_hub_teacher",
        licence=model.licence,
        layers=model.layers,
        output=model.output,
        hub=model,
    )


_VGGISH_RELEASE = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/"

TEACHERS: dict[str, TeacherInfo] = {
    info.name: info
    for info in (
        TeacherInfo(
            "vggish",
            display="VGGish",
            in_paper=True,
            dim=128,
            sample_rate=16_000,
            # examples of 96 log-mel frames (25 ms window, 10 ms hop), hop 96 frames
            window=400 + 95 * 160,
            hop=96 * 160,
            description="VGGish, 8-bit PCA output, (x - 128) / 256",
            builder="east_ray.teachers.pretrained:load_vggish",
            weights_url=_VGGISH_RELEASE + "vggish-10086976.pth",
            pca_url=_VGGISH_RELEASE + "vggish_pca_params-970ea276.pth",
            licence="Apache-2.0 (Google's VGGish release in tensorflow/models, converted)",
        ),
        TeacherInfo(
            "openl3",
            display="OpenL3",
            in_paper=True,
            dim=512,
            sample_rate=48_000,
            window=48_000,
            hop=46_080,
            description="OpenL3 mel128/music/512, x - 2.24",
            framing="centred_zeros",
            builder="east_ray.teachers.pretrained:load_openl3",
            weights_url="https://github.com/torchopenl3/torchopenl3-models/raw/master/"
            "torchopenl3_mel128_music_512.pth.tar",
            licence="CC BY 4.0 (OpenL3's released weights)",
        ),
        TeacherInfo(
            "passt",
            display="PaSST",
            in_paper=True,
            dim=768,
            sample_rate=32_000,
            window=30_720,
            hop=30_720,
            description="PaSST, 0.96 s window and hop",
            framing="centred_reflect",
            builder="east_ray.teachers.pretrained:load_passt",
            weights_url="https://github.com/kkoutini/PaSST/releases/download/v0.0.1-audioset/"
            "passt-s-f128-p16-s10-ap.476-swa.pt",
            licence="not stated (kkoutini/PaSST's release and README name none)",
        ),
        TeacherInfo(
            "panns",
            display="PANNs",
            in_paper=True,
            dim=2048,
            sample_rate=32_000,
            window=32_000,  # shorter clips are padded to 1 s, as panns-hear does
            hop=None,
            description="PANNs CNN14, one clip-level vector",
            builder="east_ray.teachers.pretrained:load_panns",
            # Zenodo record 3987831, the file panns-inference downloads
            weights_url="https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth?download=1",
            licence="MIT (audioset_tagging_cnn's LICENSE.MIT; the Zenodo record's terms unread)",
        ),
        TeacherInfo(
            "musicnn",
            dim=200,
            sample_rate=16_000,
            # patches of 187 frames of a centred STFT with hop 256: the last frame of
            # patch t is centred on sample 256 (187 t + 186), which the clip must reach
            window=186 * 256,
            hop=187 * 256,
            description="musicnn MSD model, penultimate layer per 3 s patch (PyTorch port)",
            builder="east_ray.teachers.musicnn:load_musicnn_teacher",
            pads_short_clips=False,
            licence="ISC (the musicnn package, its weights included)",
            # the back end's outputs per patch: its penultimate dense layer, the mean and
            # max over time of the mid-end features it reads, and the 50 tag probabilities
            layers=(("penultimate", 200), ("mean_pool", 753), ("max_pool", 753), ("taggram", 50)),
        ),
        TeacherInfo(
            "handcrafted",
            dim=48,
            sample_rate=16_000,
            window=15_360,
            hop=15_360,
            description="MFCC and spectral statistics per 0.96 s, standardised",
            builder="east_ray.teachers.handcrafted:load_handcrafted",
            pads_short_clips=False,
            standardise=True,
            licence="none (no weights)",
        ),
        TeacherInfo(
            "dasheng",
            display="Dasheng",
            dim=768,
            sample_rate=16_000,
            window=16_000,  # its 25 Hz patches pooled to 1 s frames, as the hub teachers'
            hop=16_000,
            description="Dasheng base (the dasheng package), block outputs per 1 s",
            builder="east_ray.teachers.dasheng:load_dasheng_teacher",
            weights_url="https://zenodo.org/records/11511780/files/dasheng_base.pt?download=1",
            licence="Apache-2.0 (the dasheng package; the Zenodo record's terms unread)",
            layers=tuple((str(i), 768) for i in range(13)),
            output="12",
        ),
        *(hub_teacher(name, model) for name, model in HUB_MODELS.items()),
    )
}


def get_teacher(name: str) -> TeacherInfo:
    """The row of teacher `name`, or of a reference `<teacher>@<layer>` (module doc); an
    unknown name lists the known teachers, an unknown layer the teacher's layers."""
    base, at, layer = name.partition("@")
    if base not in TEACHERS:
        known = ", ".join(sorted(TEACHERS))
        raise UnknownNameError(f"unknown teacher {base!r}; known teachers: {known}")
    row = TEACHERS[base]
    if not at:
        return row
    dims = dict(row.layers)
    if layer not in dims:
        valid = ", ".join(f"{base}@{n}" for n in dims) or f"none: use {base}"
        raise UnknownNameError(
            f"teacher {name!r}: {base} has no layer {layer!r}; its layers: {valid}"
        )
    if layer == row.own_layer:
        return row
    return dataclasses.replace(
        row,
        name=name,
        dim=dims[layer],
        selected=layer,
        display=f"{row.display_name}@{layer}",
        in_paper=False,
        description=f"{row.description}; layer {layer}",
    )


def check_licence(name: str, accepted: bool, how: str) -> None:
    """Refuse teacher `name` (or a set's member) if its weights are non-commercial and
    that was not `accepted` (`how` says how to accept it)."""
    for member in members(name):
        row = get_teacher(member)
        if row.non_commercial and not accepted:
            raise BadValueError(
                f"teacher {member}: its weights are licensed {row.licence}, for non-commercial "
                f"use only; {how} to use them"
            )


def find_teacher(name: str) -> TeacherInfo | None:
    """`get_teacher(name)`, or None for a name no row answers (a results frame's "-")."""
    try:
        return get_teacher(name)
    except UnknownNameError:
        return None


SET = "+"  # joins the members of a teacher set
WEIGHT = "="  # a member's weight in a set: `passt=0.7+vggish=0.3` (no glob character)


def _parts(name: str) -> list[tuple[str, str | None]]:
    """(member, its weight as written or None) of a teacher or a set."""
    parts = []
    for part in name.split(SET):
        member, star, weight = part.partition(WEIGHT)
        parts.append((member, weight if star else None))
    return parts


def members(name: str) -> tuple[str, ...]:
    """The teachers a cell's teacher names: itself, or each member of a set `a+b`."""
    return tuple(member for member, _ in _parts(name))


def member_weights(name: str) -> tuple[float, ...]:
    """Each member's share of a set's regularizer, summing to 1: equal, or the weights the
    set names (`passt=0.7+vggish=0.3`), normalised."""
    written = [w for _, w in _parts(name)]
    if all(w is None for w in written):
        return tuple(1.0 / len(written) for _ in written)
    values = [float(w) for w in written if w is not None]
    return tuple(v / sum(values) for v in values)


def canonical_teacher(name: str) -> str:
    """The name a teacher reference (or a set of them) is stored and tabled under
    (`musicnn@penultimate`, the row's own output, is `musicnn`); an unknown member names
    itself, and a set naming one teacher twice, or weighting only some members or with a
    weight that is not a positive number, is refused."""
    parts = _parts(name)
    names = [get_teacher(m).name for m, _ in parts]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BadValueError(f"teacher set {name!r} names {', '.join(twice)} twice; list it once")
    weights = [w for _, w in parts]
    if all(w is None for w in weights):
        return SET.join(names)
    if len(parts) == 1 or any(w is None or not _positive(w) for w in weights):
        raise BadValueError(
            f"teacher set {name!r}: give every member of a set of two or more a positive "
            "weight (`passt=0.7+vggish=0.3`), or none for equal weights"
        )
    return SET.join(f"{n}{WEIGHT}{float(w or 0):g}" for n, w in zip(names, weights, strict=True))


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def teacher_display(name: str) -> str:
    """How the tables write a teacher or a set (`passt+vggish` → `PaSST+VGGish`,
    `passt=0.7+vggish=0.3` → `PaSST×0.7+VGGish×0.3`); a name no row answers is written as
    it is."""
    shown = []
    for member, weight in _parts(name):
        row = find_teacher(member)
        text = row.display_name if row else member
        shown.append(text if weight is None else f"{text}×{weight}")
    return SET.join(shown)

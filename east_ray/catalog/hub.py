"""Teachers loaded from the Hugging Face hub with `transformers`' own model classes: one
`HubModel` row each, everything about the model that the extraction needs.

Audio goes through the model's own feature extractor (`features`), in chunks of at most
`chunk_seconds` (the longest input the model takes: AST's 1024 frames, Whisper's 30 s,
CLAP's 10 s), and every hidden state comes out of one forward pass. A hidden state is a
sequence of the model's own frames, `native_hop` samples apart, frame k centred on
`native_first_centre + k · native_hop` within its chunk; it is stored pooled to the
teacher's grid: frame t of a teacher with `frame_seconds` s is the mean of the native
frames centred in [t, t + 1) · frame_seconds, so a 10 s clip has 10 frames of 1 s, the
rate VGGish's 0.96 s already has in the losses. CLAP's hidden states are 2-D maps of a
whole 10 s window (`native_hop` None): one frame per window, each map averaged.

The revisions are commits other projects pin these repositories at (public code that
downloads them); this machine cannot reach the hub to confirm them, which
`python -m east_ray.teachers revisions` does where it can.

A layer is named by its hidden state's index (`"0"` is the input to the first block);
the bare teacher name is its last. The weights are fetched once at the pinned `revision`
into the Hugging Face cache (`HF_HOME`); `revision` None means the row has not been pinned
yet (the hub is unreachable where this table was written): such a row loads only from a
local folder (`--checkpoint`) until `python -m east_ray.teachers revisions` is run on a
machine with hub access and its hashes are written here. Weights under a non-commercial
licence load only with an explicit opt-in (`non_commercial`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

Family = Literal["hubert", "ast", "whisper", "clap"]


@dataclass(frozen=True)
class HubModel:
    """One hub teacher (module doc)."""

    repo: str  # "owner/name" on the hub
    revision: str | None  # the commit the weights are fetched at; None: not pinned yet
    family: Family  # how its input is made and its hidden states are read
    model_class: str  # transformers class the weights load into ("HubertModel")
    features: str  # transformers feature extractor class (audio → model input)
    sample_rate: int
    hidden: tuple[int, ...]  # each hidden state's dimension, by index
    chunk_seconds: float  # the longest audio one forward pass takes
    native_hop: int | None  # samples between the model's own frames; None: one per chunk
    native_first_centre: int  # sample on which its frame 0 is centred
    frame_seconds: float  # the stored grid's hop and window
    licence: str  # of the weights, as the model card states it
    non_commercial: bool = False
    extra_outputs: tuple[tuple[str, int], ...] = ()  # outputs besides the hidden states

    @property
    def layers(self) -> tuple[tuple[str, int], ...]:
        """`(name, dim)` of every output a reference may select, in depth order."""
        return tuple((str(i), d) for i, d in enumerate(self.hidden)) + self.extra_outputs

    @property
    def output(self) -> str:
        """The layer the bare teacher name stands for: the last hidden state, or CLAP's
        projected embedding."""
        return self.extra_outputs[-1][0] if self.extra_outputs else str(len(self.hidden) - 1)


# MERT-v1's code is HuBERT's with options these checkpoints leave off, so they load into
# transformers' HubertModel, not the repository's trust_remote_code MERTModel (README)
_MERT_95M = HubModel(
    repo="m-a-p/MERT-v1-95M",
    # the revision other projects pin, its card then CC BY-NC 4.0 (earlier ones said MIT)
    revision="12af15fef9d0ac838c3f475bfbbf26d2060dd4f5",
    family="hubert",
    model_class="HubertModel",
    features="Wav2Vec2FeatureExtractor",
    sample_rate=24_000,
    hidden=(768,) * 13,
    chunk_seconds=30.0,
    native_hop=320,  # conv strides 5·2⁶ at 24 kHz: 75 Hz
    native_first_centre=200,  # receptive field 400 samples
    frame_seconds=1.0,
    licence="CC BY-NC 4.0 (model card)",
    non_commercial=True,
)

HUB_MODELS: dict[str, HubModel] = {
    "mert_v1_95m": _MERT_95M,
    "mert_v1_330m": dataclasses.replace(
        _MERT_95M,
        repo="m-a-p/MERT-v1-330M",
        revision=None,  # no current revision found; older cards said MIT
        hidden=(1024,) * 25,
    ),
    "ast": HubModel(
        repo="MIT/ast-finetuned-audioset-10-10-0.4593",
        revision="f826b80d28226b62986cc218e5cec390b1096902",
        family="ast",
        model_class="ASTModel",
        features="ASTFeatureExtractor",
        sample_rate=16_000,
        hidden=(768,) * 13,
        chunk_seconds=10.0,  # 1024 frames of 10 ms hold 10.24 s
        # patch t spans fbank frames 10t .. 10t + 15 (25 ms windows, 10 ms hop)
        native_hop=1600,
        native_first_centre=1480,
        frame_seconds=1.0,
        licence="BSD-3-Clause (model card)",
    ),
    "whisper_base": HubModel(
        repo="openai/whisper-base",
        revision="e37978b90ca9030d5170a5c07aadb050351a65bb",
        family="whisper",
        model_class="WhisperModel",  # its encoder only
        features="WhisperFeatureExtractor",
        sample_rate=16_000,
        hidden=(512,) * 7,
        chunk_seconds=30.0,  # the encoder's fixed window; a shorter chunk is zero-padded
        native_hop=320,  # 1500 frames per 30 s
        native_first_centre=0,  # centred STFT, then a stride-2 convolution
        frame_seconds=1.0,
        licence="Apache-2.0 (model card)",
    ),
    "clap_music": HubModel(
        repo="laion/larger_clap_music",
        revision="a0b4534a14f58e20944452dff00a22a06ce629d1",
        family="clap",
        # the audio tower and projection of the ClapModel checkpoint (its text tower unread)
        model_class="ClapAudioModelWithProjection",
        features="ClapFeatureExtractor",
        sample_rate=48_000,
        hidden=(128, 256, 512, 1024, 1024),
        chunk_seconds=10.0,
        native_hop=None,  # 2-D maps of the whole window: one frame per 10 s
        native_first_centre=0,
        frame_seconds=10.0,
        licence="Apache-2.0 (model card)",
        # its converted checkpoint is reported to give near-constant embeddings
        # (embeddings-benchmark/mteb#5069): check its layers before trusting a result
        extra_outputs=(("proj", 512),),
    ),
}

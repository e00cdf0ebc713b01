"""Tiny models of the hub teachers' architectures (`east_ray.catalog.hub`), for tests and the
extraction benchmark: the class each hub repository holds, a few thousand parameters."""

from __future__ import annotations

import dataclasses
from typing import Any

import transformers

from east_ray.catalog.hub import HUB_MODELS, HubModel


def tiny_model(name: str) -> tuple[Any, Any, tuple[int, ...]]:
    """A tiny model of the row's architecture (the class its hub repo holds), its feature
    extractor, and its hidden-state sizes."""
    t: Any = transformers
    family = HUB_MODELS[name].family
    small = {"num_attention_heads": 2, "intermediate_size": 32}
    if family == "hubert":
        config = t.HubertConfig(
            hidden_size=16,
            num_hidden_layers=2,
            conv_dim=(8,) * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
            conv_bias=False,
            do_stable_layer_norm=name == "mert_v1_330m",
            **small,
        )
        features = t.Wav2Vec2FeatureExtractor(sampling_rate=24_000, do_normalize=True)
        return t.HubertModel(config), features, (16,) * 3
    if family == "ast":
        config = t.ASTConfig(hidden_size=16, num_hidden_layers=2, **small)
        return t.ASTModel(config), t.ASTFeatureExtractor(), (16,) * 3
    if family == "whisper":
        config = t.WhisperConfig(
            d_model=16,
            encoder_layers=2,
            encoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_layers=1,
            decoder_attention_heads=2,
            decoder_ffn_dim=32,
            max_target_positions=16,
        )
        return t.WhisperModel(config), t.WhisperFeatureExtractor(), (16,) * 3
    audio = {
        "depths": [1, 1, 1, 1],
        "num_attention_heads": [1, 1, 1, 1],
        "patch_embeds_hidden_size": 8,
        "hidden_size": 64,
    }
    text = {"hidden_size": 16, "num_hidden_layers": 1, "vocab_size": 64, **small}
    config = t.ClapConfig(audio_config=audio, text_config=text, projection_dim=8)
    # the whole ClapModel, as the hub repo holds it: the row reads its audio side only
    return t.ClapModel(config), t.ClapFeatureExtractor(), (8, 16, 32, 64, 64)


def tiny_row(name: str, hidden: tuple[int, ...]) -> HubModel:
    model = HUB_MODELS[name]
    extra = tuple((layer, 8) for layer, _ in model.extra_outputs)
    return dataclasses.replace(model, hidden=hidden, extra_outputs=extra)

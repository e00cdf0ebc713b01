"""The fixed facts of a SynthMIC release: format name and version, clip and audio format, and
the seed streams. Changing any of them changes what a given seed renders."""

from __future__ import annotations

FORMAT_NAME = "SynthMIC"
FORMAT_VERSION = 1

CLIP_SECONDS = 10.0
SAMPLE_RATE = 44_100
CHANNELS = 2  # the mix is stereo: every stem is rendered in stereo with its own pan

# Seed-sequence streams, so that plan, tracks, labels and splits draw independently.
PLAN_STREAM, TRACK_STREAM, LABEL_STREAM, SPLIT_STREAM = 1, 2, 3, 4

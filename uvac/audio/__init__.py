"""Audio in, features out: the lowest layer of the engine.

Decoding any supported file to mono float samples (`decoding`), folders of recordings with
their labels and splits (`datasets`), the held-out part training never sees (`holdout`),
the feature settings (`feature_config`), log-mel spectrograms (`log_mel`), the pretrained
encoders (`encoders`), the time-context windows both front-ends produce (`windows`,
`features`, `embedding_windows`), and the on-disk store of embeddings every job reads them
through (`embedding_cache`, `embedded_items`); what a stretch of audio holds beside its
cluster: its level and digital silence (`level`) and speech (`speech_activity`, a
voice-activity detector).

Imports only the shared leaves (`uvac.errors`, `uvac.hashing`).
"""

from __future__ import annotations

from uvac.audio.datasets import (
    AUDIO_EXTENSIONS,
    LABELS_FILE,
    AudioFolder,
    DatasetItem,
    DigestEntry,
    Split,
    dataset_digest,
)
from uvac.audio.decode_slots import DecodeSlots
from uvac.audio.decoding import (
    DECODED_FORMATS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    Audio,
    load_audio,
    sniff_format,
)
from uvac.audio.embedded_items import EmbeddedItem, embed_items
from uvac.audio.embedding_cache import CachedEmbedding, EmbeddingCache
from uvac.audio.embedding_windows import EmbeddingWindower, fit_embedding_stats
from uvac.audio.encoders import (
    ENCODERS,
    Encoder,
    SoundEncoder,
    SpeechEncoder,
    WindowStart,
    check_encoder_identity,
    configure_encoder_precision,
    load_encoder,
)
from uvac.audio.encoders.speech import WEIGHTS_QINT8
from uvac.audio.feature_config import (
    FRONTENDS,
    LOG_MEL,
    MEL_MULTIPLE,
    TIME_MULTIPLE,
    FeatureConfig,
    frame_count,
)
from uvac.audio.features import FeatureExtractor, NormStats, Windows, fit_norm_stats
from uvac.audio.holdout import DEFAULT_HELD_OUT_SHARE, HeldOutSplit, held_out_split
from uvac.audio.level import FLOOR_DBFS, Level, level_of
from uvac.audio.live_windows import LiveWindows, streaming_obstacles
from uvac.audio.log_mel import (
    LOG_OFFSET,
    LogMel,
    check_log_mel,
    dct_matrix,
    fit_time,
    log_mel,
    prepare_clip,
    prepare_clip_at,
)
from uvac.audio.speech_activity import SpeechDetector, load_speech_detector
from uvac.audio.windows import concatenate_windows

__all__ = [
    "AUDIO_EXTENSIONS",
    "DECODED_FORMATS",
    "DEFAULT_HELD_OUT_SHARE",
    "ENCODERS",
    "FLOOR_DBFS",
    "FRONTENDS",
    "LABELS_FILE",
    "LOG_MEL",
    "LOG_OFFSET",
    "MAX_SAMPLE_RATE",
    "MEL_MULTIPLE",
    "MIN_SAMPLE_RATE",
    "TIME_MULTIPLE",
    "WEIGHTS_QINT8",
    "Audio",
    "AudioFolder",
    "CachedEmbedding",
    "DatasetItem",
    "DecodeSlots",
    "DigestEntry",
    "EmbeddedItem",
    "EmbeddingCache",
    "EmbeddingWindower",
    "Encoder",
    "FeatureConfig",
    "FeatureExtractor",
    "HeldOutSplit",
    "Level",
    "LiveWindows",
    "LogMel",
    "NormStats",
    "SoundEncoder",
    "SpeechDetector",
    "SpeechEncoder",
    "Split",
    "WindowStart",
    "Windows",
    "check_encoder_identity",
    "check_log_mel",
    "concatenate_windows",
    "configure_encoder_precision",
    "dataset_digest",
    "dct_matrix",
    "embed_items",
    "fit_embedding_stats",
    "fit_norm_stats",
    "fit_time",
    "frame_count",
    "held_out_split",
    "level_of",
    "load_audio",
    "load_encoder",
    "load_speech_detector",
    "log_mel",
    "prepare_clip",
    "prepare_clip_at",
    "sniff_format",
    "streaming_obstacles",
]

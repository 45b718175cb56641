"""The engine's exceptions, one hierarchy.

Every class carries the HTTP status the API maps it to (``status``), the suffix of its
problem type (``slug``) and a short human title (``title``), so the API translates them in
exactly one place by walking the class hierarchy. The engine itself never speaks HTTP.

::

    UvacError (500, "internal")
     +-- AudioError (422, "invalid-audio")
     |    +-- NotAudioError (415, "not-audio")              not audio / truncated / undecodable
     |    +-- UnsupportedEncodingError (415, "unsupported-encoding")
     |    +-- EmptyAudioError (422, "empty-audio")
     |    +-- NonFiniteAudioError (422, "non-finite-audio")
     |    +-- AudioTooLongError (413, "audio-too-long")
     +-- ArtifactError (422, "invalid-model-artifact")      a saved model whose files are unusable
     |    +-- EncoderMismatchError (422, "encoder-mismatch")  another encoder than the model's
     +-- EncoderUnavailableError (503, "encoder-unavailable") a pretrained encoder cannot be loaded
     +-- RunCancelled (499, "run-cancelled")              training or an evaluation was cancelled
     +-- DatasetError (422, "invalid-dataset")             empty folder, no decodable files
     |    +-- InvalidSplitError (422, "invalid-split")     no such part of the data set to use
     +-- NotExportableError (422, "model-not-exportable")   no ONNX export for this model
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "AudioError",
    "AudioTooLongError",
    "DatasetError",
    "EmptyAudioError",
    "EncoderMismatchError",
    "EncoderUnavailableError",
    "InvalidSplitError",
    "NonFiniteAudioError",
    "NotAudioError",
    "NotExportableError",
    "RunCancelled",
    "UnsupportedEncodingError",
    "UvacError",
]


class UvacError(Exception):
    """Base class of every error the engine raises on purpose."""

    status: int = 500
    slug: str = "internal"
    title: str = "Internal error"


class AudioError(UvacError):
    """The submitted recording cannot be used."""

    status = 422
    slug = "invalid-audio"
    title = "Invalid audio"


class NotAudioError(AudioError):
    """The bytes are not a recording libsndfile can read: not audio, truncated or corrupt."""

    status = 415
    slug = "not-audio"
    title = "Not a readable audio file"


class UnsupportedEncodingError(AudioError):
    """An audio container we recognise, holding an encoding or parameters we do not accept."""

    status = 415
    slug = "unsupported-encoding"
    title = "Unsupported audio encoding"


class EmptyAudioError(AudioError):
    """The file or the decoded recording holds no samples."""

    status = 422
    slug = "empty-audio"
    title = "Empty audio"


class NonFiniteAudioError(AudioError):
    """The recording holds NaN or infinite samples."""

    status = 422
    slug = "non-finite-audio"
    title = "Audio with NaN or infinite samples"


class AudioTooLongError(AudioError):
    """The recording lasts longer than the configured maximum."""

    status = 413
    slug = "audio-too-long"
    title = "Audio too long"


class ArtifactError(UvacError):
    """A saved model whose files are missing, inconsistent or unusable."""

    status = 422
    slug = "invalid-model-artifact"
    title = "Invalid model artifact"


class EncoderMismatchError(ArtifactError):
    """A model trained on one encoder's embeddings, and another encoder (package version or
    weight file) installed: its embeddings would mean something else."""

    status = 422
    slug = "encoder-mismatch"
    title = "Model needs another encoder"


class EncoderUnavailableError(UvacError):
    """A pretrained encoder's package or weight file is missing or unreadable: an installation
    problem of the server, not of the request."""

    status = 503
    slug = "encoder-unavailable"
    title = "Audio encoder unavailable"


class RunCancelled(UvacError):
    """Raised by long work (training, its encoder pass, an evaluation) when its cancellation
    check says stop.

    Not an HTTP error: the worker catches it and marks the job cancelled. The status follows
    the common "client closed request" convention only so that every class has one.
    """

    status = 499
    slug = "run-cancelled"
    title = "Run cancelled"


class DatasetError(UvacError):
    """A data set folder that cannot be used: missing, empty, no decodable files, bad labels."""

    status = 422
    slug = "invalid-dataset"
    title = "Invalid data set"


class NotExportableError(UvacError):
    """A model the device export cannot express: not a log-mel conv-GRU h network, or a
    feature option the exported front-end does not implement."""

    status = 422
    slug = "model-not-exportable"
    title = "Model cannot be exported"


class InvalidSplitError(DatasetError):
    """The part of a data set asked for does not exist: held-out recordings of a data set the
    model was not trained on, or of a model that held none out."""

    slug = "invalid-split"
    title = "No such part of the data set"

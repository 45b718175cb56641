"""Training, the public way in: from recordings (`train_model`) or from windows already cut
(`train_on_windows`); both return a `TrainedModel` that carries the feature configuration and
the normalisation statistics it was trained with.

- `train_model(items, ...)`: loads the recordings, fits the normalisation statistics on these
  training clips only, cuts every clip into windows (`uvac.training.data`), and trains.
- `train_on_windows(data, ...)`: the same from `TrainingWindows` already cut, so that several
  runs on one data set (other seeds, say) decode the recordings, or run an encoder, once.

Both fit the model's novelty score (`uvac.novelty`) on the training windows, with the model's
cluster count, and store it in the `TrainedModel`: after the training, or beside it on a core
the training leaves free (the fit reads only the windows).

The loop itself, seeded, cancellable and resumable from checkpoints, is `uvac.training.trainer`.
What a run is told to do is `uvac.training.config.TrainConfig`; what it reports is
`uvac.training.progress.Progress` while it runs and `uvac.training.history` per epoch.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from uvac.novelty import FittedNovelty, fit_novelty, window_vectors
from uvac.training.artifact import TrainedModel, training_info
from uvac.training.data import (
    HeldOutWindows,
    TrainingWindows,
    held_out_windows,
    windows_for_training,
)
from uvac.training.trainer import ProgressCallback, StopCheck, fit

if TYPE_CHECKING:
    from uvac.audio import DatasetItem, EmbeddingCache, FeatureConfig
    from uvac.device import ThreadPolicy, Workload
    from uvac.training.config import TrainConfig

__all__ = ["phase_threads", "train_model", "train_on_windows", "training_workload"]


def training_workload(feature_config: FeatureConfig) -> Workload:
    """Perceptrons on embeddings are small networks; spectrograms train a convolutional one."""
    return "small_network" if feature_config.uses_encoder else "network"


def phase_threads(
    threads: ThreadPolicy | None, workload: Workload
) -> contextlib.AbstractContextManager[object]:
    """``threads.using(workload)``, or nothing without a policy (the caller's setting stays)."""
    return threads.using(workload) if threads is not None else contextlib.nullcontext()


# --------------------------------------------------------------------- from recordings


def train_model(
    items: Sequence[DatasetItem],
    *,
    config: TrainConfig,
    feature_config: FeatureConfig,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    checkpoint_dir: Path | None = None,
    dataset_digest: str | None = None,
    encoding_progress: Callable[[int, int], None] | None = None,
    held_out_items: Sequence[DatasetItem] = (),
    embedding_cache: EmbeddingCache | None = None,
    threads: ThreadPolicy | None = None,
) -> TrainedModel:
    """Train on recordings: features, normalisation fitted on these clips, windows, model.

    Files that fail to decode are skipped with a warning (and counted in the model's info);
    `uvac.errors.DatasetError` if none is usable. Labels (when every item has one) feed the
    accuracy/NMI in progress; each clip's windows carry its label. ``encoding_progress(done,
    total)`` follows the encoder's pass over the files (encoder front-ends), whose embeddings
    are read through ``embedding_cache`` when one is given. With ``threads``, the encoder's
    pass and the training each run with their workload's thread count. ``held_out_items``
    (recordings kept out of training) are cut with the training statistics and only scored,
    for the held-out accuracy and NMI of each epoch.
    """
    with phase_threads(threads, "encoder"):
        data = windows_for_training(
            items,
            feature_config=feature_config,
            should_stop=should_stop,
            progress=encoding_progress,
            embedding_cache=embedding_cache,
        )
        held_out = None
        if held_out_items:
            held_out = held_out_windows(
                held_out_items,
                feature_config=feature_config,
                training=data,
                should_stop=should_stop,
                embedding_cache=embedding_cache,
            )
    return train_on_windows(
        data,
        config=config,
        feature_config=feature_config,
        progress=progress,
        should_stop=should_stop,
        checkpoint_dir=checkpoint_dir,
        dataset_digest=dataset_digest,
        held_out=held_out,
        threads=threads,
    )


def train_on_windows(
    data: TrainingWindows,
    *,
    config: TrainConfig,
    feature_config: FeatureConfig,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    checkpoint_dir: Path | None = None,
    dataset_digest: str | None = None,
    held_out: HeldOutWindows | None = None,
    threads: ThreadPolicy | None = None,
) -> TrainedModel:
    """`train_model` on windows already cut with ``feature_config`` (`windows_for_training`),
    so that several runs on one data set (other seeds, say) decode the recordings once.
    With ``threads``, the network trains with its workload's thread count and the novelty
    score is fitted with the encoder's (its cost is large matrix products), or, when the
    network trains on fewer threads than the process has cores (a small network), beside the
    training on a thread of its own: the fit needs only the windows, not the model."""
    workload = training_workload(feature_config)
    # K-means "training" runs scikit-learn on every core: nothing is left beside it.
    beside = (
        threads is not None
        and config.model_type != "kmeans"
        and threads.threads(workload) < threads.encoder
    )
    stopped = threading.Event()  # the training failed or was cancelled: stop the fit too

    def fit_score() -> FittedNovelty | None:
        return fit_novelty(
            window_vectors(data.features, data.mask),
            data.clip_index,
            n_clusters=config.n_clusters,
            should_stop=stopped.is_set,
        )

    def fit_score_beside() -> FittedNovelty | None:
        # The fit's K-means has scikit-learn's own OpenMP pool, which torch's setting does not
        # reach; limited here, for this thread only, to the training's count.
        from threadpoolctl import threadpool_limits

        assert threads is not None
        with threadpool_limits(limits=threads.threads(workload), user_api="openmp"):
            return fit_score()

    # The fit starts inside the training's thread setting: torch's count is the process's, so
    # the fit, too, runs on that one thread, and the two use a core each.
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="uvac-novelty") as pool,
        phase_threads(threads, workload),
    ):
        fitting = pool.submit(fit_score_beside) if beside else None
        try:
            model, history = fit(
                data.features,
                data.mask,
                config=config,
                labels=data.labels,
                progress=progress,
                should_stop=should_stop,
                checkpoint_dir=checkpoint_dir,
                held_out=held_out,
                groups=data.clip_index,
            )
            novelty = fitting.result() if fitting is not None else None
        except BaseException:
            stopped.set()  # the fit stops at its next fold; leaving the block waits for it
            raise
    info = training_info(
        model=model,
        config=config,
        history=history,
        dataset_digest=dataset_digest,
        data_summary=data.summary(),
    )
    if fitting is None:
        with phase_threads(threads, "encoder"):  # large matrix products, as an encoder's pass
            novelty = fit_score()
    return TrainedModel(
        model=model,
        feature_config=feature_config,
        norm_stats=data.norm_stats,
        info=info,
        novelty=novelty,
    )

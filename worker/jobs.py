"""The job functions RQ runs: ``train_job(params)`` and ``evaluate_job(params)``.

Both take a JSON dict and return a small JSON dict. They run inside the work horse, so this
is the first place torch and the engine are imported.

Failures, checks and the end of a job are `worker.job_support`'s, shared with
`worker.distill`.

Training holds a share of the data set's recordings out (``held_out_share``, default 20%,
`worker.held_out`): the training function gets the rest only, the published version records
the held-out files and the model's figures on them (``held_out``), and an evaluation on the
model's own data set runs on them unless told ``"split": "all"``. A job's result and the
version's metadata carry the run's warnings (``warnings``: small data, no stable K, a cluster
that disappeared; `uvac.selection.run_checks`).

Training writes its checkpoints to ``UVAC_CHECKPOINTS_DIR/<job id>``; a re-run of the same job
(after its worker was killed, see `worker.recovery`) continues from there. A run that was
asked to stop returns ``{"canceled": true}`` and publishes nothing; the worker then marks the
job canceled. A run stopped because its worker is shutting down returns
``{"interrupted": true}`` and keeps its checkpoints; the worker puts it back on its queue.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rq import get_current_job
from rq.job import Job

from dataset_store import DatasetManifest
from service_config import Settings, get_settings
from uvac.device import available_cores
from uvac.errors import RunCancelled
from uvac.selection import is_sweep, parse_sweep
from uvac.training import Progress
from worker.evaluation_split import choose_recordings
from worker.held_out import held_out_record, split_for_training
from worker.identity import publication_metadata
from worker.job_support import (
    InvalidJobParameters,
    check_keys,
    configure_torch,
    dataset_items,
    embedding_cache,
    failure_policy,
    interrupted,
    job_reporter,
    record,
    settle_publication,
)
from worker.progress import stamped_progress, utc_now_iso
from worker.stores import checkpoint_folder, dataset_store, model_store
from worker.sweep import sweep_train_function

if TYPE_CHECKING:
    from uvac.device import ThreadPolicy
    from uvac.training import TrainedModel

__all__ = [
    "evaluate_job",
    "run_evaluation",
    "run_training",
    "train_job",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "scenes"
# Job parameters that go straight to TrainConfig (the rest are listed in _TRAIN_KEYS).
_TRAIN_CONFIG_KEYS = frozenset(
    {
        "model_type",
        "n_clusters",
        "epochs",
        "batch_size",
        "learning_rate",
        "final_learning_rate",
        "lambda_kl",
        "temperature_start",
        "temperature_end",
        "seed",
        "model_hyperparameters",
    }
)
_TRAIN_KEYS = _TRAIN_CONFIG_KEYS | {
    "dataset_id",
    "model_name",
    "preset",
    "features",
    "sweep",  # with n_clusters as {"min", "max"}: worker.sweep
    "reference_dataset_id",  # recordings to match clusters to the earlier version on
    "held_out_share",  # worker.held_out
}
_EVALUATE_KEYS = frozenset(
    {"model_ref", "dataset_id", "unknown_dataset_id", "batch_size", "seed", "split"}
)

TrainFunction = Callable[..., "TrainedModel"]


# --- training --------------------------------------------------------------------------


def train_job(params: dict[str, Any]) -> dict[str, Any]:
    """Train on a data set and publish the model; ``{"model": "name:vN", "sha256", "metrics"}``."""
    job = get_current_job()
    settings = get_settings()
    with failure_policy(job):
        threads = configure_torch(settings)
        from uvac.training import train_model

        return run_training(
            params, job=job, settings=settings, train_function=train_model, threads=threads
        )


def run_training(
    params: Mapping[str, Any],
    *,
    job: Job | None,
    settings: Settings,
    train_function: TrainFunction,
    threads: ThreadPolicy | None = None,
) -> dict[str, Any]:
    """The body of `train_job`, with the training function as a seam for tests; ``threads``
    sets each phase's thread count (the caller's setting stays without it)."""
    from uvac.selection import run_warnings
    from uvac.training import DEFAULT_PRESET, build_configs

    check_keys(params, _TRAIN_KEYS, {"dataset_id", "n_clusters"})
    if job is not None and job.meta.get("published"):
        # A re-run after the publish step (the worker died before RQ recorded success):
        # the version exists, publishing again would make a duplicate.
        logger.info("job %s already published %s", job.id, job.meta["published"]["model"])
        return dict(job.meta["published"])

    reporter = job_reporter(job, settings)
    checkpoint_dir, mirror = (
        checkpoint_folder(settings, job.id) if job is not None else (None, nullcontext())
    )

    def work() -> dict[str, Any]:
        train_overrides = {key: params[key] for key in _TRAIN_CONFIG_KEYS if key in params}
        train_overrides.setdefault("device", settings.device)
        train = train_function
        if is_sweep(params):
            spec = parse_sweep(params, max_candidates=settings.max_sweep_candidates)
            train_overrides["n_clusters"] = spec.k_min  # each candidate sets its own
            train = sweep_train_function(
                spec,
                write_progress=reporter.write if reporter is not None else None,
                progress_interval_seconds=settings.progress_interval_seconds,
            )
        elif "sweep" in params:
            raise InvalidJobParameters('sweep options need n_clusters as {"min", "max"}')
        try:
            feature_config, train_config = build_configs(
                str(params.get("preset", DEFAULT_PRESET)),
                feature_overrides=params.get("features") or {},
                train_overrides=train_overrides,
            )
        except (TypeError, ValueError) as error:
            raise InvalidJobParameters(str(error)) from error

        datasets = dataset_store(settings)
        manifest = datasets.get(str(params["dataset_id"]))
        split = split_for_training(dataset_items(datasets, manifest), params)
        items = split.training  # the held-out recordings never reach the training function
        reference_id = params.get("reference_dataset_id")
        reference_items = (
            dataset_items(datasets, datasets.get(str(reference_id))) if reference_id else None
        )
        if reporter is not None and reporter.should_stop():
            raise RunCancelled("cancelled before training started")
        record(job, {"phase": "training", "started_training_at": utc_now_iso()})
        started = time.monotonic()
        embeddings = embedding_cache(settings)
        trained = train(
            items,
            config=train_config,
            feature_config=feature_config,
            progress=reporter,
            should_stop=reporter.should_stop if reporter is not None else None,
            checkpoint_dir=checkpoint_dir,
            dataset_digest=manifest.digest,
            encoding_progress=reporter.encoding if reporter is not None else None,
            held_out_items=split.held_out,  # scored each epoch, never trained on
            embedding_cache=embeddings,
            threads=threads,
        )
        # A cancel that arrived during the last batches still wins over publishing (a
        # shutdown does not: publishing takes a moment, a re-run would redo it).
        if reporter is not None and reporter.should_stop() and not reporter.interrupted:
            raise RunCancelled("cancelled after the last epoch, before publishing")
        history = _training_history(trained, checkpoint_dir)
        matching = stamped_progress(Progress(phase="matching"))
        record(job, {"phase": "matching", "progress": matching})
        identity = publication_metadata(
            trained,
            store=model_store(settings),
            name=str(params.get("model_name", DEFAULT_MODEL_NAME)),
            training_items=items,
            reference_items=reference_items,
            reference_id=str(reference_id) if reference_id else None,
            should_stop=reporter.should_stop if reporter is not None else None,
            progress=_matching_progress(job),
            embedding_cache=embeddings,
        )
        record(job, {"phase": "held-out"})
        held_out = held_out_record(
            trained,
            split,
            should_stop=reporter.should_stop if reporter is not None else None,
            embedding_cache=embeddings,
        )
        warnings = run_warnings(
            recordings=len(items),
            n_clusters=trained.n_clusters,
            selection=trained.info.get("selection"),
            identity=identity.get("cluster_identity"),
        )
        record(job, {"phase": "mapping"})
        from uvac.selection import renumbered
        from worker.cluster_map import map_files

        # Drawn before publishing, in the numbering the version will have, so a cancel or a
        # lost worker cannot leave a published version without its map.
        browser_files = map_files(
            renumbered(trained, identity),
            items,
            manifest=manifest,
            metadata=trained.info,
            n_jobs=settings.torch_threads or available_cores(),
            should_stop=reporter.should_stop if reporter is not None else None,
            embedding_cache=embeddings,
        )
        publishing = stamped_progress(Progress(phase="publishing"))
        record(job, {"phase": "publishing", "progress": publishing})
        return _publish(
            trained,
            params=params,
            job=job,
            settings=settings,
            manifest=manifest,
            history=history,
            resumed_from_epoch=reporter.resumed_from_epoch if reporter is not None else None,
            train_seconds=time.monotonic() - started,
            extra_metadata={**identity, "held_out": held_out, "warnings": warnings},
            report_files=browser_files,
        )

    with mirror:
        return settle_publication(work, job=job, reporter=reporter, checkpoint_dir=checkpoint_dir)


def _training_history(trained: TrainedModel, checkpoint_dir: Path | None) -> list[dict[str, Any]]:
    """Every epoch's record (including those before a resume), for the training curves."""
    recorded = trained.info.get("history")
    if isinstance(recorded, list):
        return recorded
    if checkpoint_dir is not None:
        from uvac.training import load_checkpoint

        checkpoint = load_checkpoint(checkpoint_dir)
        if checkpoint is not None:
            return list(checkpoint.history)
    return []


def _publish(
    trained: TrainedModel,
    *,
    params: Mapping[str, Any],
    job: Job | None,
    settings: Settings,
    manifest: DatasetManifest,
    history: list[dict[str, Any]],
    resumed_from_epoch: int | None,
    train_seconds: float,
    extra_metadata: Mapping[str, Any] | None = None,
    report_files: Mapping[str, bytes] | None = None,
) -> dict[str, Any]:
    from uvac.training import code_version, save_trained_model

    info = trained.info
    final = dict((info.get("training") or {}).get("final") or {})
    metadata = {
        "model_type": trained.model_type,
        "n_clusters": trained.n_clusters,
        "hyperparameters": trained.model.hyperparameters(),
        "feature_config": trained.feature_config.to_dict(),
        "train_config": info.get("train_config"),
        "seed": (info.get("train_config") or {}).get("seed"),
        "dataset": {
            "id": manifest.id,
            "digest": manifest.digest,
            "files": len(manifest.files),
            "labels": manifest.labels,
        },
        "training": info.get("training"),
        "training_history": history,
        "code_version": code_version(),
        "created_at": utc_now_iso(),
        "job_id": job.id if job is not None else None,
        "resumed_from_epoch": resumed_from_epoch,
        "resumes": int(job.meta.get("resumes", 0)) if job is not None else 0,
        "train_seconds_this_run": round(train_seconds, 3),
        **({"selection": info["selection"]} if "selection" in info else {}),
        **(extra_metadata or {}),
    }
    store = model_store(settings)
    name = str(params.get("model_name", DEFAULT_MODEL_NAME))
    with store.publish(name, metadata=metadata) as staging:
        save_trained_model(staging, trained)
    version = staging.version
    if report_files:
        store.write_report(version.ref, files=report_files)
    metrics = {key: final.get(key) for key in ("loss", "accuracy", "nmi", "clusters_used")}
    metrics["computed_on"] = "the training recordings (see held_out for figures on new ones)"
    extra = extra_metadata or {}
    held_out = extra.get("held_out") or {}
    warnings = list(extra.get("warnings") or [])
    logger.info("job %s published %s", job and job.id, version.ref)
    for warning in warnings:
        logger.warning("job %s, %s: %s", job and job.id, version.ref, warning["message"])
    return {
        "model": version.ref,
        "sha256": version.sha256,
        "metrics": metrics,
        "held_out": {
            "recordings": len(held_out.get("files") or []),
            "share": held_out.get("share"),
            "metrics": held_out.get("metrics"),
            "description": held_out.get("description"),
        },
        "warnings": warnings,
        # Training may end before its epochs once the partition has settled
        # (`TrainConfig.stop_after_stable_epochs`): say how many it ran.
        "epochs": {
            "run": (info.get("training") or {}).get("epochs_completed"),
            "most": (info.get("train_config") or {}).get("epochs"),
        },
    }


def _matching_progress(job: Job | None) -> Callable[[int, int], None]:
    """The matching phase's progress (both versions assign the recordings), every 16 files."""
    started = time.monotonic()

    def report(done: int, total: int) -> None:
        if done == total or done % 16 == 0:
            elapsed = time.monotonic() - started
            progress = Progress.matching(done, total, elapsed_seconds=elapsed)
            record(job, {"progress": stamped_progress(progress)})

    return report


# --- evaluation ------------------------------------------------------------------------


def evaluate_job(params: dict[str, Any]) -> dict[str, Any]:
    """Evaluate a model version on a data set and store its report with the version.

    ``split`` (`uvac.evaluation.SPLITS`): ``"held-out"`` (the default on the model's own data
    set, when it held recordings out) or ``"all"``. Returns ``{"model": "name:vN", "report":
    {summary, with "evaluated_on"}}``.
    """
    job = get_current_job()
    settings = get_settings()
    with failure_policy(job):
        configure_torch(settings)
        return run_evaluation(params, job=job, settings=settings)


def run_evaluation(
    params: Mapping[str, Any], *, job: Job | None, settings: Settings
) -> dict[str, Any]:
    from model_store.cluster_names import current_cluster_names
    from model_store.novelty_settings import edited_false_alarm_rate
    from reports import build_report, report_summary
    from reports.cluster_map import CLUSTER_MAP_FILE
    from uvac.evaluation import evaluate_with_baselines, novelty_evaluation
    from uvac.selection import renumbered
    from uvac.training import load_trained_model
    from worker.cluster_map import existing_map_files, map_files

    check_keys(params, _EVALUATE_KEYS, {"model_ref", "dataset_id"})
    store = model_store(settings)
    version = store.verify(str(params["model_ref"]))  # every byte checked before loading
    # In the version's cluster numbering, the one /v1/cluster answers with.
    trained = renumbered(load_trained_model(version.path), version.metadata)
    datasets = dataset_store(settings)
    manifest = datasets.get(str(params["dataset_id"]))
    recordings = choose_recordings(
        dataset_items(datasets, manifest),
        manifest=manifest,
        model_metadata=version.metadata,
        datasets=datasets,
        split=params.get("split"),
    )
    items = recordings.items
    reporter = job_reporter(job, settings)
    record(job, {"phase": "evaluating"})
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        # Asked after every clip: the cooperative cancellation point of an evaluation.
        if reporter is None:
            return
        if reporter.should_stop():
            raise RunCancelled(f"evaluation cancelled after {done} of {total} clips")
        reporter.evaluating(done, total, elapsed_seconds=time.monotonic() - started)

    try:
        rows = evaluate_with_baselines(
            trained,
            items,
            batch_size=int(params.get("batch_size", 64)),
            seed=int(params.get("seed", 0)),
            progress=progress,
            embedding_cache=embedding_cache(settings),
        )
        foreign = params.get("unknown_dataset_id")
        unknown_items = (
            dataset_items(datasets, datasets.get(str(foreign))) if foreign is not None else []
        )
        novelty = novelty_evaluation(
            trained,
            items,
            unknown_items,
            false_alarm_rate=edited_false_alarm_rate(store, version),
            progress=progress,
            embedding_cache=embedding_cache(settings),
        )
    except RunCancelled as stop:
        if reporter is not None and reporter.interrupted:
            return interrupted(job)
        logger.info("job %s: %s", job and job.id, stop)
        record(job, {"canceled": True, "canceled_at": utc_now_iso(), "phase": "canceled"})
        return {"canceled": True}
    record(job, {"phase": "drawing"})
    browser_files = existing_map_files(store, version) or map_files(
        trained,
        items,
        manifest=manifest,
        metadata=version.metadata,
        n_jobs=settings.torch_threads or available_cores(),
        embedding_cache=embedding_cache(settings),
        false_alarm_rate=edited_false_alarm_rate(store, version),
    )
    # The names as the fitting backend has set them by now, not only those published.
    names = current_cluster_names(
        store, version, n_clusters=trained.n_clusters, model_info=trained.info
    )
    files = build_report(
        rows=rows,
        model_ref=version.ref,
        model_metadata={**version.metadata, "cluster_names": names},
        model_info=trained.info,
        dataset=manifest,
        evaluated_on=recordings.describe(),
        cluster_map=json.loads(browser_files[CLUSTER_MAP_FILE]),
        novelty=novelty,
    )
    store.write_report(version.ref, files={**browser_files, **files})
    record(job, {"phase": "done"})
    return {"model": version.ref, "report": report_summary(files)}

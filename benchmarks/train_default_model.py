"""Train the model the service ships (`app/default_model/bundle/`) and write its metadata.

Cat. UVAC with a preset of `uvac.training.presets` (``--preset``; the bundle uses ``scenes``, see
its TRAINING.md) on ESC-10's train split (folds
2-5, 320 clips); evaluated on the test split (fold 1, 80 clips). Writes into the bundle:
``weights.safetensors`` and ``model.json`` (`uvac.training.artifact.save_trained_model`),
``metadata.json`` (what the model store's metadata says: model type, K, hyperparameters,
feature and training configuration, data set and manifest digest, seed, code version, time,
test metrics, and ``cluster_names``: each cluster's majority ESC-10 class over all 400 clips,
a human hint only).

It trains one model per ``--seeds`` value and ships the one whose clusters are used most
evenly on the training split (most clusters used, then the highest entropy of the cluster
sizes): a rule without labels, which a vendor retraining on unlabelled recordings can apply
too, and which keeps the test split out of the choice. Usage, from the repository root::

    .venv/bin/python benchmarks/train_default_model.py --esc10 path/to/esc10

``--add-novelty`` trains nothing: it fits the novelty score (`uvac.novelty.fit_novelty`,
exactly as training fits it) on the shipped model's training windows and writes
``novelty.safetensors`` and ``novelty.json`` beside its weights, which it leaves untouched.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import math
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from benchmarks.embedding_cache import cached_embeddings  # noqa: E402
from uvac.audio import AudioFolder  # noqa: E402
from uvac.evaluation import evaluate_clusterer, kmeans_baseline  # noqa: E402
from uvac.novelty import fit_novelty, window_vectors  # noqa: E402
from uvac.training import (  # noqa: E402
    DEFAULT_PRESET,
    TrainedModel,
    TrainingWindows,
    build_configs,
    load_trained_model,
    save_trained_model,
    train_on_windows,
    training_windows_from_embeddings,
    windows_for_training,
)

logger = logging.getLogger("benchmarks.train_default_model")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--esc10", type=Path, default=REPO.parent / "shared/data/esc10")
    parser.add_argument("--bundle", type=Path, default=REPO / "app/default_model/bundle")
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--add-novelty", action="store_true", help=__doc__.split("``--")[-1])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    if args.add_novelty:
        return add_novelty(args.bundle, AudioFolder.scan(args.esc10, split="train"))

    train = AudioFolder.scan(args.esc10, split="train")
    test = AudioFolder.scan(args.esc10, split="test")
    everything = AudioFolder.scan(args.esc10)
    feature_config, _ = build_configs(args.preset)
    embeddings: dict[str, Any] = {}  # raw embeddings of every clip (encoder front-ends)
    if feature_config.uses_encoder:  # embedded once, for every seed and both evaluations
        embeddings = cached_embeddings(everything.items, feature_config)
        data = training_windows_from_embeddings(
            train.items, [embeddings[str(item.path)].features for item in train.items]
        )
    else:
        data = windows_for_training(train.items, feature_config=feature_config)
    candidates = []
    for seed in args.seeds:
        _, train_config = build_configs(
            args.preset,
            train_overrides={"n_clusters": args.clusters, "seed": seed, "device": "cpu"},
        )
        started = time.perf_counter()
        trained = train_on_windows(
            data,
            config=train_config,
            feature_config=feature_config,
            dataset_digest=train.manifest_digest(),
        )
        train_seconds = time.perf_counter() - started
        usage = _cluster_use(trained, data)
        logger.info("seed %d on the training split: %s", seed, usage)
        candidates.append((usage, seed, trained, train_config, train_seconds))
    usage, seed, trained, train_config, train_seconds = max(
        candidates, key=lambda c: (c[0]["clusters_used"], c[0]["size_entropy"])
    )
    save_trained_model(args.bundle, trained)
    for name in ("weights.safetensors", "model.json"):  # readable by the service's user
        (args.bundle / name).chmod(0o644)
    reloaded = load_trained_model(args.bundle)  # evaluate exactly what ships

    report = evaluate_clusterer(reloaded, test.items, batch_size=256, embedding_cache=embeddings)
    baseline = kmeans_baseline(report, seed=seed)
    all_clips = evaluate_clusterer(
        reloaded, everything.items, batch_size=256, embedding_cache=embeddings
    )
    model_document = json.loads((args.bundle / "model.json").read_text())
    metadata = {
        "model_type": reloaded.model_type,
        "n_clusters": reloaded.n_clusters,
        "hyperparameters": reloaded.model.hyperparameters(),
        "feature_config": reloaded.feature_config.to_dict(),
        "train_config": train_config.to_dict(),
        "preset": args.preset,
        "encoder": model_document.get("encoder"),
        "seed": seed,
        "seed_selection": {
            "rule": "most clusters used on the training split, then the highest entropy of "
            "the cluster sizes there (no labels, no test clips)",
            "candidates": {str(c[1]): c[0] for c in candidates},
        },
        "dataset": {
            "id": "esc10",
            "split": "train (ESC folds 2-5)",
            "digest": train.manifest_digest(),
            "full_dataset_digest": everything.manifest_digest(),
            "files": len(train.items),
            "labels": list(train.labels),
        },
        "training": trained.info.get("training"),
        "train_seconds": round(train_seconds, 1),
        "code_version": _git_head(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "metrics": {
            "split": "test (ESC fold 1, 80 clips)",
            "accuracy": report.accuracy,
            "nmi": report.nmi,
            "clusters_used": report.clusters_used,
            "cluster_sizes": report.cluster_sizes,
            "internal": {name: s.to_dict() for name, s in report.scores.items()},
            "kmeans_same_features": {
                "accuracy": baseline.accuracy,
                "nmi": baseline.nmi,
                "silhouette_features": baseline.scores["features"].silhouette,
            },
        },
        "cluster_names": _majority_labels(
            all_clips.assignments, all_clips.labels, n_clusters=reloaded.n_clusters
        ),
        "cluster_names_note": "majority ESC-10 class of each cluster over all 400 clips; a "
        "human hint, not a label the model was trained with",
    }
    (args.bundle / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    (args.bundle / "metadata.json").chmod(0o644)
    logger.info(
        "test accuracy %.3f, NMI %.3f, %d clusters used (K-means: %.3f, %.3f); %.0f s",
        report.accuracy, report.nmi, report.clusters_used, baseline.accuracy, baseline.nmi,
        train_seconds,
    )  # fmt: skip
    return 0


def add_novelty(bundle: Path, train: AudioFolder) -> int:
    """Fit the shipped model's novelty score on its training split; weights stay as they are."""
    trained = load_trained_model(bundle)
    # The training windows' statistics, stored with the model, tell whether these are its
    # recordings (the manifest digest's definition has changed since the bundle was trained).
    if len(train.items) != json.loads((bundle / "metadata.json").read_text())["dataset"]["files"]:
        raise SystemExit("these are not the recordings the bundled model was trained on")
    embeddings = cached_embeddings(train.items, trained.feature_config)
    data = training_windows_from_embeddings(
        train.items, [embeddings[str(item.path)].features for item in train.items]
    )
    if not (
        torch.allclose(data.norm_stats.mean, trained.norm_stats.mean, atol=1e-4)
        and torch.allclose(data.norm_stats.std, trained.norm_stats.std, atol=1e-4)
    ):
        raise SystemExit("these are not the embeddings the bundled model was trained on")
    novelty = fit_novelty(
        window_vectors(data.features, data.mask), data.clip_index, n_clusters=trained.n_clusters
    )
    if novelty is None:
        raise SystemExit("too few training windows for a novelty score")
    weights = (bundle / "weights.safetensors").read_bytes()
    save_trained_model(bundle, replace(trained, novelty=novelty))
    if (bundle / "weights.safetensors").read_bytes() != weights:
        raise SystemExit("saving changed the weights")
    for name in ("novelty.safetensors", "novelty.json"):
        (bundle / name).chmod(0o644)
    logger.info("novelty score: %s", novelty.score.to_dict())
    return 0


def _cluster_use(trained: TrainedModel, data: TrainingWindows) -> dict[str, Any]:
    """Label-free facts about how a model spreads the training windows over its clusters."""
    with torch.inference_mode():
        assignments = trained.model.assignments(data.features, data.mask)  # (N,)
    counts = torch.bincount(assignments, minlength=trained.n_clusters).tolist()
    sizes = [size for size in counts if size > 0]
    total = sum(sizes)
    entropy = -sum(size / total * math.log(size / total) for size in sizes)
    return {"clusters_used": len(sizes), "size_entropy": round(entropy, 4)}


def _majority_labels(
    assignments: Any, labels: list[str | None], *, n_clusters: int
) -> dict[str, str | None]:
    """Cluster index -> its majority class (None for a cluster no clip falls in)."""
    votes: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for cluster, label in zip(assignments.tolist(), labels, strict=True):
        if label is not None:
            votes[int(cluster)][_class_name(label)] += 1
    return {
        str(cluster): (votes[cluster].most_common(1)[0][0] if votes[cluster] else None)
        for cluster in range(n_clusters)
    }


def _class_name(label: str) -> str:
    """``"001 - Dog bark"`` -> ``"Dog bark"``."""
    number, separator, name = label.partition(" - ")
    return name if separator and number.isdigit() else label


def _git_head() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())

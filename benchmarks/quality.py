"""Quality benchmark: Cat. UVAC against the paper's baselines on FSDD and ESC-10.

For each data set (``fsdd`` with K=10, ``esc10`` with K=10, ``esc10_k5`` with K=5) and each
method (``cat-uvac``, ``uvac-gmm``, ``kmeans``) and seed, it trains on the data set's train
split with the preset recommended for it (`DATASET_PRESETS`: ``speech`` (the speech encoder)
for the spoken digits, ``scenes`` (the sound encoder) for ESC-10's sound events; the same
names with ``_logmel`` run the log-mel recipes ``words-logmel`` and ``scenes-logmel``, so the
gain of the encoders stays visible; ``--preset`` runs one preset on every data set; see
`uvac.training.presets`), evaluates on the test split
(`uvac.evaluation.scoring.evaluate_clusterer`: clip-level pi, Hungarian accuracy and NMI against the
labels, Silhouette/DBI/CHI in the model's latent space and in the common feature space), and
writes the mean over seeds:

- ``results/quality.json``: ``{data set: {method: {"acc", "nmi", "silhouette", "dbi", "chi",
  "representation", "silhouette_features", "dbi_features", "chi_features",
  "representation_features", "clusters_used", "train_seconds", "seeds": [per seed]}}}``;
  ``acc``/``nmi`` are fractions on the test split (for K=5 still against the 10 labels, so
  accuracy is at most 0.5); the unsuffixed internal metrics are on the method's own latent
  (``representation`` says which), the ``_features`` ones on the shared normalised features
  (the standardised embeddings for an encoder front-end); ``frontend`` and ``preset`` say what
  each entry ran on.
- ``results/quality.md``: the paper's Table I layout (internal metrics in the shared feature
  space, then in each method's latent), with wall times.

The features (for an encoder, its embeddings of the train and the test clips) are computed
once per data set and shared by the three methods, as the paper's "K-means on the same
features" requires. K-means runs as the paper defines it. UVAC-GMM runs without the
consistency and self-labelling terms that the presets give Cat. UVAC, but with their
clustering start and cluster-balance term: without them its mixture collapses onto a few
components (VaDE itself starts its mixture from a clustering of a pretrained latent). Both
variational models share the features, network, lambda and epochs.

Usage (from the repository root)::

    .venv/bin/python benchmarks/quality.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from benchmarks.embedding_cache import cached_embeddings  # noqa: E402
from benchmarks.windowed_recordings import joined_esc10  # noqa: E402
from uvac.audio import AudioFolder  # noqa: E402
from uvac.evaluation import TableRow, evaluate_clusterer, render_table  # noqa: E402
from uvac.training import (  # noqa: E402
    PRESETS,
    build_configs,
    train_on_windows,
    training_windows_from_embeddings,
    windows_for_training,
)

logger = logging.getLogger("benchmarks.quality")

METHODS = ("cat-uvac", "start", "uvac-gmm", "kmeans")
METHOD_NAMES = {
    "cat-uvac": "Cat. UVAC",
    "start": "Start alone",
    "uvac-gmm": "UVAC (GMM prior)",
    "kmeans": "K-means",
}
# data set key -> (folder flag, K)
DATASETS = {
    "fsdd": ("fsdd", 10),
    "esc10": ("esc10", 10),
    "esc10_k5": ("esc10", 5),
    # ESC-10's clips joined into one recording per source, cut into overlapping windows.
    "esc10_windowed": ("esc10_windowed", 10),
    "fsdd_logmel": ("fsdd", 10),
    "esc10_logmel": ("esc10", 10),
    "esc10_k5_logmel": ("esc10", 5),
}
# The preset each data set is run with unless --preset names one for all: the recipe the
# service recommends for that kind of sound (uvac.training.presets says why).
DATASET_PRESETS = {
    "fsdd": "speech",
    "esc10": "scenes",
    "esc10_k5": "scenes",
    "esc10_windowed": "scenes",
    "fsdd_logmel": "words-logmel",
    "esc10_logmel": "scenes-logmel",
    "esc10_k5_logmel": "scenes-logmel",
}
SCALARS = ("acc", "nmi", "silhouette", "dbi", "chi", "silhouette_features", "dbi_features",
           "chi_features", "clusters_used", "train_seconds", "max_pi")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    roots = {"fsdd": Path(args.fsdd), "esc10": Path(args.esc10)}
    if "esc10_windowed" in args.datasets:
        roots["esc10_windowed"] = joined_esc10(
            Path(args.esc10), REPO / "var" / "bench-data" / "esc10-windowed"
        )
    results: dict[str, dict[str, Any]] = {}
    if args.json.exists() and args.resume:
        results = json.loads(args.json.read_text())
    started = time.perf_counter()
    cache: dict[str, Any] = {}
    for dataset in args.datasets:
        folder_key, n_clusters = DATASETS[dataset]
        preset = args.preset or DATASET_PRESETS[dataset]
        results.setdefault(dataset, {})
        for method in args.methods:
            if args.resume and method in results[dataset]:
                continue
            runs = []
            for seed in args.seeds:
                runs.append(
                    _one_run(
                        root=roots[folder_key], folder_key=folder_key, cache=cache,
                        preset=preset, method=method, n_clusters=n_clusters, seed=seed,
                        args=args,
                    )
                )  # fmt: skip
                logger.info("%s %s seed %d: %s", dataset, method, seed, _brief(runs[-1]))
            frontend = build_configs(preset)[0].frontend
            results[dataset][method] = {"preset": preset, "frontend": frontend, **_summary(runs)}
            _write(results, args)  # after every method, so a long run leaves partial results
    logger.info("done in %.0f s", time.perf_counter() - started)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fsdd", default=str(REPO.parent / "shared/data/fsdd"))
    parser.add_argument("--esc10", default=str(REPO.parent / "shared/data/esc10"))
    parser.add_argument(
        "--preset", default=None, choices=list(PRESETS),
        help="one preset for every data set (default: DATASET_PRESETS)",
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--datasets", nargs="+", default=["fsdd", "esc10", "esc10_k5"], choices=list(DATASETS)
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    parser.add_argument(
        "--set", dest="train_set", action="append", default=[], metavar="KEY=JSON",
        help="a training override for every run, e.g. --set lambda_kl=0.1 (for ablations)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="keep methods already in --json")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/quality.json")
    parser.add_argument("--markdown", type=Path, default=REPO / "benchmarks/results/quality.md")
    return parser.parse_args(argv)


def _one_run(
    *,
    root: Path,
    folder_key: str,
    cache: dict[str, Any],
    preset: str,
    method: str,
    n_clusters: int,
    seed: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    model_type = "cat-uvac" if method == "start" else method
    overrides: dict[str, Any] = {"model_type": model_type, "n_clusters": n_clusters, "seed": seed}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    for setting in args.train_set:
        key, _, value = setting.partition("=")
        overrides[key] = json.loads(value)
    if method == "start":  # Cat. UVAC's start alone: h taught the initial partition, no ELBO
        overrides["epochs"] = 0
    if method == "kmeans":
        overrides.update(
            consistency_weight=0.0, init_epochs=0, self_label_weight=0.0, cluster_balance=0.0
        )
    elif method == "uvac-gmm" and PRESETS[preset].features.get("frontend"):
        # The GMM baseline on embeddings keeps the clustering start and the balance term
        # (see the module docstring); on log-mel features it runs as before.
        overrides.update(consistency_weight=0.0, self_label_weight=0.0)
    elif method == "uvac-gmm":
        overrides.update(
            consistency_weight=0.0, init_epochs=0, self_label_weight=0.0, cluster_balance=0.0
        )
    feature_config, train_config = build_configs(preset, train_overrides=overrides)
    cache_key = f"{folder_key}:{preset}"
    if cache_key not in cache:  # the features are shared by every method and seed
        train_items = AudioFolder.scan(root, split="train").items
        test_items = AudioFolder.scan(root, split="test").items
        if feature_config.uses_encoder:  # embeddings from the on-disk cache
            train_windows = cached_embeddings(train_items, feature_config)
            data = training_windows_from_embeddings(
                train_items, [train_windows[str(item.path)].features for item in train_items]
            )
            test_windows = cached_embeddings(test_items, feature_config)
        else:
            data = windows_for_training(train_items, feature_config=feature_config)
            test_windows = {}
        cache[cache_key] = (data, test_items, feature_config, test_windows)
    data, test_items, cached_config, test_embeddings = cache[cache_key]
    assert cached_config == feature_config
    started = time.perf_counter()
    trained = train_on_windows(data, config=train_config, feature_config=feature_config)
    train_seconds = time.perf_counter() - started
    report = evaluate_clusterer(
        trained, test_items, batch_size=256, embedding_cache=test_embeddings
    )
    latent, features = report.scores["latent"], report.scores["features"]
    max_pi = None if report.probabilities is None else float(report.probabilities.max(1).mean())
    return {
        "seed": seed,
        "acc": report.accuracy,
        "nmi": report.nmi,
        "silhouette": latent.silhouette,
        "dbi": latent.dbi,
        "chi": latent.chi,
        "representation": latent.description,
        "silhouette_features": features.silhouette,
        "dbi_features": features.dbi,
        "chi_features": features.chi,
        "representation_features": features.description,
        "clusters_used": report.clusters_used,
        "cluster_sizes": report.cluster_sizes,
        "max_pi": max_pi,
        "train_seconds": round(train_seconds, 2),
        "epochs": train_config.epochs,
        "epochs_run": trained.info["training"].get("epochs_completed"),
        "train_accuracy_last_epoch": trained.info["training"].get("final", {}).get("accuracy"),
    }


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key in SCALARS:
        values = [run[key] for run in runs if run.get(key) is not None]
        summary[key] = statistics.fmean(values) if values else None
        if key in ("acc", "nmi", "silhouette", "silhouette_features") and len(values) > 1:
            summary[f"{key}_std"] = statistics.stdev(values)
    summary["representation"] = runs[0]["representation"]
    summary["representation_features"] = runs[0]["representation_features"]
    summary["min_clusters_used"] = min(run["clusters_used"] for run in runs)
    summary["epochs"] = runs[0]["epochs"]
    epochs_run = [run["epochs_run"] for run in runs if run.get("epochs_run") is not None]
    summary["epochs_run"] = statistics.fmean(epochs_run) if epochs_run else None
    summary["seeds"] = runs
    return summary


def _brief(run: dict[str, Any]) -> str:
    return (
        f"acc {run['acc']:.3f} nmi {run['nmi']:.3f} sil {run['silhouette']} "
        f"sil_feat {run['silhouette_features']} used {run['clusters_used']} "
        f"{run['train_seconds']:.0f} s"
    )


def _write(results: dict[str, Any], args: argparse.Namespace) -> None:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    args.markdown.write_text(_markdown(results, args))


def _markdown(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "# Quality benchmark (test splits, mean of seeds "
        + ", ".join(str(s) for s in args.seeds)
        + ")",
        "",
        "Presets: "
        + ", ".join(
            f"{dataset} `{next(iter(methods.values()))['preset']}`"
            for dataset, methods in results.items()
            if methods
        )
        + " (`uvac/presets.py`).",
        "",
        "Written by `benchmarks/quality.py`. Accuracy and NMI are on the test split, against the",
        "10 labels (so at most 50% accuracy for K=5). Internal metrics are given twice: in the",
        "common space (the normalised input features, the same for every method) and in each",
        "method's own latent (pi for Cat. UVAC, z means for UVAC-GMM, the features for K-means).",
        "",
    ]
    for space, title in (("_features", "common feature space"), ("", "each method's latent")):
        rows = []
        for dataset, methods in results.items():
            for method, summary in methods.items():
                rows.append(
                    TableRow(
                        dataset=dataset, k=DATASETS[dataset][1], method=METHOD_NAMES[method],
                        accuracy=summary["acc"], nmi=summary["nmi"],
                        silhouette=summary[f"silhouette{space}"], dbi=summary[f"dbi{space}"],
                        chi=summary[f"chi{space}"],
                    )
                )  # fmt: skip
        lines += [f"## Silhouette, DBI, CHI in the {title}", "", render_table(rows), ""]
    lines += ["## Wall time and cluster use", "",
              "| Data set | Method | train s / seed | clusters used (mean, min) | mean max pi "
              "| epochs |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for dataset, methods in results.items():
        for method, s in methods.items():
            max_pi = "" if s["max_pi"] is None else f"{s['max_pi']:.2f}"
            lines.append(
                f"| {dataset} | {METHOD_NAMES[method]} | {s['train_seconds']:.1f} | "
                f"{s['clusters_used']:.1f}, {s['min_clusters_used']} | {max_pi} | {s['epochs']} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

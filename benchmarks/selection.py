"""Selection benchmark: choose K without labels, stability across seeds, identity on retraining.

For ESC-10 (preset ``scenes``, the sound encoder) and FSDD (preset ``speech``, the speech
encoder), on each data set's official training split (as `benchmarks/quality.py`: ESC-10 fold
1 and FSDD takes 0-4 are held out), with the encoders' embeddings from the shared cache
(`benchmarks/embedding_cache.py`):

1. The sweep of `uvac.selection.sweep` over a K range and seeds; every candidate's label-free scores
   (stability = mean pairwise ARI of the training clips' assignments, silhouette / DBI / CHI
   in the common embedding space), its accuracy and NMI against the labels (reported, never
   used), and the K the rule of `uvac.selection.rule` chooses.
2. ESC-10 only, seed agreement: the three seeds' trainings at the chosen K (and at K = 10),
   each aligned to the first by `uvac.selection.cluster_identity.match_clusters`; the share of
   training clips that keep their number.
3. ESC-10 only, retraining: a model trained on a random 80 % of the training clips, then one
   on all of them (seed 0, the chosen K); the second aligned to the first on all training
   clips; the share of clips that keep their number.

Writes ``results/selection.json`` after each data set and ``results/selection_<data
set>.png`` (each criterion against K, the choice marked) at the end. Each run's model and clip
pi are kept under ``var/selection-runs``, so a rerun reads finished runs back.

    .venv/bin/python benchmarks/selection.py --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from benchmarks.embedding_cache import cached_embeddings  # noqa: E402
from uvac.audio import AudioFolder, EmbeddingWindower  # noqa: E402
from uvac.selection import (  # noqa: E402
    DEFAULT_STABILITY_THRESHOLD,
    DEFAULT_SUBSAMPLE,
    Candidate,
    clip_probabilities,
    match_clusters,
    run_sweep,
)
from uvac.training import (  # noqa: E402
    TrainingWindows,
    build_configs,
    load_trained_model,
    train_on_windows,
    training_windows_from_embeddings,
)

logger = logging.getLogger("benchmarks.selection")

DATASETS = {"esc10": "scenes", "fsdd": "speech"}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = json.loads(args.json.read_text()) if args.json.exists() else {}
    results["stability_threshold"] = args.stability_threshold
    started = time.perf_counter()
    for dataset in args.datasets:
        k_min, k_max, step = args.esc10_k if dataset == "esc10" else args.fsdd_k
        seeds = args.seeds if dataset == "esc10" else args.fsdd_seeds
        epochs = args.fsdd_epochs if dataset == "fsdd" and args.fsdd_epochs else args.epochs
        data, feature_config, train_config, raw = _training_data(dataset, args, epochs=epochs)
        ks = list(range(k_min, k_max + 1, step))
        entry: dict[str, Any] = {
            "preset": DATASETS[dataset], "k_range": ks, "seeds": seeds,
            "epochs": train_config.epochs, "n_clips": data.n_clips,
            "n_windows": int(data.features.shape[0]),
        }  # fmt: skip
        summary, _ = _sweep(data, feature_config, train_config, ks, seeds, args,
                            run_dir=args.runs_dir / dataset, subsample=args.subsample)  # fmt: skip
        entry.update(summary)
        results[dataset] = entry
        _write(results, args)
        if dataset == "esc10":
            # Seeds alone, every run on all training clips: the stability the first rule used,
            # and the three full-data trainings whose agreement is a target.
            seed_only, probabilities = _sweep(
                data, feature_config, train_config, ks, seeds, args,
                run_dir=args.runs_dir / dataset, subsample=None,
            )  # fmt: skip
            entry["seed_only"] = seed_only
            entry["seed_agreement_runs"] = _seed_agreement(entry, probabilities, seeds)
            entry["retrain"] = _retrain(data, raw, feature_config, train_config, entry, args)
            results["seed_agreement"] = min(
                entry["seed_agreement_runs"]["chosen_k"]["aligned_to_first"]
            )
            results["retrain_kept"] = entry["retrain"]["kept"]
        results[dataset] = entry
        _write(results, args)
    results["seconds"] = round(time.perf_counter() - started, 1)
    _write(results, args)
    draw_figures(results, args.json.parent)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--esc10", default=str(REPO.parent / "shared/data/esc10"))
    parser.add_argument("--fsdd", default=str(REPO.parent / "shared/data/fsdd"))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument(
        "--esc10-k", type=int, nargs=3, default=[3, 15, 1], metavar=("MIN", "MAX", "STEP")
    )
    parser.add_argument(
        "--fsdd-k", type=int, nargs=3, default=[6, 14, 2], metavar=("MIN", "MAX", "STEP")
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fsdd-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--epochs", type=int, default=None, help="override the presets' (smoke runs)"
    )
    parser.add_argument(
        "--fsdd-epochs", type=int, default=None, help="override the speech preset's"
    )
    parser.add_argument("--subsample", type=float, default=DEFAULT_SUBSAMPLE)
    parser.add_argument("--stability-threshold", type=float, default=DEFAULT_STABILITY_THRESHOLD)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs-dir", type=Path, default=REPO / "var/selection-runs")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/selection.json")
    return parser.parse_args(argv)


def _training_data(dataset: str, args: argparse.Namespace, *, epochs: int | None):
    overrides = {"device": "cpu"} | ({"epochs": epochs} if epochs else {})
    feature_config, train_config = build_configs(DATASETS[dataset], train_overrides=overrides)
    items = AudioFolder.scan(Path(getattr(args, dataset)), split="train").items
    windows = cached_embeddings(items, feature_config)
    raw = [windows[str(item.path)].features for item in items]
    return training_windows_from_embeddings(items, raw), feature_config, train_config, raw


def _sweep(
    data: TrainingWindows,
    feature_config: Any,
    train_config: Any,
    ks: list[int],
    seeds: list[int],
    args: argparse.Namespace,
    *,
    run_dir: Path,
    subsample: float | None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One sweep (every K with every seed); its summary and each run's clip pi."""
    started = time.perf_counter()
    result = run_sweep(
        data, base_config=train_config, feature_config=feature_config,
        candidates=[Candidate(n_clusters=k) for k in ks], seeds=seeds,
        stability_threshold=args.stability_threshold, checkpoint_dir=run_dir,
        subsample=subsample,
    )  # fmt: skip
    summary = result.summary()
    summary["seconds"] = round(time.perf_counter() - started, 1)
    return summary, result.run_probabilities


def _seed_agreement(
    entry: dict[str, Any], probabilities: dict[str, np.ndarray], seeds: list[int]
) -> dict[str, Any]:
    out = {}
    for label, k in (("chosen_k", entry["chosen_k"]), ("k10", 10)):
        if k not in entry["k_range"]:
            continue
        runs = [probabilities[f"k{k}-s{seed}"].argmax(axis=1) for seed in seeds]
        aligned = [
            match_clusters(runs[0], run, previous_k=k, current_k=k).agreement for run in runs[1:]
        ]
        pairs = [
            match_clusters(runs[a], runs[b], previous_k=k, current_k=k).agreement
            for a in range(len(runs)) for b in range(a + 1, len(runs))
        ]  # fmt: skip
        out[label] = {"k": k, "aligned_to_first": aligned, "all_pairs_min": min(pairs)}
    return out


def _retrain(
    data: TrainingWindows, raw, feature_config, train_config, entry, args
) -> dict[str, Any]:
    k, seed = entry["chosen_k"], 0
    config = dataclasses.replace(train_config, n_clusters=k, seed=seed)
    rng = np.random.default_rng(0)
    subset = sorted(rng.choice(data.n_clips, size=round(0.8 * data.n_clips), replace=False))
    items = _items_placeholder(data)
    part = training_windows_from_embeddings([items[i] for i in subset], [raw[i] for i in subset])
    started = time.perf_counter()
    earlier = train_on_windows(part, config=config, feature_config=feature_config)
    # The earlier model assigns every training clip with its own statistics.
    all_for_earlier = dataclasses.replace(
        data,
        features=EmbeddingWindower.standardise_features(torch.cat(raw), earlier.norm_stats),
        norm_stats=earlier.norm_stats,
    )
    before = clip_probabilities(earlier.model, all_for_earlier).argmax(axis=1)
    later = load_trained_model(args.runs_dir / "esc10" / f"k{k}-s{seed}" / "model")
    after = clip_probabilities(later.model, data).argmax(axis=1)
    match = match_clusters(before, after, previous_k=k, current_k=k)
    return {
        "k": k, "seed": seed, "earlier_clips": len(subset), "later_clips": data.n_clips,
        "kept": match.agreement, "disappeared": match.disappeared,
        "new_clusters": sum(1 for c in match.clusters if c["new"]),
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip


def _items_placeholder(data: TrainingWindows):
    """Items for `training_windows_from_embeddings` (only their labels are read)."""
    from uvac.audio import DatasetItem

    names = data.label_names or []
    labels = [None] * data.n_clips
    if data.labels is not None:
        for clip, label in zip(data.clip_index.tolist(), data.labels, strict=True):
            labels[clip] = names[label]
    return [DatasetItem(path=Path(f"clip{i}"), label=labels[i], relpath=f"clip{i}")
            for i in range(data.n_clips)]  # fmt: skip


def draw_figures(results: dict[str, Any], directory: Path) -> list[Path]:
    """``selection_<data set>.png``: each criterion against K, the choice marked (the report's
    own figure, `reports.sweep_chart`)."""
    import matplotlib

    from reports import sweep_chart

    written = []
    for dataset in DATASETS:
        entry = results.get(dataset)
        if not isinstance(entry, dict) or not entry.get("candidates"):
            continue
        with matplotlib.rc_context({"text.parse_math": False}):
            figure = sweep_chart(entry)
        if figure is not None:
            path = directory / f"selection_{dataset}.png"
            path.write_bytes(figure)
            written.append(path)
    return written


def _write(results: dict[str, Any], args: argparse.Namespace) -> None:
    public = {
        key: ({k: v for k, v in value.items() if not k.startswith("_")}
              if isinstance(value, dict) else value)
        for key, value in results.items()
    }  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(public, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())

"""What cheaper encoder variants and 16 kHz recordings cost in clustering quality.

Variants, each embedded once (`benchmarks.embedding_cache`), then Cat. UVAC (the data set's
preset) and K-means trained on the training split and scored on the test split, 3 seeds:

- ``esc10`` with the sound encoder: ``fp32`` (the reference), ``bf16`` (the encoder under
  bf16 autocast), ``from-16k`` (every clip first resampled to 16 kHz, as a hearing aid or a
  phone records, then back up to the encoder's 44.1 kHz: nothing above 8 kHz is left);
- ``fsdd`` with the speech encoder: ``fp32`` and ``qint8`` (the package's dynamically
  quantised ONNX graph).

For each variant it also records how close its embeddings are to the reference (mean cosine
similarity per window) and how often a Cat. UVAC trained on reference embeddings assigns the
variant's test clips to the same cluster as their reference embeddings (what serving a
cheaper encoder behind a model trained on the reference would change). Speed of the
variants: ``benchmarks/encoder_speed.py``. Writes ``results/encoder_study.json``.

    .venv/bin/python benchmarks/encoder_study.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torchaudio

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from benchmarks.common import machine_info, write_results  # noqa: E402
from benchmarks.embedding_cache import cached_embeddings  # noqa: E402
from uvac.audio import (  # noqa: E402
    WEIGHTS_QINT8,
    Audio,
    AudioFolder,
    DatasetItem,
    EmbeddingWindower,
    FeatureConfig,
    SpeechEncoder,
    Windows,
    load_audio,
)
from uvac.evaluation import evaluate_clusterer  # noqa: E402
from uvac.training import (  # noqa: E402
    TrainedModel,
    build_configs,
    train_on_windows,
    training_windows_from_embeddings,
)

logger = logging.getLogger("benchmarks.encoder_study")

LOW_RATE = 16000


def _from_16k(item: DatasetItem, sample_rate: int) -> Audio:
    low = load_audio(item.path, sample_rate=LOW_RATE)
    samples = torchaudio.functional.resample(torch.from_numpy(low.samples), LOW_RATE, sample_rate)
    return Audio.from_samples(samples.numpy(), sample_rate=sample_rate)


def _bf16() -> contextlib.AbstractContextManager[Any]:
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _variant_embedder(name: str, feature_config: FeatureConfig) -> EmbeddingWindower:
    embedder = EmbeddingWindower(feature_config)
    if name == "qint8":
        embedder.encoder = SpeechEncoder(weights=WEIGHTS_QINT8)
    return embedder


def _embed(
    items: list[DatasetItem], feature_config: FeatureConfig, variant: str
) -> dict[str, Windows]:
    options: dict[str, Any] = {"embedder": _variant_embedder(variant, feature_config)}
    if variant == "bf16":
        options["context"] = _bf16
    if variant == "from-16k":
        options["loader"] = _from_16k
    return cached_embeddings(items, feature_config, variant=variant, **options)


def _train(
    preset: str, method: str, seed: int, n_clusters: int, train: list[DatasetItem],
    windows: dict[str, Windows],
) -> TrainedModel:  # fmt: skip
    overrides: dict[str, Any] = {"model_type": method, "n_clusters": n_clusters, "seed": seed}
    feature_config, config = build_configs(preset, train_overrides=overrides)
    data = training_windows_from_embeddings(
        train, [windows[str(item.path)].features for item in train]
    )
    return train_on_windows(data, config=config, feature_config=feature_config)


def _agreement(
    trained: TrainedModel, reference: dict[str, Windows], variant: dict[str, Windows],
    test: list[DatasetItem],
) -> float:  # fmt: skip
    """Share of test clips the reference-trained model puts in the same cluster either way."""
    same = 0
    embedder = EmbeddingWindower.standardise_features
    with torch.inference_mode():
        for item in test:
            key = str(item.path)
            clusters = [
                trained.model.cluster_probabilities(
                    embedder(windows[key].features, trained.norm_stats), windows[key].mask
                ).mean(dim=0).argmax()
                for windows in (reference, variant)
            ]  # fmt: skip
            same += int(clusters[0] == clusters[1])
    return same / len(test)


def _cosine(reference: dict[str, Windows], variant: dict[str, Windows]) -> float:
    similarities = [
        torch.nn.functional.cosine_similarity(
            reference[key].features[:, 0, 0], variant[key].features[:, 0, 0], dim=1
        ).mean().item()
        for key in reference
    ]  # fmt: skip
    return statistics.fmean(similarities)


STUDIES: dict[str, tuple[str, str, list[str]]] = {
    # data set -> (folder argument, preset, variants; the first is the reference)
    "esc10": ("esc10", "scenes", ["fp32", "bf16", "from-16k"]),
    "fsdd": ("fsdd", "speech", ["fp32", "qint8"]),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fsdd", type=Path, default=REPO.parent / "shared/data/fsdd")
    parser.add_argument("--esc10", type=Path, default=REPO.parent / "shared/data/esc10")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--studies", nargs="+", default=list(STUDIES), choices=list(STUDIES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--output", type=Path, default=REPO / "benchmarks/results/encoder_study.json"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"machine": machine_info(), "seeds": args.seeds}
    for study in args.studies:
        folder, preset, variants = STUDIES[study]
        root = getattr(args, folder)
        train = AudioFolder.scan(root, split="train").items
        test = AudioFolder.scan(root, split="test").items
        feature_config, _ = build_configs(preset)
        everything = AudioFolder.scan(root).items  # the order the bundle script caches
        embedded = {variant: _embed(everything, feature_config, variant) for variant in variants}
        reference = embedded[variants[0]]
        study_results: dict[str, Any] = {"preset": preset}
        reference_models: dict[int, TrainedModel] = {}  # Cat. UVAC on the reference, by seed
        for variant in variants:
            rows: dict[str, Any] = {}
            for method in ("cat-uvac", "kmeans"):
                runs = []
                for seed in args.seeds:
                    started = time.perf_counter()
                    trained = _train(preset, method, seed, 10, train, embedded[variant])
                    report = evaluate_clusterer(trained, test, embedding_cache=embedded[variant])
                    run: dict[str, Any] = {
                        "seed": seed, "acc": report.accuracy, "nmi": report.nmi,
                        "train_seconds": round(time.perf_counter() - started, 1),
                    }  # fmt: skip
                    if method == "cat-uvac" and variant == variants[0]:
                        reference_models[seed] = trained
                    elif method == "cat-uvac":
                        run["same_cluster_as_reference"] = _agreement(
                            reference_models[seed], reference, embedded[variant], test
                        )
                    runs.append(run)
                    logger.info("%s %s %s seed %d: %s", study, variant, method, seed, run)
                rows[method] = {
                    "acc": statistics.fmean(r["acc"] for r in runs),
                    "nmi": statistics.fmean(r["nmi"] for r in runs),
                    "runs": runs,
                }
                agreement = [
                    r["same_cluster_as_reference"] for r in runs if "same_cluster_as_reference" in r
                ]
                if agreement:
                    rows[method]["same_cluster_as_reference"] = statistics.fmean(agreement)
            if variant != variants[0]:
                rows["cosine_to_reference"] = _cosine(reference, embedded[variant])
            study_results[variant] = rows
        results[study] = study_results
        write_results(args.output, results)
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2)[:4000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

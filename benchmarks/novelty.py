"""Novelty: how well each candidate score tells recordings a model never met from known ones.

Measures, on cached encoder embeddings (`benchmarks.embedding_cache`, so reruns skip the
encoders):

- ``esc10_leave_out``: the sound encoder's windows of 5 ESC-10 classes (train split, folds
  2-5) fit the score; the test split (fold 1) of all 10 classes is scored, the other 5 classes
  being unknown; ``--splits`` random choices of the 5 classes. AUROC per split and the share of
  known test clips flagged at the default 5 % false-alarm rate (calibrated on cross-fitted
  held-out training windows, exactly as training does it: `uvac.novelty.fit_novelty`).
- ``far``: ESC-10's train split (sound encoder) against FSDD's test split, and FSDD's train
  split (speech encoder) against ESC-10's test split.
- every candidate side by side: the shipped relative Mahalanobis distance (to the nearest
  K-means centre with a shared covariance, less a weight times the distance to the mean under
  the data's own covariance) at several shrinkages and weights, the plain distance to the
  nearest centre at several shrinkages and with Ledoit-Wolf's covariance; k-nearest-
  neighbour distances on standardised, L2-normalised embeddings (per window) and on
  standardised ones; for the shipped ESC-10 model (`app/default_model/bundle`, trained on the
  same split) also the maximum of pi, the energy of pi and a rank combination, on ``far``.
- ``speech``: the share of FSDD clips and of six non-speech ESC-10 classes that Silero VAD
  reports as holding speech (`uvac.audio.speech_activity`, clip share >= SPEECH_PRESENT_SHARE).
- ``serving_cost``: the score's time per window and its memory, against a kNN reference of
  10,000 training windows.

Usage, from the repository root::

    UVAC_BENCH_CACHE=... .venv/bin/python benchmarks/novelty.py --threads 1
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from sklearn.covariance import LedoitWolf  # noqa: E402

from benchmarks.common import RESULTS_DIR, LoadMonitor, machine_info, write_results  # noqa: E402
from benchmarks.embedding_cache import cached_embeddings  # noqa: E402
from uvac.audio import (  # noqa: E402
    AudioFolder,
    FeatureConfig,
    fit_embedding_stats,
    load_audio,
    load_speech_detector,
)
from uvac.audio.speech_activity import SPEECH_PRESENT_SHARE  # noqa: E402
from uvac.evaluation import separation  # noqa: E402
from uvac.novelty import (  # noqa: E402
    DEFAULT_BACKGROUND_WEIGHT,
    DEFAULT_FALSE_ALARM_RATE,
    DEFAULT_SHRINKAGE,
    NoveltyScore,
    fit_novelty,
)
from uvac.training import build_configs, load_trained_model  # noqa: E402

logger = logging.getLogger("benchmarks.novelty")

DEFAULT_SCORE = f"relative_mahalanobis_shrink{DEFAULT_SHRINKAGE}_weight{DEFAULT_BACKGROUND_WEIGHT}"
NON_SPEECH_CLASSES = (
    "002 - Rain", "003 - Sea waves", "010 - Fire crackling", "007 - Helicopter",
    "008 - Chainsaw", "005 - Clock tick",
)  # fmt: skip
Clips = list[np.ndarray]  # per clip, its window vectors (W_i, D)
Candidate = Callable[[np.ndarray, np.ndarray, int], np.ndarray]  # (train, query, K) -> scores


# ------------------------------------------------------------------------------- candidates


def _mahalanobis(shrinkage: float, *, background_weight: float = 0.0) -> Candidate:
    def score(train: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
        fitted = NoveltyScore.fit(
            torch.from_numpy(train),
            n_clusters=k,
            shrinkage=shrinkage,
            background_weight=background_weight,
        )
        return fitted.scores(torch.from_numpy(query)).numpy()

    return score


def _mahalanobis_ledoit_wolf(train: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    base = NoveltyScore.fit(
        torch.from_numpy(train), n_clusters=k, shrinkage=1.0, background_weight=0.0
    )
    standard = (train - base.mean.numpy()) / base.std.numpy()
    centres = base.centres.numpy() / np.diag(base.whitening.numpy())[None, :]  # back to standard
    nearest = ((standard[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
    precision = LedoitWolf().fit(standard - centres[nearest]).precision_
    q = (query - base.mean.numpy()) / base.std.numpy()
    return np.stack(
        [np.einsum("nd,de,ne->n", q - c, precision, q - c) for c in centres], axis=1
    ).min(axis=1)


def _standardise(train: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(0), train.std(0)
    std[std < 1e-6] = 1.0
    return (train - mean) / std, (query - mean) / std


def _knn(neighbours: int, *, l2: bool) -> Candidate:
    def score(train: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
        reference, q = _standardise(train, query)
        if l2:
            reference = reference / np.linalg.norm(reference, axis=1, keepdims=True)
            q = q / np.linalg.norm(q, axis=1, keepdims=True)
        distances = (
            (q**2).sum(1)[:, None] + (reference**2).sum(1)[None, :] - 2 * q @ reference.T
        )  # (Q, N) squared distances
        return np.sort(distances, axis=1)[:, neighbours - 1]

    return score


# (shrinkage, background weight) of the relative candidates: weight 1 is Ren et al.'s score.
_RELATIVE_SETTINGS = (
    (0.8, 1.0), (0.9, 1.0), (0.95, 1.0), (0.9, 0.5), (0.9, 0.65), (0.95, 0.75),
    (DEFAULT_SHRINKAGE, DEFAULT_BACKGROUND_WEIGHT),
)  # fmt: skip
CANDIDATES: dict[str, Candidate] = {
    **{f"mahalanobis_shrink{s}": _mahalanobis(s) for s in (0.5, 0.8, 0.9, 1.0)},
    **{
        f"relative_mahalanobis_shrink{s}_weight{w}": _mahalanobis(s, background_weight=w)
        for s, w in _RELATIVE_SETTINGS
    },
    "mahalanobis_ledoit_wolf": _mahalanobis_ledoit_wolf,
    "knn1_l2": _knn(1, l2=True),
    "knn5_l2": _knn(5, l2=True),
    "knn10_l2": _knn(10, l2=True),
    "knn1_standardised": _knn(1, l2=False),
}


# ------------------------------------------------------------------------------------ data


def _embeddings(root: Path, split: str, config: FeatureConfig) -> tuple[list[str], Clips]:
    items = AudioFolder.scan(root, split=split).items  # type: ignore[arg-type]
    windows = cached_embeddings(items, config)
    vectors = [windows[str(i.path)].features[:, 0, 0, :].double().numpy() for i in items]
    return [str(i.label) for i in items], vectors


def _clip_scores(window_scores: np.ndarray, clips: Clips) -> np.ndarray:
    """Each clip's mean window score (every cached window is full, so weights are equal);
    windows the encoder gives no finite embedding for (silence, for the speech encoder) are
    left out, as serving leaves them out; a clip with none scores as the most novel."""
    bounds = np.cumsum([0, *[len(c) for c in clips]])
    out = []
    for a, b in itertools.pairwise(bounds):
        finite = window_scores[a:b][np.isfinite(window_scores[a:b])]
        out.append(finite.mean() if finite.size else np.finfo(np.float64).max)
    return np.array(out)


def _evaluate(
    train: Clips, known: Clips, unknown: Clips, *, k: int, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Every candidate's AUROC and FPR95 (clip level), and the shipped score's flag rates."""
    raw_train = np.concatenate(train)
    stats = fit_embedding_stats(torch.from_numpy(raw_train).float())
    mean, std = stats.mean.double().numpy(), stats.std.double().numpy()
    train_std = [(c - mean) / std for c in train]
    queries = [(c - mean) / std for c in [*known, *unknown]]
    flat_train, flat_query = np.concatenate(train_std), np.concatenate(queries)
    result: dict[str, Any] = {"candidates": {}}
    for name, candidate in CANDIDATES.items():
        clip = _clip_scores(candidate(flat_train, flat_query, k), queries)
        sep = separation(clip[: len(known)].tolist(), clip[len(known) :].tolist())
        result["candidates"][name] = sep.to_dict()
    clip_index = torch.cat([torch.full((len(c),), i) for i, c in enumerate(train_std)])
    fitted = fit_novelty(torch.from_numpy(flat_train), clip_index, n_clusters=k)
    assert fitted is not None
    threshold = fitted.calibration.threshold()
    window = fitted.score.scores(torch.from_numpy(flat_query)).numpy()
    flags = np.where(np.isfinite(window), window > threshold, np.nan)
    flagged = _clip_scores(flags, queries) > 0.5
    result["known_flagged_rate"] = float(flagged[: len(known)].mean())
    result["unknown_flagged_rate"] = float(flagged[len(known) :].mean())
    result["default"] = result["candidates"][DEFAULT_SCORE]
    result.update(extra or {})
    return result


def leave_out(labels: list[str], train: Clips, test_labels: list[str], test: Clips, splits: int):
    rng = np.random.default_rng(0)
    classes = sorted(set(labels))
    runs = []
    for split in range(splits):
        known = sorted(str(c) for c in rng.choice(classes, size=5, replace=False))
        run = _evaluate(
            [c for c, label in zip(train, labels, strict=True) if label in known],
            [c for c, label in zip(test, test_labels, strict=True) if label in known],
            [c for c, label in zip(test, test_labels, strict=True) if label not in known],
            k=5,
            extra={"known_classes": known},
        )
        logger.info("split %d: default AUROC %.3f, known flagged %.3f", split,
                    run["default"]["auroc"], run["known_flagged_rate"])  # fmt: skip
        runs.append(run)
    per_candidate = {
        name: {
            "auroc_mean": round(float(np.mean([r["candidates"][name]["auroc"] for r in runs])), 4),
            "auroc_min": round(float(np.min([r["candidates"][name]["auroc"] for r in runs])), 4),
            "fpr95_mean": round(
                float(np.mean([r["candidates"][name]["fpr_at_95_tpr"] for r in runs])), 4
            ),
        }
        for name in CANDIDATES
    }
    default = per_candidate[DEFAULT_SCORE]
    return {
        "splits": len(runs),
        "auroc_mean": default["auroc_mean"],
        "auroc_min": default["auroc_min"],
        "auroc_max": round(float(np.max([r["default"]["auroc"] for r in runs])), 4),
        "fpr95_mean": default["fpr95_mean"],
        "known_flagged_rate": round(float(np.mean([r["known_flagged_rate"] for r in runs])), 4),
        "unknown_flagged_rate": round(float(np.mean([r["unknown_flagged_rate"] for r in runs])), 4),
        "candidates": per_candidate,
        "runs": runs,
    }


def pi_candidates(esc_test: Clips, fsdd_test: Clips) -> dict[str, Any]:
    """Scores from the shipped ESC-10 model's pi (ESC-10 test known, FSDD test unknown)."""
    trained = load_trained_model(REPO / "app/default_model/bundle")
    stats = trained.norm_stats
    out = {}

    def logits_of(clips: Clips) -> np.ndarray:
        x = np.concatenate(clips)
        features = (torch.from_numpy(x).float() - stats.mean) / stats.std
        with torch.inference_mode():
            pi = trained.model.cluster_probabilities(features[:, None, None, :], None)
        return pi.double().numpy()

    known_pi, unknown_pi = logits_of(esc_test), logits_of(fsdd_test)
    scores = {
        "max_pi": (-known_pi.max(1), -unknown_pi.max(1)),
        # The energy needs the logits; -logsumexp(log pi) is 0 for every pi, so the spread of
        # pi is measured by its entropy instead.
        "entropy_pi": (_entropy(known_pi), _entropy(unknown_pi)),
    }
    for name, (known, unknown) in scores.items():
        sep = separation(
            _clip_scores(known, esc_test).tolist(), _clip_scores(unknown, fsdd_test).tolist()
        )
        out[name] = sep.to_dict()
    return out


def _entropy(pi: np.ndarray) -> np.ndarray:
    return -(pi * np.log(np.clip(pi, 1e-12, 1.0))).sum(axis=1)


def speech_presence(fsdd_root: Path, esc_root: Path) -> dict[str, Any]:
    detector = load_speech_detector()
    fsdd = AudioFolder.scan(fsdd_root).items
    esc = [i for i in AudioFolder.scan(esc_root).items if str(i.label) in NON_SPEECH_CLASSES]

    def present(path: Path) -> bool:
        audio = load_audio(path, sample_rate=16_000)
        (share,) = detector.speech_shares(audio, [(0.0, audio.duration_s)])
        return share >= SPEECH_PRESENT_SHARE

    started = time.perf_counter()
    fsdd_flags = [present(i.path) for i in fsdd]
    esc_flags = {
        label: [present(i.path) for i in esc if i.label == label] for label in NON_SPEECH_CLASSES
    }
    all_esc = [flag for flags in esc_flags.values() for flag in flags]  # fmt: skip
    return {
        "rule": f"clip speech share >= {SPEECH_PRESENT_SHARE}",
        "detector": detector.identity.to_dict(),
        "fsdd_clips": len(fsdd_flags),
        "fsdd_rate": round(float(np.mean(fsdd_flags)), 4),
        "esc10_nonspeech_clips": len(all_esc),
        "esc10_nonspeech_rate": round(float(np.mean(all_esc)), 4),
        "esc10_per_class": {k: round(float(np.mean(v)), 4) for k, v in esc_flags.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


def serving_cost(dimensions: int, k: int, *, windows: int = 1000) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(2000, dimensions, generator=generator, dtype=torch.float64)
    score = NoveltyScore.fit(train, n_clusters=k)
    query = torch.randn(windows, dimensions, generator=generator)
    score.scores(query[:10])
    started = time.perf_counter()
    for row in range(windows):  # one window per call, as a single clip's window would be
        score.scores(query[row : row + 1])
    per_window = (time.perf_counter() - started) / windows
    stored = sum(t.numel() * t.element_size() for t in score.to_tensors("").values())
    return {
        "dimensions": dimensions,
        "centres": k,
        "microseconds_per_window": round(per_window * 1e6, 1),
        "score_bytes": stored,
        "knn_reference_bytes_10000_windows": 10_000 * dimensions * 4,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--esc10", type=Path, default=REPO.parent / "shared/data/esc10")
    parser.add_argument("--fsdd", type=Path, default=REPO.parent / "shared/data/fsdd")
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=RESULTS_DIR / "novelty.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    sound, _ = build_configs("scenes")
    speech, _ = build_configs("speech")
    with LoadMonitor() as load:
        esc_labels, esc_train = _embeddings(args.esc10, "train", sound)
        esc_test_labels, esc_test = _embeddings(args.esc10, "test", sound)
        _, fsdd_test_sound = _embeddings(args.fsdd, "test", sound)
        _, fsdd_train = _embeddings(args.fsdd, "train", speech)
        _, fsdd_test = _embeddings(args.fsdd, "test", speech)
        _, esc_test_speech = _embeddings(args.esc10, "test", speech)
        document: dict[str, Any] = {"default_score": DEFAULT_SCORE}
        document["esc10_leave_out"] = leave_out(
            esc_labels, esc_train, esc_test_labels, esc_test, args.splits
        )
        esc_vs_fsdd = _evaluate(esc_train, esc_test, fsdd_test_sound, k=10)
        esc_vs_fsdd["candidates"].update(pi_candidates(esc_test, fsdd_test_sound))
        fsdd_vs_esc = _evaluate(fsdd_train, fsdd_test, esc_test_speech, k=10)
        document["far"] = {
            "esc10_vs_fsdd": {"auroc": esc_vs_fsdd["default"]["auroc"], **esc_vs_fsdd},
            "fsdd_vs_esc10": {"auroc": fsdd_vs_esc["default"]["auroc"], **fsdd_vs_esc},
        }
        document["speech"] = speech_presence(args.fsdd, args.esc10)
        document["serving_cost"] = [serving_cost(512, 10), serving_cost(2048, 10)]
        document["candidates"] = {
            name: {
                "esc10_leave_out": document["esc10_leave_out"]["candidates"].get(name),
                "far_esc10_vs_fsdd": esc_vs_fsdd["candidates"][name],
                "far_fsdd_vs_esc10": fsdd_vs_esc["candidates"].get(name),
            }
            for name in esc_vs_fsdd["candidates"]
        }
        document["false_alarm_rate"] = DEFAULT_FALSE_ALARM_RATE
    document["machine"] = machine_info()
    document["load"] = load.summary()
    write_results(args.json, document)
    leave = document["esc10_leave_out"]
    logger.info(
        "default %s: leave-out AUROC %.3f (min %.3f), known flagged %.3f; far %.3f / %.3f; "
        "speech FSDD %.3f, ESC-10 non-speech %.3f",
        DEFAULT_SCORE, leave["auroc_mean"], leave["auroc_min"], leave["known_flagged_rate"],
        document["far"]["esc10_vs_fsdd"]["auroc"], document["far"]["fsdd_vs_esc10"]["auroc"],
        document["speech"]["fsdd_rate"], document["speech"]["esc10_nonspeech_rate"],
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

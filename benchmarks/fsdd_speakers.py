"""Why FSDD's digits are hard to cluster: how far the features carry a digit across speakers.

On log-mel features the quality benchmark's FSDD target is not met (results/quality.json). This
script measures the reason on the training split, in the feature space a preset gives every method,
with the speaker read from the file name ({digit}_{speaker}_{take}.wav) and used only for diagnosis:

- ``nearest_neighbour``: the share of windows whose nearest other window has the same digit,
  the same speaker, and (the number that matters) the same digit when the neighbour must come
  from another speaker; ``speaker_pairs`` gives the latter for every ordered pair of speakers.
- ``partitions``: K-means and Ward with K=10 (accuracy and NMI against the digits, NMI against
  the speakers), and two oracles that are told the speakers: Ward after standardising each
  speaker's windows, and each speaker clustered alone (Ward) with the clusters then matched
  across speakers by their centroids (iterated Hungarian matching to a consensus). The last
  oracle is repeated with each speaker's true digit partition, an upper bound on what matching
  templates across speakers can reach in this space.

Usage (from the repository root)::

    .venv/bin/python benchmarks/fsdd_speakers.py --fsdd path/to/fsdd

Writes ``benchmarks/results/fsdd_speakers.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import AgglomerativeClustering, KMeans

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from uvac import metrics  # noqa: E402
from uvac.audio import AudioFolder  # noqa: E402
from uvac.training import build_configs, windows_for_training  # noqa: E402

logger = logging.getLogger("benchmarks.fsdd_speakers")

N_DIGITS = 10
MATCHING_ROUNDS = 10


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    feature_config, _ = build_configs(args.preset)
    items = AudioFolder.scan(Path(args.fsdd), split="train").items
    data = windows_for_training(items, feature_config=feature_config)
    if data.labels is None or data.n_clips != data.features.shape[0]:
        raise SystemExit("expected one labelled window per FSDD clip")
    vectors = data.features.flatten(start_dim=1).double().numpy()  # (N, T*F)
    digits = np.asarray(data.labels)
    speaker_names, speakers = np.unique(
        [Path(item.path).stem.split("_")[1] for item in items], return_inverse=True
    )
    distances = _distances(vectors)  # (N, N), shared by the two neighbour analyses
    result: dict[str, Any] = {
        "preset": args.preset,
        "windows": len(digits),
        "speakers": speaker_names.tolist(),
        "nearest_neighbour": _nearest_neighbour(distances, digits, speakers),
        "speaker_pairs": _speaker_pairs(distances, digits, speakers),
        "partitions": _partitions(vectors, digits, speakers, seed=args.seed),
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    _print_summary(result)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fsdd", default=str(REPO.parent / "shared/data/fsdd"))
    parser.add_argument("--preset", default="words-logmel")  # the log-mel study it explains
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/fsdd_speakers.json")
    return parser.parse_args(argv)


def _distances(vectors: np.ndarray) -> np.ndarray:
    """(N, N) Euclidean distances with the diagonal at infinity (a window is not its own
    neighbour)."""
    tensor = torch.from_numpy(vectors)
    distances = torch.cdist(tensor, tensor).numpy()
    np.fill_diagonal(distances, np.inf)
    return distances


def _nearest_neighbour(
    distances: np.ndarray, digits: np.ndarray, speakers: np.ndarray
) -> dict[str, float]:
    nearest = distances.argmin(axis=1)
    other_speakers = np.where(speakers[:, None] == speakers[None, :], np.inf, distances)
    nearest_other_speaker = other_speakers.argmin(axis=1)
    return {
        "same_digit": float(np.mean(digits[nearest] == digits)),
        "same_speaker": float(np.mean(speakers[nearest] == speakers)),
        "same_digit_from_another_speaker": float(np.mean(digits[nearest_other_speaker] == digits)),
    }


def _speaker_pairs(
    distances: np.ndarray, digits: np.ndarray, speakers: np.ndarray
) -> list[list[float | None]]:
    """[a][b]: share of speaker a's windows whose nearest window of speaker b has their digit."""
    n_speakers = int(speakers.max()) + 1
    table: list[list[float | None]] = []
    for a in range(n_speakers):
        row: list[float | None] = []
        for b in range(n_speakers):
            if a == b:
                row.append(None)
                continue
            block = distances[np.ix_(speakers == a, speakers == b)]
            row.append(
                float(np.mean(digits[speakers == b][block.argmin(axis=1)] == digits[speakers == a]))
            )
        table.append(row)
    return table


def _partitions(
    vectors: np.ndarray, digits: np.ndarray, speakers: np.ndarray, *, seed: int
) -> dict[str, dict[str, float]]:
    n_speakers = int(speakers.max()) + 1
    standardised = vectors.copy()
    for s in range(n_speakers):
        own = speakers == s
        standardised[own] = (vectors[own] - vectors[own].mean(0)) / (vectors[own].std(0) + 1e-6)
    per_speaker_ward = {
        s: AgglomerativeClustering(N_DIGITS).fit_predict(vectors[speakers == s])
        for s in range(n_speakers)
    }
    per_speaker_truth = {s: digits[speakers == s] for s in range(n_speakers)}
    partitions = {
        "kmeans": KMeans(N_DIGITS, n_init=10, random_state=seed).fit_predict(vectors),
        "ward": AgglomerativeClustering(N_DIGITS).fit_predict(vectors),
        "oracle_speaker_standardised_ward": AgglomerativeClustering(N_DIGITS).fit_predict(
            standardised
        ),
        "oracle_per_speaker_ward_matched": _match_across_speakers(
            vectors, speakers, per_speaker_ward
        ),
        "oracle_per_speaker_truth_matched": _match_across_speakers(
            vectors, speakers, per_speaker_truth
        ),
    }
    scores = {}
    for name, clusters in partitions.items():
        scores[name] = {
            "acc": metrics.unsupervised_accuracy(digits.tolist(), clusters),
            "nmi": metrics.nmi(digits.tolist(), clusters),
            "nmi_speaker": metrics.nmi(speakers.tolist(), clusters),
        }
    scores["oracle_per_speaker_ward_within"] = {
        "acc": float(
            np.mean(
                [
                    metrics.unsupervised_accuracy(
                        digits[speakers == s].tolist(), per_speaker_ward[s]
                    )
                    for s in range(n_speakers)
                ]
            )
        )
    }
    return scores


def _match_across_speakers(
    vectors: np.ndarray, speakers: np.ndarray, clusters_of: dict[int, np.ndarray]
) -> np.ndarray:
    """One global partition from per-speaker ones: each speaker's cluster centroids are matched
    (Hungarian, squared Euclidean) to a consensus, which is then the mean of the matched
    centroids; the speaker whose clusters are most compact starts the consensus."""
    centroids = {
        s: np.stack([vectors[speakers == s][labels == k].mean(0) for k in range(N_DIGITS)])
        for s, labels in clusters_of.items()
    }  # speaker -> (K, D)
    spread = {
        s: float(
            np.mean([vectors[speakers == s][labels == k].var(0).sum() for k in range(N_DIGITS)])
        )
        for s, labels in clusters_of.items()
    }
    consensus = centroids[min(spread, key=spread.__getitem__)]  # (K, D)
    mapping = {s: np.arange(N_DIGITS) for s in centroids}
    for _ in range(MATCHING_ROUNDS):
        for s, own in centroids.items():
            cost = ((own[:, None, :] - consensus[None, :, :]) ** 2).sum(-1)  # (K, K)
            _, mapping[s] = linear_sum_assignment(cost)
        consensus = np.mean(
            [centroids[s][np.argsort(mapping[s])] for s in centroids], axis=0
        )  # (K, D)
    merged = np.empty(len(speakers), dtype=np.int64)
    for s, labels in clusters_of.items():
        merged[speakers == s] = mapping[s][labels]
    return merged


def _print_summary(result: dict[str, Any]) -> None:
    nn = result["nearest_neighbour"]
    print(f"FSDD train split, preset {result['preset']}, {result['windows']} windows")
    print(
        f"nearest neighbour: same digit {nn['same_digit']:.3f}, same speaker "
        f"{nn['same_speaker']:.3f}, same digit from another speaker "
        f"{nn['same_digit_from_another_speaker']:.3f}"
    )
    print("speaker pairs (row's windows, nearest window of the column's speaker, same digit):")
    for name, row in zip(result["speakers"], result["speaker_pairs"], strict=True):
        print(f"  {name:>9s} " + " ".join("  -  " if v is None else f"{v:.2f} " for v in row))
    for name, score in result["partitions"].items():
        text = " ".join(f"{key} {value:.3f}" for key, value in score.items())
        print(f"{name:>34s}: {text}")


if __name__ == "__main__":
    sys.exit(main())

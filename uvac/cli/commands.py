"""The ``uvac`` command: train a model on a folder, evaluate it, cluster recordings.

::

    uvac train DATA_DIR --out MODEL_DIR [--preset scenes|speech|paper|...] [--model-type cat-uvac]
               [--clusters 10] [--epochs N] [--lambda 0.5] [--seed 0] [--split train]
               [feature options: --n-mels 64 --window-seconds 1.0 ...] [--bf16] [--threads N]
    uvac evaluate MODEL_DIR DATA_DIR [--split test] [--json report.json]
    uvac cluster MODEL_DIR FILE... [--windows] [--json]   (a store version: $(uvac-store path REF))
    uvac distill TEACHER_DIR DATA_DIR --out MODEL_DIR    (uvac/cli_edge.py)
    uvac export MODEL_DIR --out DIR [--calibration DATA_DIR]
    uvac jobs watch JOB_ID [--url http://127.0.0.1:8000]   (a running service's job)
    uvac stream FILE|- --url ws://HOST:PORT/v1/stream     (uvac/cli/stream.py)

Exit codes: 0 success, 1 a run or some files failed (a message, no traceback), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import tqdm

from uvac.audio import AudioFolder, EmbeddingCache, FeatureConfig, load_audio
from uvac.cli.edge import add_edge_commands
from uvac.cli.jobs import add_job_commands
from uvac.cli.options import add_config_options, key_json_value, positive_int, prefixed
from uvac.cli.stream import add_stream_command
from uvac.device import (
    DEVICE_CHOICES,
    WORKLOADS,
    ThreadPolicy,
    available_cores,
    choose_thread_policy,
    configure_threads,
    resolve_device,
)
from uvac.errors import UvacError
from uvac.evaluation import (
    ClipResult,
    Clusterer,
    EvaluationReport,
    evaluate_with_baselines,
    render_titled_table,
)
from uvac.selection import renumbered
from uvac.training import (
    DEFAULT_PRESET,
    PRESETS,
    Progress,
    TrainConfig,
    build_configs,
    load_trained_model,
    save_trained_model,
    train_model,
)

if TYPE_CHECKING:
    from uvac.audio import Split

__all__ = ["main"]

logger = logging.getLogger(__name__)

SPACES = ("features", "latent")  # the spaces Table I is printed for, in this order


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``uvac`` console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.threads is not None:
        configure_threads(args.threads)
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except (UvacError, ValueError, OSError) as error:
        logger.debug("uvac %s failed", args.command_name, exc_info=True)
        print(f"uvac {args.command_name}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"uvac {args.command_name}: interrupted", file=sys.stderr)
        return 130


# ------------------------------------------------------------------------------ arguments


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uvac", description="Unsupervised acoustic clustering (categorical UVAC)."
    )
    commands = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--threads", type=positive_int,
        help="torch CPU threads for every step (default: the cores for an encoder, the count "
        "measured fastest for a small network)",
    )  # fmt: skip
    common.add_argument(
        "--embedding-cache", type=Path, metavar="DIR", default=_default_embedding_cache(),
        help="keep encoder embeddings here, so that a recording is embedded once "
        "(default: $UVAC_EMBEDDING_CACHE, else ~/.cache/uvac/embeddings)",
    )  # fmt: skip
    common.add_argument(
        "--no-embedding-cache", dest="embedding_cache", action="store_const", const=None,
        help="embed every recording again",
    )  # fmt: skip
    common.add_argument("-v", "--verbose", action="store_true", help="log progress details")

    train = commands.add_parser(
        "train", parents=[common], help="train a model on a folder of recordings"
    )
    train.set_defaults(command=_train)
    train.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    train.add_argument("--out", type=Path, required=True, help="folder to save the model in")
    train.add_argument(
        "--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET,
        help=f"training recipe (default: {DEFAULT_PRESET}); explicit options override it",
    )  # fmt: skip
    train.add_argument(
        "--split", choices=("train", "test", "all"), default="train",
        help="which part of the folder to train on (default: train)",
    )  # fmt: skip
    train.add_argument(
        "--checkpoint-dir", type=Path, help="write checkpoints here; resume from one found here"
    )
    train_options = train.add_argument_group("training options (default: from the preset)")
    add_config_options(train_options, TrainConfig, prefix="train.")
    train_options.add_argument(
        "--model-option", action="append", default=[], metavar="KEY=JSON",
        type=key_json_value, dest="model_options",
        help='a model constructor argument, e.g. --model-option "conv_channels=[8,16,16,32]"',
    )  # fmt: skip
    add_config_options(
        train.add_argument_group("feature options (default: from the preset)"),
        FeatureConfig,
        prefix="features.",
    )

    evaluate = commands.add_parser(
        "evaluate", parents=[common], help="evaluate a model on a folder (Table I layout)"
    )
    evaluate.set_defaults(command=_evaluate)
    evaluate.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    evaluate.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    evaluate.add_argument("--split", choices=("train", "test", "all"), default="test")
    evaluate.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    evaluate.add_argument("--batch-size", type=positive_int, default=64, help="windows per pass")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the K-means baseline")
    evaluate.add_argument("--format", choices=("plain", "markdown"), default="plain")
    evaluate.add_argument("--device", choices=DEVICE_CHOICES, default="cpu")

    cluster = commands.add_parser(
        "cluster", parents=[common], help="print cluster probabilities of recordings"
    )
    cluster.set_defaults(command=_cluster)
    cluster.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    cluster.add_argument("files", type=Path, nargs="+", metavar="FILE")
    cluster.add_argument("--windows", action="store_true", help="also print every window")
    cluster.add_argument("--json", action="store_true", help="print one JSON document")
    cluster.add_argument("--device", choices=DEVICE_CHOICES, default="cpu")
    add_edge_commands(commands, common)
    add_job_commands(commands, common)
    add_stream_command(commands, common)
    return parser


def _default_embedding_cache() -> Path:
    configured = os.environ.get("UVAC_EMBEDDING_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "uvac" / "embeddings"


def _embedding_cache(args: argparse.Namespace) -> EmbeddingCache | None:
    return None if args.embedding_cache is None else EmbeddingCache(args.embedding_cache)


def _thread_policy(args: argparse.Namespace) -> ThreadPolicy:
    """One process on this machine's cores; ``--threads`` fixes every workload."""
    fixed = dict.fromkeys(WORKLOADS, args.threads)
    return choose_thread_policy(cores=available_cores(), processes=1, overrides=fixed)


def _split(name: str) -> Split | None:
    if name == "all":
        return None
    return "train" if name == "train" else "test"


# ---------------------------------------------------------------------------------- train


def _train(args: argparse.Namespace) -> int:
    train_overrides = prefixed(args, "train.")
    if args.model_options:
        train_overrides["model_hyperparameters"] = dict(args.model_options)
    feature_config, train_config = build_configs(
        args.preset,
        feature_overrides=prefixed(args, "features."),
        train_overrides=train_overrides,
    )
    folder = AudioFolder.scan(args.data_dir, split=_split(args.split))
    print(
        f"training {train_config.model_type} (K={train_config.n_clusters}, "
        f"preset {args.preset}) on {len(folder)} files of {folder.root} "
        f"(split {args.split}, labels from {folder.label_source})",
        file=sys.stderr,
    )
    encoding = (
        tqdm.tqdm(total=len(folder), unit="clip", desc=f"embedding ({feature_config.frontend})")
        if feature_config.uses_encoder
        else None
    )

    def on_encoding(done: int, total: int) -> None:
        if encoding is not None:
            encoding.update(done - encoding.n)
            if done == total:
                encoding.close()

    with tqdm.tqdm(total=train_config.epochs, unit="epoch", desc="training") as bar:

        def on_progress(progress: Progress) -> None:
            if progress.phase == "partition":  # the start, before the first epoch
                bar.set_description(f"partition {progress.step}/{progress.steps}")
                return
            bar.set_description("training")
            assert progress.epoch is not None and progress.epochs is not None
            if bar.total != progress.epochs:  # K-means fits in one "epoch"
                bar.total = progress.epochs
            bar.set_postfix(_postfix(progress), refresh=False)
            done = progress.epoch if progress.epoch_done else progress.epoch - 1
            if done > bar.n:
                bar.update(done - bar.n)
            else:
                bar.refresh()

        trained = train_model(
            folder.items,
            config=train_config,
            feature_config=feature_config,
            progress=on_progress,
            checkpoint_dir=args.checkpoint_dir,
            dataset_digest=folder.manifest_digest(),
            encoding_progress=on_encoding,
            embedding_cache=_embedding_cache(args),
            threads=_thread_policy(args),
        )
    save_trained_model(args.out, trained)
    print(f"saved {train_config.model_type} model to {args.out}")
    return 0


def _postfix(progress: Progress) -> dict[str, str]:
    postfix = {} if progress.loss is None else {"loss": f"{progress.loss:.4g}"}
    if progress.accuracy is not None:
        postfix["acc"] = f"{progress.accuracy:.3f}"
    if progress.nmi is not None:
        postfix["nmi"] = f"{progress.nmi:.3f}"
    return postfix


# ------------------------------------------------------------------------------- evaluate


def _evaluate(args: argparse.Namespace) -> int:
    trained = load_trained_model(args.model_dir)
    trained.model.to(resolve_device(args.device))
    folder = AudioFolder.scan(args.data_dir, split=_split(args.split))
    dataset = folder.root.name
    with tqdm.tqdm(total=len(folder), unit="clip", desc="evaluating") as bar:

        def on_progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        rows = evaluate_with_baselines(
            trained, folder.items, batch_size=args.batch_size, seed=args.seed,
            progress=on_progress, embedding_cache=_embedding_cache(args),
        )  # fmt: skip

    model_report = rows[0]
    tables = {
        space: render_titled_table(
            [row.table_row(dataset=dataset, space=space) for row in rows],
            title=f"Silhouette, DBI, CHI on {space}: {model_report.scores[space].description}",
            style=args.format,
        )
        for space in SPACES
    }
    out = sys.stdout
    print(
        f"{dataset} (split {args.split}): {model_report.n_clips} clips, "
        f"{model_report.n_labelled} labelled",
        file=out,
    )
    for space in SPACES:
        print(f"\n{tables[space]}", file=out)
    _print_details(rows, out=out)
    for skipped in model_report.skipped:
        print(f"skipped {skipped['path']}: {skipped['reason']}", file=sys.stderr)

    if args.json is not None:
        document = {
            "dataset": dataset,
            "data_dir": str(folder.root),
            "split": args.split,
            "model_dir": str(args.model_dir),
            "model_type": model_report.model_type,
            "n_clusters": model_report.n_clusters,
            "rows": [row.to_dict() for row in rows],
            "tables": tables,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}", file=out)
    return 0


def _print_details(rows: Sequence[EvaluationReport], *, out: TextIO) -> None:
    print("", file=out)
    for row in rows:
        sizes = " ".join(str(size) for size in row.cluster_sizes)
        print(
            f"{row.method}: {row.clusters_used} of {row.n_clusters} clusters used; sizes {sizes}",
            file=out,
        )
        for space, scores in row.scores.items():
            if scores.note:
                print(f"  {space}: {scores.note}", file=out)


# -------------------------------------------------------------------------------- cluster


# `name@alias` or `name:vN` (model_store.refs): what a user of the API would type.
_STORE_REFERENCE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}(@[a-z][a-z0-9_-]{0,63}|:v[1-9][0-9]*)")


def _published_metadata(model_dir: Path) -> dict[str, Any] | None:
    """The publisher's metadata of a model store version folder (``metadata.json``, written
    by the store), or None for a folder `uvac train` wrote."""
    path = model_dir / "metadata.json"
    if not path.is_file():
        return None
    document = json.loads(path.read_text(encoding="utf-8"))
    metadata = document.get("metadata") if isinstance(document, dict) else None
    return metadata if isinstance(metadata, dict) else None


def _cluster(args: argparse.Namespace) -> int:
    model_dir = Path(args.model_dir)
    if not model_dir.exists() and _STORE_REFERENCE.fullmatch(str(model_dir)):
        raise ValueError(
            f"{model_dir} is a model store reference, and `uvac cluster` reads a model folder: "
            f'give it the version\'s folder, uvac cluster "$(uvac-store path {model_dir})" '
            f"FILE..., or cluster through the API (POST /v1/cluster?model={model_dir})"
        )
    published = _published_metadata(model_dir)
    # A store version numbers its clusters as the API does (matched to the earlier version).
    trained = renumbered(load_trained_model(model_dir), published)
    names = (published or {}).get("cluster_names") or {}
    clusterer = Clusterer(trained, device=args.device)
    sample_rate = trained.feature_config.sample_rate
    results: list[dict[str, Any]] = []
    failures = 0
    for path in args.files:
        try:
            audio = load_audio(path, sample_rate=sample_rate)
            (clip,) = clusterer.cluster_batch([audio])
        except (UvacError, OSError) as error:
            failures += 1
            print(f"{path}: error: {error}", file=sys.stderr)
            results.append({"file": str(path), "error": str(error)})
            continue
        result = _clip_dict(clip, with_windows=args.windows)
        result["cluster_name"] = names.get(str(result["assignment"]))
        results.append({"file": str(path), **result})
        if not args.json:
            _print_clip(path, result)
    if args.json:
        print(json.dumps({"model_dir": str(args.model_dir), "files": results}, indent=2))
    return 1 if failures else 0


def _clip_dict(clip: ClipResult, *, with_windows: bool) -> dict[str, Any]:
    result: dict[str, Any] = {
        "assignment": clip.assignment,
        "confidence": clip.confidence,
        "duration_s": clip.duration_s,
        "probabilities": list(clip.probabilities),
    }
    if with_windows:
        result["windows"] = [
            {
                "start_s": window.start_s,
                "end_s": window.end_s,
                "assignment": window.assignment,
                "probabilities": list(window.probabilities),
            }
            for window in clip.windows
        ]
    return result


def _print_clip(path: Path, result: dict[str, Any]) -> None:
    name = f" {result['cluster_name']!r}" if result.get("cluster_name") else ""
    print(
        f"{path}: cluster {result['assignment']}{name} (confidence {result['confidence']:.3f}, "
        f"{result['duration_s']:.2f} s)"
    )
    print(f"  pi: {_probabilities(result['probabilities'])}")
    for window in result.get("windows", []):
        print(
            f"  window {window['start_s']:7.2f}-{window['end_s']:7.2f} s: cluster "
            f"{window['assignment']}  pi: {_probabilities(window['probabilities'])}"
        )


def _probabilities(values: Sequence[float]) -> str:
    return " ".join(f"{value:.3f}" for value in values)


if __name__ == "__main__":
    sys.exit(main())

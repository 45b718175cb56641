"""Data sets: a folder of audio files, with optional labels and a deterministic split.

Files: every file under ``root`` (recursively) whose extension is in ``extensions``, case
insensitive, or whose first bytes are those of a format the loader decodes (a WAV saved as
``.dat`` is found; see `uvac.audio.decoding.sniff_format`); hidden files and folders (``.DS_Store``,
``__MACOSX`` and AppleDouble ``._x.wav``) and links pointing outside ``root`` are skipped.
Items are sorted by their relative path, so a scan of the same folder always gives the same
order.

Labels, decided once per data set, first rule that applies:

1. ``labels.csv`` at the root, columns ``path,label`` (header row required; paths relative to
   the root, ``/`` separated). Files it does not list, or lists with an empty label, have no
   label; rows naming missing files are ignored with a warning.
2. the parent folder's name, when the files live in two or more distinct folders
   (ESC-10: ``001 - Dog bark/1-100032-A.ogg`` -> ``001 - Dog bark``); folders named like a
   split (``train``, ``test``, ``val``, ...) are looked past, to the next folder up;
3. the file-name prefix before the first underscore, when every file name has one
   (FSDD: ``recordings/7_jackson_32.wav`` -> ``7``);
4. otherwise no labels.

Split (``split="train" | "test"``), decided once per data set, first rule that applies to
every file:

- FSDD naming ``<label>_<speaker>_<take>``: takes 0-4 are the test split (FSDD's official one);
- ESC naming ``<fold>-<clip id>-<take>`` (``1-100032-A``): fold 1 is the test split;
- anything else: a file is in the test split when the first 8 hex digits of the SHA-1 of its
  relative path, as an integer, modulo 100, are below 20 (about 20%, stable across machines
  and independent of the other files).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from uvac.audio.decoding import DECODED_FORMATS, sniff_format
from uvac.errors import DatasetError
from uvac.hashing import file_sha256

__all__ = ["AUDIO_EXTENSIONS", "LABELS_FILE", "AudioFolder", "DatasetItem"]

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
_SNIFF_BYTES = 64
LABELS_FILE = "labels.csv"
HASH_TEST_PERCENT = 20
FSDD_TEST_TAKES = range(0, 5)
ESC_TEST_FOLD = 1
# Folders named like a split say where a file belongs, not what it is: the folder label rule
# looks past them (train/dog/x.wav -> dog; train/7_theo_3.wav is labelled by its name).
SPLIT_FOLDER_NAMES = frozenset(
    {"train", "training", "test", "testing", "val", "valid", "validation", "dev", "eval"}
)

_FSDD_NAME = re.compile(r"^[^_]+_.+_(?P<take>\d+)$")
_ESC_NAME = re.compile(r"^(?P<fold>\d+)-[^-]+-[A-Za-z]+$")

Split = Literal["train", "test"]
LabelSource = Literal["labels.csv", "folder", "filename", "none"]
SplitRule = Literal["fsdd", "esc", "hash"]


@dataclass(frozen=True)
class DatasetItem:
    """One audio file of a data set."""

    path: Path  # absolute
    label: str | None
    relpath: str  # relative to the data set root, "/" separated
    sha256: str | None = None  # of the file's content, when known (a data set's manifest)


@dataclass(frozen=True)
class AudioFolder:
    """The audio files of a folder, labelled and optionally restricted to one split."""

    root: Path
    items: list[DatasetItem]
    label_source: LabelSource
    split: Split | None
    split_rule: SplitRule

    @classmethod
    def scan(
        cls,
        root: str | os.PathLike[str],
        *,
        split: Split | None = None,
        extensions: Sequence[str] = AUDIO_EXTENSIONS,
    ) -> AudioFolder:
        """Find, label and split the audio files under ``root`` (rules in the module docstring).

        Raises ``DatasetError`` when ``root`` is not a folder, holds no audio files, has a
        malformed ``labels.csv``, or when the requested split is empty.
        """
        if split not in (None, "train", "test"):
            raise ValueError(f'split must be "train", "test" or None, got {split!r}')
        root_path = Path(root).resolve()
        if not root_path.is_dir():
            raise DatasetError(f"The data set folder {root_path} does not exist.")
        relpaths = _find_audio_files(root_path, extensions=extensions)
        if not relpaths:
            raise DatasetError(f"No audio files ({', '.join(extensions)}) found under {root_path}.")
        labels, label_source = _labels(root_path, relpaths)
        split_rule = _split_rule(relpaths)
        items = [
            DatasetItem(path=root_path / relpath, label=labels.get(relpath), relpath=relpath)
            for relpath in relpaths
            if split is None or _split_of(relpath, split_rule) == split
        ]
        if not items:
            raise DatasetError(
                f'The "{split}" split of {root_path} is empty ({len(relpaths)} files, split by '
                f"the {split_rule} rule)."
            )
        return cls(
            root=root_path,
            items=items,
            label_source=label_source,
            split=split,
            split_rule=split_rule,
        )

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> list[str]:
        """The distinct labels, sorted."""
        return sorted({item.label for item in self.items if item.label is not None})

    @property
    def is_labelled(self) -> bool:
        """Whether every item has a label."""
        return all(item.label is not None for item in self.items)

    def manifest(self) -> list[dict[str, str | None]]:
        """``[{"path": relpath, "label": label | None}, ...]`` in item order."""
        return [{"path": item.relpath, "label": item.label} for item in self.items]

    def manifest_digest(self) -> str:
        """The folder's `dataset_digest`: its files' paths, labels and contents."""
        return dataset_digest(
            DigestEntry(path=item.relpath, label=item.label, sha256=file_sha256(item.path))
            for item in self.items
        )


@dataclass(frozen=True)
class DigestEntry:
    """What a data set's digest covers of one file."""

    path: str  # relative to the data set root, "/" separated
    label: str | None
    sha256: str  # of the file's bytes


def dataset_digest(entries: Iterable[DigestEntry], *, labels: Iterable[str] | None = None) -> str:
    """SHA-256 (hex) of the canonical JSON (sorted keys, no spaces, UTF-8) of the files'
    paths, labels and content hashes and of the label set (by default the files' labels).

    The one definition of a data set's identity: an uploaded data set (`dataset_store`) and a
    folder given to `uvac train` get the same digest for the same recordings, whatever their
    id, date or machine. A trained model records it.
    """
    files = sorted(entries, key=lambda entry: entry.path)
    label_set = labels if labels is not None else (e.label for e in files if e.label is not None)
    canonical = {
        "files": [{"path": e.path, "label": e.label, "sha256": e.sha256} for e in files],
        "labels": sorted(set(label_set)),
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _find_audio_files(root: Path, *, extensions: Sequence[str]) -> list[str]:
    wanted = {extension.lower() for extension in extensions}
    found: list[str] = []
    for directory, folder_names, file_names in os.walk(root, followlinks=False):
        folder_names[:] = [name for name in folder_names if not _is_hidden(name)]
        for name in file_names:
            if _is_hidden(name):
                continue
            path = Path(directory) / name
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                logger.warning("Skipping %s: a link pointing outside %s", path, root)
                continue
            if not path.is_file():
                continue
            if os.path.splitext(name)[1].lower() in wanted or _holds_decodable_audio(path):
                found.append(path.relative_to(root).as_posix())
    return sorted(found)


def _holds_decodable_audio(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError:
        return False
    return sniff_format(head) in DECODED_FORMATS


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _labels(root: Path, relpaths: list[str]) -> tuple[dict[str, str], LabelSource]:
    labels_file = root / LABELS_FILE
    if labels_file.is_file():
        return _labels_from_csv(labels_file, relpaths), "labels.csv"
    folders = {relpath: _label_folder(relpath) for relpath in relpaths}
    if len({folder for folder in folders.values() if folder is not None}) >= 2:
        return {relpath: folder for relpath, folder in folders.items() if folder}, "folder"
    stems = {relpath: _stem(relpath) for relpath in relpaths}
    if all("_" in stem and not stem.startswith("_") for stem in stems.values()):
        return {relpath: stem.split("_", 1)[0] for relpath, stem in stems.items()}, "filename"
    return {}, "none"


def _label_folder(relpath: str) -> str | None:
    """The nearest enclosing folder whose name is not a split name ("train", "test", ...)."""
    for folder in reversed(relpath.split("/")[:-1]):
        if folder.lower() not in SPLIT_FOLDER_NAMES:
            return folder
    return None


def _labels_from_csv(labels_file: Path, relpaths: list[str]) -> dict[str, str]:
    known = set(relpaths)
    labels: dict[str, str] = {}
    try:
        with labels_file.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in reader.fieldnames or []]
            if "path" not in columns or "label" not in columns:
                raise DatasetError(
                    f"{LABELS_FILE} needs a header row with the columns path,label; "
                    f"found {columns or 'no header'}."
                )
            reader.fieldnames = columns
            for line_number, row in enumerate(reader, start=2):
                relpath = (row.get("path") or "").strip().replace("\\", "/").removeprefix("./")
                label = (row.get("label") or "").strip()
                if not relpath:
                    continue
                if relpath not in known:
                    logger.warning(
                        "%s line %d names %r, which is not an audio file of the data set",
                        LABELS_FILE,
                        line_number,
                        relpath,
                    )
                    continue
                if label:
                    labels[relpath] = label
    except (UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"{LABELS_FILE} could not be read as UTF-8 CSV ({error}).") from None
    return labels


def _split_rule(relpaths: list[str]) -> SplitRule:
    stems = [_stem(relpath) for relpath in relpaths]
    if all(_FSDD_NAME.match(stem) for stem in stems):
        return "fsdd"
    if all(_ESC_NAME.match(stem) for stem in stems):
        return "esc"
    return "hash"


def _split_of(relpath: str, rule: SplitRule) -> Split:
    stem = _stem(relpath)
    if rule == "fsdd":
        fsdd_match = _FSDD_NAME.match(stem)
        assert fsdd_match is not None  # the rule was chosen because every name matches
        return "test" if int(fsdd_match["take"]) in FSDD_TEST_TAKES else "train"
    if rule == "esc":
        esc_match = _ESC_NAME.match(stem)
        assert esc_match is not None
        return "test" if int(esc_match["fold"]) == ESC_TEST_FOLD else "train"
    digest = hashlib.sha1(relpath.encode("utf-8"), usedforsecurity=False).hexdigest()
    return "test" if int(digest[:8], 16) % 100 < HASH_TEST_PERCENT else "train"


def _stem(relpath: str) -> str:
    return os.path.splitext(relpath.rpartition("/")[2])[0]

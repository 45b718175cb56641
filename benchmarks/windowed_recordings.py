"""ESC-10 as a vendor's data looks: long recordings, cut into windows by the service.

ESC-10's clips are 5 s cuts of longer Freesound recordings; the clips of one source share its
id (``<fold>-<source id>-<take>``) and its fold. `joined_esc10` joins the takes of each source,
in take order, into one recording per source (5 s to 35 s), and writes them as
``<class folder>/<fold>-<source id>-joined.wav``, so the usual rules apply: labels from the
folder, ESC fold 1 as the test split (a source never spans folds, so a recording's windows
never straddle the split). The service's feature pipeline then cuts each recording into
overlapping windows (5 s every 2.5 s for the ``scenes`` preset), and windows of one recording
are each other's nearest neighbours, as slices of a vendor's long recordings are.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

from uvac.audio import AudioFolder, load_audio

__all__ = ["joined_esc10"]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 44100
_ESC_STEM = re.compile(r"^(?P<fold>\d+)-(?P<source>[^-]+)-(?P<take>[A-Za-z]+)$")


def joined_esc10(esc10_root: Path, out_dir: Path) -> Path:
    """Write (once) one recording per ESC-10 source under ``out_dir``; returns ``out_dir``."""
    done = out_dir / ".complete"
    if done.exists():
        return out_dir
    groups: dict[tuple[str, str, str], list[tuple[str, Path]]] = defaultdict(list)
    for item in AudioFolder.scan(esc10_root).items:
        match = _ESC_STEM.match(item.path.stem)
        if match is None:
            raise ValueError(f"{item.path} is not named like an ESC clip")
        folder = item.path.parent.name
        groups[(folder, match["fold"], match["source"])].append((match["take"], item.path))
    for (folder, fold, source), takes in sorted(groups.items()):
        samples = [load_audio(path, sample_rate=SAMPLE_RATE).samples for _, path in sorted(takes)]
        target = out_dir / folder / f"{fold}-{source}-joined.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(target, np.concatenate(samples), SAMPLE_RATE, subtype="FLOAT")
    logger.info("joined %d ESC-10 clips into %d recordings", sum(map(len, groups.values())),
                len(groups))  # fmt: skip
    done.touch()
    return out_dir

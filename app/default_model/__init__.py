"""The model the service ships with, published into an empty store on first start.

`bundle/` holds a model trained by this project's own pipeline (see `bundle/TRAINING.md`
for the command that reproduces it) as the engine writes it (`weights.safetensors`,
`model.json`, and its novelty score `novelty.safetensors` with `novelty.json`), the store
metadata (`metadata.json`) and its evaluation report (`report/`).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from model_store import AnyModelStore, ModelStore, NotFound

logger = logging.getLogger(__name__)

BUNDLE_DIR = Path(__file__).parent / "bundle"
MODEL_FILES = ("weights.safetensors", "model.json")
NOVELTY_FILES = ("novelty.safetensors", "novelty.json")  # the novelty score, where it has one


def publish_default_model(*, store_root: Path | AnyModelStore, serve_ref: str) -> str | None:
    """Publish the bundle as `name:vN` and point the served alias at it.

    Does nothing (returns None) when the served reference already resolves, or when the
    store already holds versions of that name: an operator's store is never overridden.
    Returns the published reference otherwise.
    """
    name, _, alias = serve_ref.partition("@")
    store = store_root if not isinstance(store_root, Path) else ModelStore(store_root)
    try:
        store.get(serve_ref)
        return None
    except NotFound:
        pass
    try:
        _, existing = store.list_versions(name, offset=0, limit=1)
    except NotFound:
        existing = 0
    if existing:
        logger.warning(
            "%s does not resolve but %s has versions; leaving the store as it is", serve_ref, name
        )
        return None
    if not all((BUNDLE_DIR / file).is_file() for file in MODEL_FILES):
        logger.warning("no bundled default model in %s", BUNDLE_DIR)
        return None
    metadata = json.loads((BUNDLE_DIR / "metadata.json").read_text())
    with store.publish(name, metadata=metadata) as staging:
        for file in MODEL_FILES:
            shutil.copy2(BUNDLE_DIR / file, staging / file)
        for file in NOVELTY_FILES:
            if (BUNDLE_DIR / file).is_file():
                shutil.copy2(BUNDLE_DIR / file, staging / file)
    published = staging.version
    report_dir = BUNDLE_DIR / "report"
    if report_dir.is_dir():
        store.write_report(
            published.ref,
            files={path.name: path.read_bytes() for path in report_dir.iterdir() if path.is_file()},
        )
    if alias and alias != "latest":
        store.promote(published.ref, alias)
    return published.ref

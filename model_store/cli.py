"""``uvac-store``: inspect and manage the model store from a shell.

    uvac-store list [--json]
    uvac-store versions NAME [--offset N] [--limit N]
    uvac-store show REF            REF = name | name:vN | name@alias
    uvac-store promote REF ALIAS
    uvac-store rollback NAME ALIAS
    uvac-store unalias NAME ALIAS
    uvac-store delete REF
    uvac-store verify REF
    uvac-store retain NAME --keep N
    uvac-store history NAME
    uvac-store cleanup [--max-age-s S]
    uvac-store gc NAME [--grace-s S]   S3: delete blobs no version lists (folders: nothing)

Every command takes ``--url`` (the store's URL, ``s3://bucket/prefix``, ``file://...`` or a
folder; default as the services find it: $UVAC_MODEL_STORE_URL, else $UVAC_STORAGE_URL/models,
else the folder of ``--root``: $UVAC_MODEL_STORE_DIR, else $UVAC_DATA_DIR/models, else
./var/models) and ``--json``. An S3 store is reached with the services' variables
(UVAC_S3_ENDPOINT_URL, UVAC_S3_REGION, UVAC_S3_ACCESS_KEY_ID, UVAC_S3_SECRET_ACCESS_KEY, else
the usual AWS ones) and keeps what it downloads under $UVAC_CACHE_DIR/models (default
$UVAC_DATA_DIR/cache/models). Exit status: 0 success, 1 a store error (message on stderr, or
a JSON problem with ``--json``), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from model_store.errors import Corrupted, StoreError
from model_store.object_store import ObjectModelStore
from model_store.opening import AnyModelStore, open_model_store
from object_storage import S3Options

__all__ = ["default_root", "default_url", "main"]

_CACHE_MAX_BYTES = 10 << 30


def default_root() -> Path:
    """The store root from the shared configuration variables (see docs/architecture.md)."""
    explicit = os.environ.get("UVAC_MODEL_STORE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("UVAC_DATA_DIR", "./var")) / "models"


def default_url(root: Path | None = None) -> str:
    """The store's URL as the services' settings name it; ``root`` (else `default_root`) when
    they name none."""
    explicit = os.environ.get("UVAC_MODEL_STORE_URL")
    if explicit:
        return explicit
    base = os.environ.get("UVAC_STORAGE_URL")
    if base:
        return f"{base.rstrip('/')}/models"
    return str(root if root is not None else default_root())


def _open(url: str) -> AnyModelStore:
    cache = os.environ.get("UVAC_CACHE_DIR")
    cache_dir = Path(cache) if cache else Path(os.environ.get("UVAC_DATA_DIR", "./var")) / "cache"
    options = S3Options(
        endpoint_url=os.environ.get("UVAC_S3_ENDPOINT_URL") or None,
        region=os.environ.get("UVAC_S3_REGION") or None,
        access_key_id=os.environ.get("UVAC_S3_ACCESS_KEY_ID") or None,
        secret_access_key=os.environ.get("UVAC_S3_SECRET_ACCESS_KEY") or None,
    )
    return open_model_store(
        url, s3=options, cache_dir=cache_dir / "models", cache_max_bytes=_CACHE_MAX_BYTES
    )


def _build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", type=Path, default=None, help="model store root folder")
    common.add_argument("--url", default=None, help="model store URL (s3://, file:// or a path)")
    common.add_argument("--json", action="store_true", help="print JSON instead of text")

    parser = argparse.ArgumentParser(prog="uvac-store", description="Manage the UVAC model store.")
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], help=help_text)

    add("list", "list models")
    versions = add("versions", "list a model's versions, newest first")
    versions.add_argument("name")
    versions.add_argument("--offset", type=int, default=0)
    versions.add_argument("--limit", type=int, default=50)
    add("show", "show one version").add_argument("ref")
    add("path", "print a version's folder (for `uvac cluster`)").add_argument("ref")
    promote = add("promote", "point an alias at a version")
    promote.add_argument("ref")
    promote.add_argument("alias")
    rollback = add("rollback", "move an alias back to its previous version")
    rollback.add_argument("name")
    rollback.add_argument("alias")
    unalias = add("unalias", "remove an alias")
    unalias.add_argument("name")
    unalias.add_argument("alias")
    add("delete", "delete a version no alias points at").add_argument("ref")
    add("verify", "recompute every checksum of a version").add_argument("ref")
    retain = add("retain", "keep the newest N unaliased versions, delete older ones")
    retain.add_argument("name")
    retain.add_argument("--keep", type=int, required=True)
    add("history", "show the alias history of a model").add_argument("name")
    cleanup = add("cleanup", "remove temporaries left by killed publishers")
    cleanup.add_argument("--max-age-s", type=float, default=3600.0)
    gc = add("gc", "delete stored blobs no version lists (S3; a folder store has none)")
    gc.add_argument("name")
    gc.add_argument("--grace-s", type=float, default=None, help="only blobs older (1 h)")
    return parser


def _version_text(version: dict[str, Any]) -> str:
    aliases = " ".join(f"@{alias}" for alias in version["aliases"])
    return f"{version['ref']}  {version['created_at']}  sha256:{version['sha256'][:16]}  {aliases}"


def _version_label(number: int | None) -> str:
    return "-" if number is None else f"v{number}"


def _run(args: argparse.Namespace, store: AnyModelStore) -> tuple[Any, str]:
    """Execute one command; returns (JSON-able result, text rendering)."""
    command = args.command
    if command == "list":
        models = [summary.to_dict() for summary in store.list_models()]
        lines = [
            f"{m['name']}  v{m['latest_version']}  ({m['version_count']} versions)  "
            + " ".join(f"@{alias}=v{number}" for alias, number in m["aliases"].items())
            for m in models
        ]
        return models, "\n".join(lines) or "(no models)"
    if command == "versions":
        page, total = store.list_versions(args.name, offset=args.offset, limit=args.limit)
        data = [version.to_dict() for version in page]
        text = "\n".join([*map(_version_text, data), f"({total} versions in total)"])
        return {"data": data, "count": total}, text
    if command == "show":
        shown = store.get(args.ref).to_dict()
        return shown, json.dumps(shown, indent=2)
    if command == "path":
        folder = str(store.get(args.ref).path)
        return {"path": folder}, folder
    if command == "promote":
        promoted = store.promote(args.ref, args.alias).to_dict()
        return promoted, f"{args.alias} -> {promoted['ref']}"
    if command == "rollback":
        restored = store.rollback(args.name, args.alias).to_dict()
        return restored, f"{args.name}@{args.alias} -> {restored['ref']}"
    if command == "unalias":
        store.remove_alias(args.name, args.alias)
        return {"removed": f"{args.name}@{args.alias}"}, f"removed {args.name}@{args.alias}"
    if command == "delete":
        store.delete(args.ref)
        return {"deleted": args.ref}, f"deleted {args.ref}"
    if command == "verify":
        verified = store.verify(args.ref).to_dict()
        return {"ok": True, **verified}, f"{verified['ref']} OK (sha256 {verified['sha256']})"
    if command == "retain":
        deleted = store.apply_retention(args.name, keep=args.keep)
        return {"deleted": deleted}, "deleted " + (", ".join(f"v{n}" for n in deleted) or "nothing")
    if command == "history":
        history = store.alias_history(args.name)
        lines = [
            f"{entry['at']}  {entry['action']:<8} @{entry['alias']}  "
            f"{_version_label(entry['from_version'])} -> {_version_label(entry['version'])}"
            for entry in history
        ]
        return history, "\n".join(lines) or "(no alias moves)"
    if command == "cleanup":
        removed = store.cleanup_staging(max_age_s=args.max_age_s)
        return {"removed": removed}, f"removed {removed} stale staging entries"
    if command == "gc":
        if not isinstance(store, ObjectModelStore):
            store.get(args.name)  # an unknown name is an error here too
            return {
                "deleted": []
            }, "nothing to collect: a folder store deletes files with a version"
        digests = store.collect_garbage(args.name, grace_s=args.grace_s)
        return {"deleted": digests}, f"deleted {len(digests)} unlisted blobs"
    raise AssertionError(f"unhandled command {command}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    url = args.url or (str(args.root) if args.root is not None else default_url())
    emit: Callable[[str], None] = print
    try:
        result, text = _run(args, _open(url))
    except (StoreError, ValueError) as error:
        problem: dict[str, Any] = {
            "type": getattr(error, "slug", "invalid-argument"),
            "title": getattr(error, "title", "Invalid argument"),
            "status": getattr(error, "status", 400),
            "detail": str(error),
        }
        if isinstance(error, Corrupted):
            problem["bad_files"] = error.bad_files
        if args.json:
            emit(json.dumps(problem, indent=2))
        else:
            print(f"uvac-store: {error}", file=sys.stderr)
        return 1
    emit(json.dumps(result, indent=2) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

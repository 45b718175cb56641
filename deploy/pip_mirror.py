"""Offer this machine's local pip sources to a `docker build`, over HTTP on loopback.

A host whose pip reads wheels from local folders (`find-links` folders, `file://` indexes)
can hand none of them to a build: the build sees only its context and the network. This
serves each local source read-only under its own prefix on 127.0.0.1, so a build on the host
network reaches it as an ordinary index, and writes the URLs to use, one per line, as
`index URL` or `find-links URL` in the order pip's configuration lists them (remote sources
are passed through unchanged). It serves until it is terminated.

Usage: python3 deploy/pip_mirror.py --port PORT --sources-file FILE
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

LIST_OPTIONS = {"index-url": "index", "extra-index-url": "index", "find-links": "find-links"}


def pip_sources() -> list[tuple[str, str]]:
    """(kind, location) for every index and find-links source in pip's configuration."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sources: list[tuple[str, str]] = []
    for line in listing.splitlines():
        key, _, raw_value = line.partition("=")
        kind = LIST_OPTIONS.get(key.rpartition(".")[2])
        if kind is None:
            continue
        for location in " ".join(shlex.split(raw_value)).split():
            if (kind, location) not in sources:
                sources.append((kind, location))
    return sources


def local_folder(location: str) -> Path | None:
    """The folder behind a local source, or None for a remote one."""
    if location.startswith("file://"):
        return Path(unquote(urlparse(location).path))
    if location.startswith("/"):
        return Path(location)
    return None


class PrefixedFiles(http.server.SimpleHTTPRequestHandler):
    """Serves `/<prefix>/...` from the folder mapped to that prefix, and nothing else."""

    def __init__(self, *args: object, folders: dict[str, Path], **kwargs: object) -> None:
        self.folders = folders
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def translate_path(self, path: str) -> str:
        prefix, _, rest = path.lstrip("/").partition("/")
        folder = self.folders.get(prefix)
        if folder is None:
            return "/nonexistent"  # answered with a 404
        self.directory = str(folder)
        return super().translate_path("/" + rest)

    def log_message(self, format: str, *args: object) -> None:
        pass  # a build fetches thousands of files; the build log says what it got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sources-file", type=Path, required=True)
    arguments = parser.parse_args(argv)

    folders: dict[str, Path] = {}
    lines: list[str] = []
    base = f"http://127.0.0.1:{arguments.port}"
    for kind, location in pip_sources():
        folder = local_folder(location)
        if folder is None:
            lines.append(f"{kind} {location}")
        elif folder.is_dir():
            prefix = f"s{len(folders)}"
            if kind == "index":
                # Serve the index's parent: its pages link to files beside it (../../files).
                folders[prefix] = folder.parent
                lines.append(f"{kind} {base}/{prefix}/{folder.name}/")
            else:
                folders[prefix] = folder
                lines.append(f"{kind} {base}/{prefix}/")

    handler = functools.partial(PrefixedFiles, folders=folders)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", arguments.port), handler)
    # Written only once the port is bound, so the caller may build as soon as it appears.
    arguments.sources_file.write_text("".join(line + "\n" for line in lines))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

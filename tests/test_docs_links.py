"""The documentation points only at files a clone has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted(
    path
    for pattern in ("*.md", "docs/*.md", "benchmarks/*.md", "app/**/*.md")
    for path in REPOSITORY.glob(pattern)
)
_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
# A backticked path to a document or source file: `docs/edge.md`, `uvac/selection/rule.py`.
_CODE_PATH = re.compile(r"`((?:\.\./)*[\w.-]+(?:/[\w.-]+)+\.(?:md|py|json|yml|toml|txt))`")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(REPOSITORY)))
def test_every_relative_reference_stays_inside_the_repository_and_exists(
    document: Path,
) -> None:
    text = document.read_text(encoding="utf-8")
    assert "../shared" not in text, "shared/ sits beside a development checkout, not in a clone"
    targets = [t for t in _LINK.findall(text) if "://" not in t and not t.startswith("mailto:")]
    for target in targets:
        resolved = (document.parent / target).resolve()
        assert resolved.is_relative_to(REPOSITORY), target
        assert resolved.exists(), f"{target} (linked from {document.name})"
    for path in _CODE_PATH.findall(text):
        assert not path.startswith("../"), path
        # Paths in documents are written from the repository root (or the document's folder).
        candidates = (REPOSITORY / path, document.parent / path)
        if not any(candidate.exists() for candidate in candidates) and "<" not in path:
            # Results files and folders made at run time (var/, device/) are named too.
            assert path.startswith(("var/", "benchmarks/results/", "device/")), path


def test_the_model_description_the_readme_relies_on_is_in_docs() -> None:
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    assert "`docs/model-spec.md`" in readme
    assert (REPOSITORY / "docs" / "model-spec.md").is_file()

"""The ``uvac`` command in tests: its embedding cache in a temporary folder (never the user's
home), and one core for its thread policy (tests share a busy host). Package-wide, so that
module fixtures that run the command see it too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from uvac.cli import commands


@pytest.fixture(autouse=True, scope="package")
def _cli_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UVAC_EMBEDDING_CACHE", str(tmp_path_factory.mktemp("embedding-cache")))
        patch.setattr(commands, "available_cores", lambda: 1)
        yield

"""Every absolute path in a message is blanked alike; routes, URLs and media types are not paths."""

from __future__ import annotations

import pytest

from worker.server_paths import redacted, without_server_paths


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[Errno 2] No such file: '/srv/uvac/a.wav'", "[Errno 2] No such file: '<server path>'"),
        ("Entry '/etc/passwd' is absolute.", "Entry '<server path>' is absolute."),
        ("from /opt/app/worker/x.py, line 3", "from <server path> line 3"),
        ("store file:///var/lib/uvac/models is locked", "store <server path> is locked"),
        ("path=/home/someone/x", "path=<server path>"),
        ("Train one with POST /v1/train, then GET /v1/jobs/{id}.",
         "Train one with POST /v1/train, then GET /v1/jobs/{id}."),
        ("see https://uvac.dev/problems/not-audio", "see https://uvac.dev/problems/not-audio"),
        ("send audio/wav or application/json, 1/2", "send audio/wav or application/json, 1/2"),
        ("letters, digits and - _ . , & / + #", "letters, digits and - _ . , & / + #"),
    ],
)  # fmt: skip
def test_absolute_paths_are_blanked_and_nothing_else(text: str, expected: str) -> None:
    assert without_server_paths(text) == expected


def test_a_document_is_blanked_at_every_depth() -> None:
    document = {"detail": "/a/b", "errors": [{"loc": ["body", "/x"], "n": 3}], "ok": None}
    assert redacted(document) == {
        "detail": "<server path>",
        "errors": [{"loc": ["body", "<server path>"], "n": 3}],
        "ok": None,
    }

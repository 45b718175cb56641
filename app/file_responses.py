"""`RangeFileResponse`: a file download whose refused `Range` headers are problem documents.

Starlette's `FileResponse` answers Range requests itself (206 for one or more ranges), and a
range it cannot serve with a plain-text 400 (malformed) or 416 (outside the file). Here those
two are raised as `ApiProblem`s instead, before anything is sent, so they reach the one
problem handler like every other error; `range_responses` documents all three in OpenAPI.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable

from app.openapi_docs import problem_responses
from app.problems import ApiProblem

__all__ = ["RangeFileResponse", "range_responses"]


class RangeFileResponse(FileResponse):
    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader as error:
            raise ApiProblem(
                status=400,
                slug="invalid-range",
                detail=f"The Range header cannot be served: {error.content.rstrip('.')}. "
                "Ask for bytes, e.g. `Range: bytes=0-1023`.",
            ) from None
        except RangeNotSatisfiable as error:
            raise ApiProblem(
                status=416,
                slug="range-not-satisfiable",
                detail=f"The Range header asks for bytes outside the file, which holds "
                f"{error.max_size} bytes.",
                headers={"Content-Range": f"bytes */{error.max_size}"},
            ) from None


def range_responses() -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for a route answering with a `RangeFileResponse`."""
    return {
        206: {"description": "The requested byte range(s) (`Range: bytes=...`)"},
        **problem_responses(400, 416),
    }

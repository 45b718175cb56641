"""Streamed, capped reading of multipart uploads, and audio decoding off the event loop.

FastAPI's `UploadFile` parameters read the whole body before the route runs, so a 10 GB
upload would be spooled to disk before anyone could refuse it. Upload routes therefore read
`request.stream()` themselves: the declared `Content-Length` is checked first, then bytes
are counted as they arrive, and the request is refused with 413 as soon as the body or one
part goes over its cap; a body that arrives slower than the configured floor is refused
with 408 (`app.upload_pace`). (The routes document their multipart body in OpenAPI by hand.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from tempfile import SpooledTemporaryFile
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from app.problems import ApiProblem
from app.upload_pace import UploadPace, paced_body
from uvac.audio import Audio, DecodeSlots, load_audio

logger = logging.getLogger(__name__)

# Room for boundaries and part headers on top of the file bytes themselves.
MULTIPART_FRAMING_BYTES = 16 * 1024
# Non-file form fields are small by nature.
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 32
# Parts of any kind: the files and fields a route takes, and a few more for clients that
# send extras. Same-named fields replace each other, so fields alone do not bound the count.
_SPARE_PARTS = 8


@dataclass
class UploadedPart:
    """One file part of a multipart body; `file` is rewound and ready to read."""

    field_name: str
    filename: str
    content_type: str | None
    file: SpooledTemporaryFile[bytes] = field(repr=False)
    size: int = 0

    def read_bytes(self) -> bytes:
        self.file.seek(0)
        return self.file.read()

    def close(self) -> None:
        self.file.close()


def too_large(detail: str) -> ApiProblem:
    return ApiProblem(status=413, slug="upload-too-large", detail=detail)


def mebibytes(size: int) -> str:
    """A size as people read it: ``20971520`` -> ``"20.0 MiB"``."""
    return f"{size / (1024 * 1024):.1f} MiB"


def check_content_length(
    request: Request, *, max_body_bytes: int, setting: str = "the upload limit"
) -> None:
    """Refuse a body whose declared length is over the cap before reading any of it;
    ``setting`` names what sets the cap (``UVAC_MAX_UPLOAD_BYTES``)."""
    declared = request.headers.get("content-length")
    if declared is None:
        return  # chunked: counted while reading
    try:
        length = int(declared)
    except ValueError:
        raise ApiProblem(
            status=400, slug="bad-request", detail="Content-Length is not a number."
        ) from None
    if length > max_body_bytes:
        raise too_large(
            f"The request body is {mebibytes(length)}; {setting} allows "
            f"{mebibytes(max_body_bytes)} (with the form's framing)."
        )


class _PartCollector:
    """python-multipart callbacks that keep file parts and enforce the per-part caps."""

    def __init__(
        self,
        *,
        max_part_bytes: int,
        max_files: int,
        spool_bytes: int,
        charset: str,
        setting: str = "the upload limit",
    ) -> None:
        self.max_part_bytes = max_part_bytes
        self.setting = setting
        self.max_files = max_files
        self.spool_bytes = spool_bytes
        self.charset = charset
        self.files: list[UploadedPart] = []
        self.fields: dict[str, str] = {}
        self.max_parts = max_files + MAX_FIELDS + _SPARE_PARTS
        self.parts = 0
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._part: UploadedPart | None = None
        self._field_name: str | None = None
        self._field_data = bytearray()

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._on_part_begin,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
        }

    def close_all(self) -> None:
        for part in self.files:
            part.close()

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode(self.charset)
        except (UnicodeDecodeError, LookupError):
            return raw.decode("latin-1")

    def _on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise ApiProblem(
                status=413,
                slug="too-many-parts",
                detail=f"The multipart body has more than {self.max_parts} parts.",
            )
        self._headers = {}
        self._part = None
        self._field_name = None
        self._field_data = bytearray()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = b""
        self._header_value = b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise ApiProblem(
                status=400,
                slug="malformed-multipart",
                detail='A multipart part has no Content-Disposition "name".',
            )
        name = self._decode(options[b"name"])
        if b"filename" not in options:
            if len(self.fields) >= MAX_FIELDS:
                raise ApiProblem(status=413, slug="too-many-fields", detail="Too many form fields.")
            self._field_name = name
            return
        if len(self.files) >= self.max_files:
            raise ApiProblem(
                status=413,
                slug="too-many-files",
                detail=f"At most {self.max_files} file(s) are accepted in one request.",
            )
        content_type = self._headers.get(b"content-type")
        self._part = UploadedPart(
            field_name=name,
            filename=self._decode(options[b"filename"]),
            content_type=content_type.decode("latin-1") if content_type else None,
            # Closed by the route when done, or by close_all() if the request fails.
            file=SpooledTemporaryFile(max_size=self.spool_bytes),  # noqa: SIM115
        )
        self.files.append(self._part)

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._part is None:
            if len(self._field_data) + len(chunk) > MAX_FIELD_BYTES:
                raise too_large(f"The form field {self._field_name!r} is too large.")
            self._field_data.extend(chunk)
            return
        self._part.size += len(chunk)
        if self._part.size > self.max_part_bytes:
            raise too_large(
                f"The file {self._part.filename!r} is larger than "
                f"{mebibytes(self.max_part_bytes)}, the most {self.setting} allows."
            )
        # Memory until spool_bytes, then a temporary file; page-cache writes are cheap.
        self._part.file.write(chunk)

    def _on_part_end(self) -> None:
        if self._part is not None:
            self._part.file.seek(0)
        elif self._field_name is not None:
            self.fields[self._field_name] = self._decode(bytes(self._field_data))


async def read_multipart_files(
    request: Request,
    *,
    field_name: str,
    max_part_bytes: int,
    max_files: int = 1,
    max_body_bytes: int | None = None,
    spool_bytes: int | None = None,
    setting: str = "the upload limit",
) -> list[UploadedPart]:
    """Read the file parts called `field_name` from a multipart body, enforcing the caps.

    `max_body_bytes` defaults to `max_part_bytes` plus room for the multipart framing.
    Parts are held in memory up to `spool_bytes` (default: all of them) and in a temporary
    file beyond. Raises 415 for a body that is not multipart, 413 as soon as a cap is
    exceeded, 400 for malformed multipart and 422 when no `field_name` part was sent.
    """
    body_cap = max_body_bytes if max_body_bytes is not None else max_part_bytes
    body_cap += MULTIPART_FRAMING_BYTES
    check_content_length(request, max_body_bytes=body_cap, setting=setting)
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise ApiProblem(
            status=415,
            slug="unsupported-media-type",
            detail="Send the file as multipart/form-data (a form with a file field "
            f"named {field_name!r}).",
        )
    charset_raw = params.get(b"charset", b"utf-8")
    charset = charset_raw.decode("latin-1") if isinstance(charset_raw, bytes) else "utf-8"
    collector = _PartCollector(
        max_part_bytes=max_part_bytes,
        max_files=max_files,
        spool_bytes=spool_bytes if spool_bytes is not None else max_part_bytes + 1,
        charset=charset,
        setting=setting,
    )
    received = 0
    try:
        # Inside the try: the parser refuses some boundaries (too long, empty) when built.
        parser = MultipartParser(params[b"boundary"], collector.callbacks())  # type: ignore[arg-type]
        async for chunk in paced_body(request, _pace_of(request)):
            received += len(chunk)
            if received > body_cap:
                raise too_large(
                    f"The request body exceeds {mebibytes(body_cap)}, the most {setting} allows "
                    "(with the form's framing)."
                )
            parser.write(chunk)
        parser.finalize()
        if parser.state != MultipartState.END:
            # The parser accepts a body cut before its closing boundary; its last part may be
            # a fragment, so the body is refused rather than processed.
            raise FormParserError("the body ends before the closing boundary")
    except (FormParserError, ValueError) as error:
        # ValueError: the parser's own argument checks (a boundary it cannot use).
        collector.close_all()
        raise ApiProblem(
            status=400, slug="malformed-multipart", detail=f"Malformed multipart body: {error}"
        ) from error
    except BaseException:
        collector.close_all()
        raise
    wanted = [part for part in collector.files if part.field_name == field_name]
    for part in collector.files:
        if part.field_name != field_name:
            part.close()
    if not wanted:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", field_name),
                    "msg": f"Field required: a file part named {field_name!r}",
                    "type": "missing",
                }
            ]
        )
    return wanted


async def decode_audio(
    data: bytes, *, sample_rate: int, max_seconds: float, max_samples: int, slots: DecodeSlots
) -> Audio:
    """Decode and resample off the event loop, in one of the process's decode slots (uvac
    errors propagate as problems)."""
    return await slots.run(
        load_audio, data, sample_rate=sample_rate, max_seconds=max_seconds, max_samples=max_samples
    )


def _pace_of(request: Request) -> UploadPace:
    settings = request.app.state.settings
    return UploadPace(
        min_bytes_per_second=settings.min_upload_bytes_per_second,
        grace_seconds=settings.upload_grace_seconds,
    )


def multipart_openapi(
    *, field_name: str, description: str, multiple: bool = False
) -> dict[str, Any]:
    """The OpenAPI `requestBody` for a route that reads its multipart body itself."""
    file_schema: dict[str, Any] = {"type": "string", "format": "binary"}
    if multiple:
        # minItems: a request without any file part is a 422, and the schema should say so.
        file_schema = {"type": "array", "items": file_schema, "minItems": 1}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [field_name],
                        "properties": {field_name: {**file_schema, "description": description}},
                    }
                }
            },
        }
    }

"""Settings from the environment, JSON log lines with request ids."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from app.logging import JsonFormatter, RequestIdFilter, configure_logging, request_id_var
from service_config import Settings


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("UVAC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("UVAC_API_KEYS", "one, two,,three")
    monkeypatch.setenv("UVAC_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("UVAC_SERVE_MODEL", "birds@staging")
    settings = Settings()
    assert settings.api_keys == ("one", "two", "three")
    assert settings.auth_enabled
    assert settings.max_upload_bytes == 1234
    assert settings.serve_model == "birds@staging"
    assert settings.model_store_dir == tmp_path / "models"
    assert settings.datasets_dir == tmp_path / "datasets"


def test_defaults_match_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("UVAC_DATA_DIR", "UVAC_API_KEYS", "UVAC_SERVE_MODEL", "UVAC_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.serve_model == "scenes@production"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.max_upload_bytes == 128 * 1024 * 1024
    assert settings.max_audio_seconds == 600
    assert settings.max_batch_files == 16
    assert settings.inference_max_batch == 64
    assert settings.inference_max_wait_ms == 2
    assert settings.model_poll_seconds == 2
    assert settings.api_keys == () and not settings.auth_enabled
    assert settings.cors_origins == ()


def test_json_log_lines_carry_the_request_id() -> None:
    record = logging.LogRecord("uvac.test", logging.INFO, __file__, 1, "hello %s", ("x",), None)
    record.duration_ms = 1.5
    token = request_id_var.set("req-42")
    try:
        RequestIdFilter().filter(record)
        line = JsonFormatter().format(record)
    finally:
        request_id_var.reset(token)
    document = json.loads(line)
    assert document["message"] == "hello x"
    assert document["request_id"] == "req-42"
    assert document["level"] == "INFO"
    assert document["duration_ms"] == 1.5


def test_each_request_is_logged_once_by_the_middleware_not_the_access_logger() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    access = logging.getLogger("uvicorn.access")
    saved_access = (access.handlers[:], access.propagate, access.disabled)
    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    try:
        configure_logging(level="INFO")
        root.addHandler(Collect())
        access.info('%s - "%s %s HTTP/1.1" %d', "127.0.0.1:1", "GET", "/livez", 200)
        logging.getLogger("app.middleware").info("%s %s -> %d", "GET", "/livez", 200)
    finally:
        root.handlers[:], root.level = saved_handlers, saved_level
        access.handlers[:], access.propagate, access.disabled = saved_access
    assert [record.name for record in seen] == ["app.middleware"]

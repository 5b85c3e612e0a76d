# syntax=docker/dockerfile:1
# The gateway as a slim image: a builder stage turns the project into wheels, the final
# stage installs them offline and runs as an unprivileged user. Build: docker build -t gateway .

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# The runtime set exactly as locked, hashes checked, as wheels: the final stage needs neither
# a compiler nor the network, and a new release of any package changes nothing here.
COPY requirements.lock requirements-tools.lock ./
RUN pip wheel --require-hashes --no-deps --wheel-dir /wheels -r requirements.lock \
    && pip install --require-hashes --no-deps -r requirements-tools.lock
# The project's own wheel, built by the locked setuptools (no isolated build environment,
# which would fetch whatever setuptools is newest). pyproject names README.md as the long
# description.
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    GATEWAY_CONFIG=/etc/gateway/gateway.yaml
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin gateway
# A bind mount rather than COPY keeps the wheels out of the image's layers.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --no-deps /wheels/*.whl
# The config is mounted here at run time (docker-compose.yml); secrets come from the
# environment only, never from the image or the file.
RUN mkdir -p /etc/gateway
USER 10001:10001
EXPOSE 8080
# Liveness only: /healthz touches no dependency (readiness, /readyz, is the orchestrator's).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
# --workers stays 1: scale with replicas, each scraped by Prometheus on its own.
CMD ["gateway", "serve", "--config", "/etc/gateway/gateway.yaml", "--host", "0.0.0.0", "--port", "8080"]

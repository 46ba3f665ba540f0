# syntax=docker/dockerfile:1
#
# order-sync connector image.
#
#   docker build -t order-sync:0.1.0 .
#   docker run --rm -p 8000:8000 -e ORDER_SYNC_KAFKA__BOOTSTRAP_SERVERS=kafka:9092 order-sync:0.1.0
#
# The builder stage resolves the exact pins from pyproject.toml into a virtualenv and installs the
# connector's wheel into it; the runtime stage copies that virtualenv only: no compilers, no pip
# cache, no test extras, no source tree.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/venv

# Dependencies first, from the runtime pins in pyproject.toml only, so this layer is reused while
# only the connector's code changes. Every runtime dependency ships a manylinux wheel for CPython
# 3.11, so --only-binary keeps a compiler out of the build (and fails loudly if that ever changes).
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && /opt/venv/bin/pip install --no-cache-dir --only-binary=:all: -r /tmp/requirements.txt

COPY README.md ./
COPY connector ./connector
RUN /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/wheels . \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps /tmp/wheels/order_sync_connector-*.whl


FROM ${PYTHON_IMAGE} AS runtime

ARG UID=10001
ARG GID=10001

LABEL org.opencontainers.image.title="order-sync" \
      org.opencontainers.image.description="Pushes canonical order changes from Kafka to commerce platforms' update-order APIs." \
      org.opencontainers.image.licenses="Apache-2.0"

# A numeric, non-root user (Kubernetes' runAsNonRoot can only verify a numeric UID) and the data
# directory for the default SQLite idempotency store, which the chart mounts as a volume so the
# root filesystem can stay read-only.
RUN groupadd --system --gid "${GID}" order-sync \
    && useradd --system --uid "${UID}" --gid "${GID}" --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin order-sync \
    && mkdir -p /var/lib/order-sync \
    && chown "${UID}:${GID}" /var/lib/order-sync

COPY --from=builder /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONFAULTHANDLER=1 \
    ORDER_SYNC_IDEMPOTENCY__URL="sqlite:////var/lib/order-sync/order-sync.db"

WORKDIR /var/lib/order-sync
VOLUME ["/var/lib/order-sync"]
USER ${UID}:${GID}

EXPOSE 8000

# slim images carry no curl; the venv's Python asks /healthz (200 while the event loop runs).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ORDER_SYNC_HTTP__PORT', '8000'), timeout=4)"]

ENTRYPOINT ["order-sync"]
CMD ["run"]

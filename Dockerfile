# incident-bridge as a container: a wheel and a virtualenv built in the first stage, only the
# virtualenv copied into the runtime stage, run as the unprivileged UID 10001 with its SQLite
# file in /data. See docs/deploy.md ("Running it with Docker") for how to run it.
#
# BASE is any image with python3 (3.11 or later) and its venv module on PATH, the same in both
# stages (the venv's interpreter is a symlink into it): python:3.12-slim by default, or an image
# made offline, e.g. with debootstrap and Debian's python3 and python3-venv.
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY rules ./rules
COPY templates ./templates
# The wheel carries the bundled rules and templates (bridge/_embedded/); the runtime stage gets
# the virtualenv it is installed into, never this source tree.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
 && /opt/venv/bin/pip install /tmp/wheels/incident_bridge-*.whl

FROM ${BASE}
# Defaults for the container: listen on every interface, the database on the /data volume.
# Listening beyond loopback needs webhook credentials: the service refuses to start until the
# operator gives INCIDENT_BRIDGE_WEBHOOK_TOKEN or --webhook-token-file (or basic auth). Without
# an API token, one is generated into /data/incident-bridge.db.api-token at first start.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    INCIDENT_BRIDGE_LISTEN=0.0.0.0:9096 \
    INCIDENT_BRIDGE_DB=/data/incident-bridge.db
# A fixed UID/GID, so a volume or bind mount can be owned by it on the host too.
RUN groupadd --gid 10001 incident-bridge \
 && useradd --no-log-init --uid 10001 --gid 10001 --no-create-home --home-dir /data \
      --shell /usr/sbin/nologin incident-bridge \
 && mkdir -p /data \
 && chown 10001:10001 /data \
 && chmod 0700 /data
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9096
# No curl in the image: the venv's Python asks /-/healthy on the port of INCIDENT_BRIDGE_LISTEN.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; port = os.environ.get('INCIDENT_BRIDGE_LISTEN', '0.0.0.0:9096').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/-/healthy', timeout=4)"]
ENTRYPOINT ["incident-bridge"]
CMD ["serve"]

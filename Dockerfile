# lookalike as a container: `docker build -t lookalike .` (or podman), then see compose.yaml.
#
# BASE is any Debian-like image with Python >= 3.12 and its venv module: the public slim image by
# default; scripts/container builds on a Debian base made locally (python3 3.13) where no public
# registry is reachable. Behind a proxy with its own CA, mount the CA bundle and a pip.conf that
# names it into the build (README, "Container").
ARG BASE=python:3.12-slim

# ---- build: a venv with lookalike, its model package and (EXTRAS) the Milvus client; pip and the
# build backend stay in this stage.
FROM ${BASE} AS build
ARG EXTRAS=milvus
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/lookalike
# The dependencies first, from pyproject.toml alone: a code change does not download them again.
COPY pyproject.toml README.md /src/
RUN mkdir -p /src/src/lookalike && touch /src/src/lookalike/__init__.py \
    && /opt/lookalike/bin/pip install "/src${EXTRAS:+[$EXTRAS]}" \
    && /opt/lookalike/bin/pip uninstall -y lookalike
COPY src /src/src
RUN /opt/lookalike/bin/pip install --no-deps /src \
    && /opt/lookalike/bin/pip uninstall -y pip setuptools wheel \
    && find /opt/lookalike -name '*.pyc' -delete \
    && /opt/lookalike/bin/python -m compileall -q -j 0 /opt/lookalike/lib >/dev/null \
    && /opt/lookalike/bin/lookalike --version

# ---- run: the base, the venv and a user; nothing else (no compiler, no pip).
FROM ${BASE}
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin lookalike \
    && mkdir -p /data && chown lookalike:lookalike /data && chmod 700 /data
COPY --from=build /opt/lookalike /opt/lookalike
ENV PATH=/opt/lookalike/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOOKALIKE_HOST=0.0.0.0 \
    LOOKALIKE_PORT=8000 \
    LOOKALIKE_DATA_DIR=/data \
    LOOKALIKE_AUTH=keys
USER lookalike
WORKDIR /data
VOLUME /data
EXPOSE 8000
# /readyz: the model is loaded and the store is open (no credential needed). Python, not curl:
# the image carries no tools the server does not use. (podman: build with --format docker.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('LOOKALIKE_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["lookalike"]
CMD ["serve"]

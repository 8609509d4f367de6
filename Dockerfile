# lookalike as a container: `docker build -t lookalike .` (or podman), then see compose.yaml.
#
# BASE is any Debian-like image with Python >= 3.12 and its venv module: the public slim image by
# default; scripts/container builds on a Debian base made locally (python3 3.13) where no public
# registry is reachable. Behind a proxy with its own CA, mount the CA bundle and a pip.conf that
# names it into the build (README, "Container").
ARG BASE=python:3.12-slim

# ---- deps: a venv with lookalike's dependencies, its model package and (EXTRAS) the Milvus client.
FROM ${BASE} AS build
ARG EXTRAS=milvus
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/lookalike
# From pyproject.toml alone: a change of the code or README downloads nothing again.
COPY pyproject.toml /src/
RUN mkdir -p /src/src/lookalike && touch /src/src/lookalike/__init__.py /src/README.md \
    && /opt/lookalike/bin/pip install "/src${EXTRAS:+[$EXTRAS]}" \
    && /opt/lookalike/bin/pip uninstall -y lookalike \
    && rm -rf /src  # its build/ would serve the placeholder package to the app stage
# Slimmer: pymilvus pulls in milvus-lite (with pyarrow and faiss) for local milvus.db files, which
# lookalike never opens (it is a client of a Milvus server); test folders are never imported.
RUN /opt/lookalike/bin/pip uninstall -y milvus-lite pyarrow faiss-cpu \
    && find /opt/lookalike -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} +

# ---- the venv as the image gets it: no pip, no build backend.
FROM build AS venv
RUN /opt/lookalike/bin/pip uninstall -y pip setuptools wheel

# ---- lookalike itself, in a folder of its own: a code change rebuilds only this small layer.
FROM build AS app
COPY pyproject.toml README.md /src/
COPY src /src/src
RUN /opt/lookalike/bin/pip install --no-deps --target /opt/app /src

# ---- run: the base, the venv, the app and a user; nothing else (no compiler, no pip).
FROM ${BASE}
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin lookalike \
    && mkdir -p /data && chown lookalike:lookalike /data && chmod 700 /data
COPY --from=venv /opt/lookalike /opt/lookalike
COPY --from=app /opt/app /opt/app
ENV PATH=/opt/app/bin:/opt/lookalike/bin:$PATH \
    PYTHONPATH=/opt/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOOKALIKE_HOST=0.0.0.0 \
    LOOKALIKE_PORT=8000 \
    LOOKALIKE_DATA_DIR=/data \
    LOOKALIKE_AUTH=keys
ARG EXTRAS=milvus
RUN python3 -c "import cv2, onnxruntime, lookalike.api.app, lookalike.doctor" \
    && if [ -n "$EXTRAS" ]; then python3 -c "import lookalike.storage.milvus"; fi \
    && lookalike --version
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

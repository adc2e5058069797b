# raybake base image: OS + Python + uv + the environment Ray workers use.
# Build context "uv" (a named context) holds the uv binary from the uv wheel on
# PyPI, so no image is pulled:  docker buildx build -f Dockerfile.base \
#   --build-context uv="$(dirname "$(python -c 'import uv; print(uv.find_uv_bin())')")" \
#   --build-arg BASE_IMAGE=python:3.11-slim-bookworm .
# BASE_IMAGE is any image with an OS and python${PYTHON_VERSION}: python:*-slim,
# rayproject/ray, or an offline debootstrap import.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG PYTHON_VERSION=3.11
ARG SOURCE_DATE_EPOCH=0

# The venv Ray workers run in. uv installs the locked dependencies into it
# (UV_PROJECT_ENVIRONMENT), never the project: the project ships through
# working_dir, and installing it here would clash with that copy at run time
# ("failed to remove directory ... .dist-info: Directory not empty").
# RAY_ENABLE_UV_RUN_RUNTIME_ENV=0 stops Ray from re-running `uv run` per worker.
ENV VIRTUAL_ENV=/opt/venv \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON=/opt/venv/bin/python \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_NO_CACHE_DIR_WARNING=1 \
    RAY_ENABLE_UV_RUN_RUNTIME_ENV=0 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}

COPY --from=uv uv /usr/local/bin/uv

# `python -m venv` seeds pip from the interpreter's bundled wheel (no network):
# Ray bootstraps per-task environments with pip. SOURCE_DATE_EPOCH makes the
# .pyc files hash-based, so the layer is reproducible.
RUN command -v "python${PYTHON_VERSION}" >/dev/null \
      || { echo "base image has no python${PYTHON_VERSION}; set python or base_image in the raybake spec" >&2; exit 1; } \
 && SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH} "python${PYTHON_VERSION}" -m venv /opt/venv \
 && /opt/venv/bin/python -c "import pip" \
 && rm -rf /root/.cache

WORKDIR /opt/project

# ---- raybake: generated from the image spec below this line ----
# heavy layer: numpy, pandas, pyarrow, ray
RUN --mount=type=cache,target=/root/.cache/uv,id=raybake-uv-cache \
    --mount=type=bind,source=layers/heavy.txt,target=/opt/project/layers/heavy.txt \
    --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
 && cd /opt/project && SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH uv pip install --python /opt/venv/bin/python --no-deps --require-hashes -r /opt/project/layers/heavy.txt
# medium layer: aiohttp, cryptography, grpcio, py-spy, pydantic-core, virtualenv
RUN --mount=type=cache,target=/root/.cache/uv,id=raybake-uv-cache \
    --mount=type=bind,source=layers/medium.txt,target=/opt/project/layers/medium.txt \
    --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
 && cd /opt/project && SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH uv pip install --python /opt/venv/bin/python --no-deps --require-hashes -r /opt/project/layers/medium.txt
RUN --mount=type=cache,target=/root/.cache/uv,id=raybake-uv-cache \
    --mount=type=bind,source=pyproject.toml,target=/opt/project/pyproject.toml \
    --mount=type=bind,source=uv.lock,target=/opt/project/uv.lock \
    --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
 && cd /opt/project && SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH uv sync --frozen --no-install-project --no-dev --no-default-groups
LABEL dev.raybake.input-hash="<hash>" \
      dev.raybake.spec="default" \
      dev.raybake.project="ray-app" \
      dev.raybake.version="<version>"

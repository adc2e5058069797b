# raybake base image: OS + Python + uv + the environment Ray workers use.
# Build context "uv" (a named context) holds the uv binary from the uv wheel on
# PyPI, so no image is pulled:  docker buildx build -f Dockerfile.base \
#   --build-context uv="$(dirname "$(python -c 'import uv; print(uv.find_uv_bin())')")" \
#   --build-arg BASE_IMAGE=python:3.11-slim-bookworm .
# BASE_IMAGE is any image with an OS and python${PYTHON_VERSION}: python:*-slim,
# rayproject/ray, or an offline debootstrap import.
ARG BASE_IMAGE="anyscale/ray:2.60.0-py311"
FROM ${BASE_IMAGE}
ARG PYTHON_VERSION="3.11"
ARG SOURCE_DATE_EPOCH="0"
# Debian/Ubuntu packages that bring Python into a base without one (CUDA images).
ARG PYTHON_APT_PACKAGES=""
# raybake's steps run as root, whatever the base's user (rayproject/ray runs as
# `ray`, who cannot write /opt); the generated Dockerfile ends by switching back
# to the base's own user, who reads the environment but cannot change it.
USER root

# The venv Ray workers run in. uv installs the locked dependencies into it
# (UV_PROJECT_ENVIRONMENT), never the project: the project ships through
# working_dir, and installing it here would clash with that copy at run time
# ("failed to remove directory ... .dist-info: Directory not empty").
# RAY_ENABLE_UV_RUN_RUNTIME_ENV=0 stops Ray from re-running `uv run` per worker.
# No UV_PYTHON: it would outrank the interpreter of Ray's runtime_env `uv`
# plugin (`python -m uv pip install` in a cloned venv), sending its installs
# into /opt/venv where the task's workers never look.
ENV VIRTUAL_ENV=/opt/venv \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_NO_CACHE_DIR_WARNING=1 \
    RAY_ENABLE_UV_RUN_RUNTIME_ENV=0 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}

# A login shell (`bash -l`: KubeRay's ENABLE_LOGIN_SHELL, its operators before
# v1.4) runs /etc/profile, which sets PATH anew and drops /opt/venv/bin, so
# `ray` would not be found: /etc/profile.d/raybake-venv.sh, which it sources, puts it back.
# `python -m venv` seeds pip from the interpreter's bundled wheel (no network):
# Ray bootstraps per-task environments with pip. SOURCE_DATE_EPOCH makes the
# .pyc files hash-based and is every new file's time, so the layer is reproducible
# (a COPY of uv would stamp /usr/local/bin with the build's time; BuildKit's mount
# points for /etc/hosts and /etc/resolv.conf stamp /etc, which the layer carries).
RUN --mount=type=bind,from=uv,target=/run/raybake-uv \
    if [ -n "${PYTHON_APT_PACKAGES}" ] && ! command -v "python${PYTHON_VERSION}" >/dev/null; then \
      apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${PYTHON_APT_PACKAGES} \
      && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log /var/cache/ldconfig/aux-cache; fi \
 && command -v "python${PYTHON_VERSION}" >/dev/null \
      || { echo "base image has no python${PYTHON_VERSION}; set python or base_image in the raybake spec" >&2; exit 1; } \
 && export PYTHONDONTWRITEBYTECODE=1 HOME=/root \
 && SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH} "python${PYTHON_VERSION}" -m venv /opt/venv \
 && /opt/venv/bin/python -c "import pip" \
 && rm -rf /root/.cache \
 && cp /run/raybake-uv/uv /usr/local/bin/uv \
 && mkdir -p /opt/project /etc/profile.d \
 && printf '%s\n' 'case ":$PATH:" in *:/opt/venv/bin:*) ;; *) PATH="/opt/venv/bin:$PATH"; export PATH ;; esac' \
      > /etc/profile.d/raybake-venv.sh \
 && find /etc /opt /usr/local/bin/uv /usr/local/bin /etc/profile.d /etc/profile.d/raybake-venv.sh -maxdepth 0 \
      -exec touch -h -d "@${SOURCE_DATE_EPOCH}" {} + \
 && find /opt/venv /opt/project -exec touch -h -d "@${SOURCE_DATE_EPOCH}" {} +

WORKDIR /opt/project

# ---- raybake: generated from the image spec below this line ----
# pinned layer heavy-ray: ray
RUN --mount=type=cache,target=/root/.cache/uv,id=raybake-uv-cache \
    --mount=type=bind,source=layers/heavy-ray.txt,target=/opt/project/layers/heavy-ray.txt \
    --mount=type=bind,source=raybake/seal_layer.py,target=/opt/project/raybake/seal_layer.py \
    --mount=type=tmpfs,target=/tmp \
    --mount=type=bind,from=ca,source=ca.pem,target=/run/raybake-ca/ca.pem \
    if [ -s /run/raybake-ca/ca.pem ]; then export SSL_CERT_FILE=/run/raybake-ca/ca.pem; fi \
 && start=$(PYTHONDONTWRITEBYTECODE=1 /opt/venv/bin/python -c 'import time; print(time.time())') \
 && cd /opt/project && UV_COMPILE_BYTECODE=0 UV_CACHE_DIR=/root/.cache/uv uv pip install --python /opt/venv/bin/python --no-deps --require-hashes -r /opt/project/layers/heavy-ray.txt \
 && SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH PYTHONDONTWRITEBYTECODE=1 /opt/venv/bin/python /opt/project/raybake/seal_layer.py "$start"
# pinned layer heavy-pyarrow: pyarrow
RUN --mount=type=cache,target=/root/.cache/uv,id=raybake-uv-cache \
    --mount=type=bind,source=layers/heavy-pyarrow.txt,target=/opt/project/layers/heavy-pyarrow.txt \
    --mount=type=bind,source=raybake/seal_layer.py,target=/opt/project/raybake/seal_layer.py \
    --mount=type=tmpfs,target=/tmp \
    --mount=type=bind,from=ca,source=ca.pem,target=/run/raybake-ca/ca.pem \
    if [ -s /run/raybake-ca/ca.pem ]; then export SSL_CERT_FILE=/run/raybake-ca/ca.pem; fi \
 && start=$(PYTHONDONTWRITEBYTECODE=1 /opt/venv/bin/python -c 'import time; print(time.time())') \
 && cd /opt/project && UV_COMPILE_BYTECODE=0 UV_CACHE_DIR=/root/.cache/uv uv pip install --python /opt/venv/bin/python --no-deps --require-hashes -r /opt/project/layers/heavy-pyarrow.txt \
 && SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH PYTHONDONTWRITEBYTECODE=1 /opt/venv/bin/python /opt/project/raybake/seal_layer.py "$start"
# pinned layer heavy-numpy: numpy
RUN --mount=type=cache,target=/root/.cache/uv,id=raybake-uv-cache \
    --mount=type=bind,source=layers/heavy-numpy.txt,target=/opt/project/layers/heavy-numpy.txt \
    --mount=type=bind,source=raybake/seal_layer.py,target=/opt/project/raybake/seal_layer.py \
    --mount=type=tmpfs,target=/tmp \
    --mount=type=bind,from=ca,source=ca.pem,target=/run/raybake-ca/ca.pem \
    if [ -s /run/raybake-ca/ca.pem ]; then export SSL_CERT_FILE=/run/raybake-ca/ca.pem; fi \
 && start=$(PYTHONDONTWRITEBYTECODE=1 /opt/venv/bin/python -c 'import time; print(time.time())') \
 && cd /opt/project && UV_COMPILE_BYTECODE=0 UV_CACHE_DIR=/root/.cache/uv uv pip install --python /opt/venv/bin/python --no-deps --require-hashes -r /opt/project/layers/heavy-numpy.txt \
 && SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH PYTHONDONTWRITEBYTECODE=1 /opt/venv/bin/python /opt/project/raybake/seal_layer.py "$start"
# pinned layer heavy-pandas: pandas
RUN --mount=type=cache,target=/root/.cache/uv,id=raybake-uv-cache \
    --mount=type=bind,source=layers/heavy-pandas.txt,target=/opt/project/layers/heavy-pandas.txt \
    --mount=type=bind,source=raybake/seal_layer.py,target=/opt/project/raybake/seal_layer.py \
    --mount=type=tmpfs,target=/tmp \
    --mount=type=bind,from=ca,source=ca.pem,target=/run/raybake-ca/ca.pem \
    if [ -s /run/raybake-ca/ca.pem ]; then export SSL_CERT_FILE=/run/raybake-ca/ca.pem; fi \
 && start=$(PYTHONDONTWRITEBYTECODE=1 /opt/venv/bin/python -c 'import time; print(time.time())') \
 && cd /opt/project && UV_COMPILE_BYTECODE=0 UV_CACHE_DIR=/root/.cache/uv uv pip install --python /opt/venv/bin/python --no-deps --require-hashes -r /opt/project/layers/heavy-pandas.txt \
 && SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH PYTHONDONTWRITEBYTECODE=1 /opt/venv/bin/python /opt/project/raybake/seal_layer.py "$start"
# pinned layer medium: aiohttp, certifi, cffi, charset-normalizer, click, colorful, cryptography, distlib, filelock, frozenlist, google-api-core, google-auth, googleapis-common-protos, grpcio, msgpack, multidict, opencensus, opentelemetry-sdk, opentelemetry-semantic-conventions, packaging, propcache, protobuf, py-spy, pyasn1-modules, pydantic, pydantic-core, pyyaml, rpds-py, tzdata, urllib3, virtualenv, wrapt, yarl
RUN --mount=type=cache,target=/root/.cache/uv,id=raybake-uv-cache \
    --mount=type=bind,source=layers/medium.txt,target=/opt/project/layers/medium.txt \
    --mount=type=bind,source=raybake/seal_layer.py,target=/opt/project/raybake/seal_layer.py \
    --mount=type=tmpfs,target=/tmp \
    --mount=type=bind,from=ca,source=ca.pem,target=/run/raybake-ca/ca.pem \
    if [ -s /run/raybake-ca/ca.pem ]; then export SSL_CERT_FILE=/run/raybake-ca/ca.pem; fi \
 && start=$(PYTHONDONTWRITEBYTECODE=1 /opt/venv/bin/python -c 'import time; print(time.time())') \
 && cd /opt/project && UV_COMPILE_BYTECODE=0 UV_CACHE_DIR=/root/.cache/uv uv pip install --python /opt/venv/bin/python --no-deps --require-hashes -r /opt/project/layers/medium.txt \
 && SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH PYTHONDONTWRITEBYTECODE=1 /opt/venv/bin/python /opt/project/raybake/seal_layer.py "$start"
RUN --mount=type=cache,target=/root/.cache/uv,id=raybake-uv-cache \
    --mount=type=bind,source=pyproject.toml,target=/opt/project/pyproject.toml \
    --mount=type=bind,source=uv.lock,target=/opt/project/uv.lock \
    --mount=type=bind,source=raybake/seal_layer.py,target=/opt/project/raybake/seal_layer.py \
    --mount=type=tmpfs,target=/tmp \
    --mount=type=bind,from=ca,source=ca.pem,target=/run/raybake-ca/ca.pem \
    if [ -s /run/raybake-ca/ca.pem ]; then export SSL_CERT_FILE=/run/raybake-ca/ca.pem; fi \
 && start=$(PYTHONDONTWRITEBYTECODE=1 /opt/venv/bin/python -c 'import time; print(time.time())') \
 && cd /opt/project && UV_COMPILE_BYTECODE=0 UV_CACHE_DIR=/root/.cache/uv uv sync --frozen --no-install-project --no-dev --no-default-groups \
 && SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH PYTHONDONTWRITEBYTECODE=1 /opt/venv/bin/python /opt/project/raybake/seal_layer.py "$start"
USER ray
WORKDIR /home/ray
LABEL dev.raybake.input-hash="<hash>" \
      dev.raybake.spec="default" \
      dev.raybake.project="ray-app" \
      dev.raybake.version="<version>" \
      dev.raybake.python="3.11.11"

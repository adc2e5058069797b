# Baseline (b): the single-layer pattern of uv's Docker guide
# (https://docs.astral.sh/uv/guides/integration/docker/, "Intermediate layers"):
# the locked dependencies in one `uv sync --no-install-project` layer with a
# cache mount and bind mounts of uv.lock/pyproject.toml, then the source and a
# second `uv sync` that installs only the project. `--no-dev` as in the guide's
# production example (raybake installs no dev group either).
#
#   docker buildx build --network host --load -t TAG -f uv.Dockerfile \
#     --build-context ca=DIR_WITH_ca.pem \
#     --build-context uv="$(dirname "$(python -c 'import uv; print(uv.find_uv_bin())')")" \
#     --build-arg BASE_IMAGE=raybake-test/bookworm-python:3.11 PROJECT_DIR
#
# No image registry is reachable here, so uv comes from a named build context
# (the binary of the uv wheel) instead of `COPY --from=ghcr.io/astral-sh/uv`.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
COPY --from=uv uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3.11
WORKDIR /app
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    --mount=type=bind,from=ca,source=ca.pem,target=/run/ca/ca.pem \
    if [ -s /run/ca/ca.pem ]; then export SSL_CERT_FILE=/run/ca/ca.pem; fi \
 && uv sync --locked --no-install-project --no-dev
COPY . /app
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,from=ca,source=ca.pem,target=/run/ca/ca.pem \
    if [ -s /run/ca/ca.pem ]; then export SSL_CERT_FILE=/run/ca/ca.pem; fi \
 && uv sync --locked --no-dev
ENV PATH="/app/.venv/bin:$PATH"

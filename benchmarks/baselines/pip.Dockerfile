# Baseline (a): the naive pattern. The whole project is copied first, then
# `pip install .` resolves and installs everything: any change to any file
# (source, lock, README) invalidates the COPY and re-installs the environment.
#
#   docker buildx build --network host --load -t TAG -f pip.Dockerfile \
#     --build-context ca=DIR_WITH_ca.pem \
#     --build-arg BASE_IMAGE=raybake-test/bookworm-python:3.11 PROJECT_DIR
#
# The offline base image has no pip outside a venv, hence the venv first.
# The CA is the HTTPS proxy's bundle, bound in as raybake does (a BuildKit
# secret mount costs 1-3 s per step); it never lands in a layer.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY . .
RUN --mount=type=bind,from=ca,source=ca.pem,target=/run/ca/ca.pem \
    if [ -s /run/ca/ca.pem ]; then export PIP_CERT=/run/ca/ca.pem; fi \
 && pip install --no-cache-dir .

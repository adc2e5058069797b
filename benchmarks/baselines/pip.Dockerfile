# Baseline (a): the naive pattern. The whole project is copied first, then
# `pip install .` resolves and installs everything: any change to any file
# (source, lock, README) invalidates the COPY and re-installs the environment.
#
#   docker buildx build --network host --load -t TAG -f pip.Dockerfile \
#     --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt \
#     --build-arg BASE_IMAGE=raybake-test/bookworm-python:3.11 PROJECT_DIR
#
# The offline base image has no pip outside a venv, hence the venv first.
# The CA secret is the HTTPS proxy's bundle; it never lands in a layer.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY . .
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && pip install --no-cache-dir .

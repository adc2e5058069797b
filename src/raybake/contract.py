"""The image contract: what every image raybake builds provides, in one place.

Dockerfile.base sets these up; verification, job configs and the local Ray
head rely on them. tests/test_contract.py checks them against Dockerfile.base."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

VENV = "/opt/venv"
VENV_BIN = f"{VENV}/bin"
VENV_PYTHON = f"{VENV_BIN}/python"
PROJECT_DIR = "/opt/project"  # where the lock and pyproject files are bound during uv sync
UV_CACHE = "/root/.cache/uv"
# The uv put into images unless a spec sets uv_version: one exact version per
# raybake release, whatever uv is installed next to raybake, so tags do not
# move with the installer. The same as raybake's own uv.lock and the hooks' pin
# (tests/test_uv_version.py checks both).
DEFAULT_UV_VERSION = "0.13.9"

# Set by Dockerfile.base; Ray workers depend on them, verification checks them.
REQUIRED_ENV = {
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    "UV_PROJECT_ENVIRONMENT": VENV,
    "VIRTUAL_ENV": VENV,
    "UV_LINK_MODE": "copy",
    "UV_COMPILE_BYTECODE": "1",
    "UV_PYTHON_DOWNLOADS": "never",
}
# Seeded into the venv by Dockerfile.base (Ray bootstraps with pip); allowed
# beside the lock unless the lock pins them, then their versions must match.
SEED_PACKAGES = frozenset({"pip", "setuptools", "wheel"})

LABEL_PREFIX = "dev.raybake"
LABEL_INPUT_HASH = f"{LABEL_PREFIX}.input-hash"
LABEL_SPEC = f"{LABEL_PREFIX}.spec"
LABEL_PROJECT = f"{LABEL_PREFIX}.project"
LABEL_VERSION = f"{LABEL_PREFIX}.version"
# X.Y.Z of the image's interpreter: job configs compare it with the client's Python.
LABEL_PYTHON = f"{LABEL_PREFIX}.python"
# On the verification record raybake pushes beside an image (raybake.trust): the record itself.
LABEL_VERIFICATION = f"{LABEL_PREFIX}.verification"
# On containers raybake starts: HOST:PID:START of the raybake process that owns it,
# so the next run removes those of a raybake that was killed (SIGKILL runs no cleanup).
LABEL_OWNER = f"{LABEL_PREFIX}.owner"

# Scripts raybake runs inside images, kept together in src/raybake/templates/in_image/.
PROBE_SCRIPT = "probe.py"  # verification: reports the environment (raybake.verify)
SEAL_SCRIPT = "seal_layer.py"  # after each dependency install: byte-compile, fix file times
SUBMIT_SCRIPT = "submit_job.py"  # `raybake submit` to its local head, with the image's own Ray client
ANYSCALE_PROBE_SCRIPT = "anyscale_probe.py"  # `job-config --format anyscale`: Anyscale's image requirements


@cache
def in_image_source(name: str) -> str:
    return files("raybake").joinpath("templates", "in_image", name).read_text(encoding="utf-8")

"""Shared fixtures. The engine fixtures use the real Docker engine, registry and
base image that `bash buildkit/engine-up` brings up; nothing is mocked.

Under CI (CI set) a test that needs the engine fails when it is down; elsewhere
it is skipped with the command that starts it."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLE = REPO / "examples" / "ray-app"
ENGINE_UP = REPO / "buildkit" / "engine-up"


@dataclass(frozen=True)
class Engine:
    registry: str  # host:port on 127.0.0.1
    base_image: str
    nonroot_base_image: str  # runs as `ray` (uid 1000), like rayproject/ray
    trixie_base_image: str  # Debian trixie: Python 3.13

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for raybake runs against this engine."""
        return {**os.environ, "RAYBAKE_BASE_IMAGE": self.base_image, "RAYBAKE_NETWORK": "host", **extra}


def _unavailable(reason: str):
    message = f"the build engine is not available: {reason}\nstart it with: bash buildkit/engine-up"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def engine() -> Engine:
    proc = subprocess.run(["bash", str(ENGINE_UP), "--check"], capture_output=True, text=True)
    if proc.returncode != 0:
        _unavailable(proc.stderr.strip())
    state = Path(os.environ.get("RAYBAKE_ENGINE_STATE", "/var/tmp/raybake-engine")) / "engine.env"
    values = dict(line.split("=", 1) for line in state.read_text().split() if "=" in line)
    return Engine(registry=values["RAYBAKE_TEST_REGISTRY"], base_image=values["RAYBAKE_TEST_BASE_IMAGE"],
                  nonroot_base_image=values["RAYBAKE_TEST_NONROOT_BASE_IMAGE"],
                  trixie_base_image=values["RAYBAKE_TEST_TRIXIE_BASE_IMAGE"])


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """raybake's memo and lock files go to a per-session directory."""
    monkeypatch.setenv("RAYBAKE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "raybake-cache"))


@pytest.fixture
def copy_fixture(tmp_path):
    """Copy a fixture project (by name under tests/fixtures, or a path) to a temp dir."""

    def copy(name: str | Path) -> Path:
        src = Path(name) if isinstance(name, Path) else FIXTURES / name
        dest = tmp_path / src.name
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
        return dest

    return copy


@pytest.fixture
def unique_repo() -> str:
    """A repository nobody else uses: every test's build starts absent."""
    return f"raybake-test/t{uuid.uuid4().hex[:12]}"

"""Dockerfile.base builds on the real engine and gives Python, uv and pip
(the template itself is checked against raybake.contract in test_contract.py)."""

import pytest
from conftest import REPO

from raybake.tools import docker as engine_docker
from raybake.tools.docker import BuildRequest, build_image
from raybake.contract import DEFAULT_UV_VERSION
from raybake.tools.uv import uv_bin_for

pytestmark = pytest.mark.engine


def test_dockerfile_base_builds_and_runs(engine, tmp_path):
    uv_dir = tmp_path / "uv"
    uv_dir.mkdir()
    (uv_dir / "uv").write_bytes(uv_bin_for("linux/amd64", DEFAULT_UV_VERSION, host="linux/amd64").read_bytes())
    (uv_dir / "uv").chmod(0o755)
    context = tmp_path / "ctx"
    context.mkdir()
    lines: list[str] = []
    image = build_image(BuildRequest(
        context=context, dockerfile=REPO / "Dockerfile.base", build_contexts={"uv": uv_dir},
        build_args={"BASE_IMAGE": engine.base_image, "PYTHON_VERSION": "3.11"}, secrets=(),
        network="host", platform="linux/amd64", metadata_file=tmp_path / "metadata.json"), on_line=lines.append)
    try:
        code, out, _ = engine_docker.run_container(image, ["python", "-c", "import sys; print(sys.prefix)"])
        assert (code, out.strip()) == (0, "/opt/venv")
        code, out, _ = engine_docker.run_container(image, ["uv", "--version"])
        assert code == 0 and out.startswith(f"uv {DEFAULT_UV_VERSION}")
        code, out, _ = engine_docker.run_container(
            image, ["sh", "-c", "python -c 'import pip' && echo $RAY_ENABLE_UV_RUN_RUNTIME_ENV $UV_PROJECT_ENVIRONMENT"])
        assert (code, out.strip()) == (0, "0 /opt/venv")
    finally:
        engine_docker.remove_image(image)

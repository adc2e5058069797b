"""The image contract (raybake.contract) against what Dockerfile.base really sets up."""

import re

from conftest import REPO

from raybake import contract
from raybake.dockerfile import base_dockerfile


def base_env() -> dict[str, str]:
    """ENV of Dockerfile.base (one multi-line ENV instruction of KEY=VALUE pairs)."""
    text = base_dockerfile().replace("\\\n", " ")
    (env_line,) = [line for line in text.splitlines() if line.startswith("ENV ")]
    return dict(re.findall(r"([A-Z_]+)=(\S+)", env_line))


def test_required_environment_is_what_the_base_sets():
    env = base_env()
    for key, value in contract.REQUIRED_ENV.items():
        assert env.get(key) == value, key
    assert env["PATH"].startswith(contract.VENV_BIN + ":")


def test_paths_are_the_base_images():
    text = base_dockerfile()
    assert f"-m venv {contract.VENV}" in text
    assert f"WORKDIR {contract.PROJECT_DIR}" in text


def test_the_packaged_template_is_the_repositorys_file():
    assert (REPO / "Dockerfile.base").read_text() == base_dockerfile()

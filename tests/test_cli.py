import re

import pytest
from helpers import raybake


def test_help_lists_the_commands():
    out = raybake("--help").stdout
    for verb in ("build", "tag", "dockerfile", "verify", "stage", "job-config", "submit", "py-executable", "pin"):
        assert re.search(rf"^\s+{verb}\s", out, re.M), verb


def test_version():
    assert re.match(r"raybake, version \d+\.\d+", raybake("--version").stdout)


def test_tag_prints_the_reference_without_a_daemon(copy_fixture):
    root = copy_fixture("small")
    # DOCKER_HOST pointing nowhere proves no daemon is asked.
    proc = raybake("tag", "-C", str(root), env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": "unix:///nonexistent"})
    assert re.fullmatch(r"small:default-[0-9a-f]{16}\n", proc.stdout)


def test_errors_are_one_paragraph_with_a_fix_and_no_traceback(tmp_path):
    proc = raybake("build", "-C", str(tmp_path), check=False)
    assert proc.returncode == 2
    assert "error: no pyproject.toml" in proc.stderr
    assert "fix:" in proc.stderr and "uv init" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.engine
def test_dockerfile_command_prints_the_resolved_file(engine, copy_fixture):
    """The Dockerfile as built: the base image and the Python found in it, not the template's defaults."""
    out = raybake("dockerfile", "-C", str(copy_fixture("small")), env=engine.env()).stdout
    assert out.startswith("# raybake base image") and "uv sync --frozen --no-install-project" in out
    assert f'ARG BASE_IMAGE="{engine.base_image}"\n' in out and 'ARG PYTHON_VERSION="3.11"\n' in out


@pytest.mark.engine
def test_a_base_image_that_cannot_be_had_is_an_error_before_any_build(engine, copy_fixture):
    proc = raybake("build", "-C", str(copy_fixture("small")), check=False,
                   env=engine.env(RAYBAKE_BASE_IMAGE="raybake-test/absent-base:1"))
    assert proc.returncode == 2, proc.stderr
    assert "raybake-test/absent-base:1 is not in the local image store" in proc.stderr
    assert "docker pull" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.engine
def test_a_python_the_base_image_lacks_is_an_error_before_any_build(engine, copy_fixture):
    root = copy_fixture("small")
    (root / ".python-version").write_text("3.12\n")
    proc = raybake("build", "-C", str(root), check=False, env=engine.env())
    assert proc.returncode == 2, proc.stderr
    assert "error: .python-version: Python 3.12 is asked for" in proc.stderr and "python3.11 (3.11" in proc.stderr
    assert ".python-version" in proc.stderr and "building" not in proc.stderr

"""uv on the host: the lock check needs no particular interpreter and never calls
a consistent lock out of date."""

import pytest
from helpers import raybake

from raybake.errors import LockOutOfDate, ToolError
from raybake.project import load_project
from raybake.tools.uv import lock_check


@pytest.mark.parametrize("pin", ["3.11.11", "3.11.9", "3.13"])
def test_a_python_version_file_naming_an_absent_interpreter_is_not_a_stale_lock(copy_fixture, pin):
    root = copy_fixture("small")
    (root / ".python-version").write_text(pin + "\n")
    lock_check(load_project(root))  # raises on failure
    assert raybake("pin", "--lock-only", "-C", str(root)).returncode == 0


def test_no_interpreter_for_requires_python_says_what_is_missing(copy_fixture):
    root = copy_fixture("small")
    for name in ("pyproject.toml", "uv.lock"):
        path = root / name
        path.write_text(path.read_text().replace('requires-python = ">=3.11"', 'requires-python = ">=3.99"', 1))
    with pytest.raises(ToolError) as info:
        lock_check(load_project(root))
    assert "could not check" in info.value.message and "out of date" not in info.value.message
    assert "uv python install 3.99" in info.value.fix


def test_a_stale_lock_is_out_of_date(copy_fixture):
    root = copy_fixture("small")
    path = root / "pyproject.toml"
    path.write_text(path.read_text().replace('"six==1.17.0"', '"six==1.16.0"'))
    with pytest.raises(LockOutOfDate) as info:
        lock_check(load_project(root))
    assert "uv lock" in info.value.fix



HOST_SETTINGS = {"UV_INDEX_URL": "https://index.example.invalid/simple", "UV_EXCLUDE_NEWER": "2020-01-01",
                 "UV_PRERELEASE": "allow", "UV_RESOLUTION": "lowest"}


@pytest.mark.parametrize(("variable", "value"), HOST_SETTINGS.items())
def test_host_index_and_resolver_settings_do_not_make_a_correct_lock_stale(copy_fixture, monkeypatch, tmp_path,
                                                                           variable, value):
    """The image's `uv sync --frozen` never sees them: only the project's own files judge the lock."""
    monkeypatch.setenv("RAYBAKE_CACHE_DIR", str(tmp_path / "cache"))  # no remembered check of these files
    monkeypatch.setenv(variable, value)
    root = copy_fixture("small")
    lock_check(load_project(root))
    path = root / "pyproject.toml"
    path.write_text(path.read_text().replace('"six==1.17.0"', '"six==1.16.0"'))
    with pytest.raises(LockOutOfDate):  # a stale lock still is
        lock_check(load_project(root))


@pytest.mark.engine
def test_without_a_host_interpreter_the_lock_is_checked_in_the_base_image(engine, copy_fixture, tmp_path, unique_repo):
    """requires-python ==3.11.2: only the base image has it. The lock is checked
    there before building, and a stale lock is still caught."""
    import shutil

    root = copy_fixture("small")
    for name in ("pyproject.toml", "uv.lock"):
        path = root / name
        path.write_text(path.read_text().replace('requires-python = ">=3.11"', 'requires-python = "==3.11.2"', 1))
    bin_dir = tmp_path / "bin"  # PATH with docker and no Python at all
    bin_dir.mkdir()
    (bin_dir / "docker").symlink_to(shutil.which("docker"))
    env = engine.env(PATH=str(bin_dir), RAYBAKE_REPOSITORY=unique_repo)
    proc = raybake("build", "-C", str(root), env=env)
    assert "checking uv.lock with the Python of" in proc.stderr and " built " in proc.stdout
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("six==1.17.0", "six==1.16.0"))
    stale = raybake("build", "-C", str(root), env=env, check=False)
    assert stale.returncode == 2 and "out of date" in stale.stderr and "uv lock" in stale.stderr


def test_dynamic_metadata_with_a_cold_uv_cache_is_checked_with_the_network(copy_fixture, tmp_path):
    """The offline check cannot run setuptools (dependencies from requirements.txt)
    with an empty uv cache: raybake retries with the network; where uv may not use
    the network either, it says exactly what to run."""
    import os

    root = copy_fixture("dynamic-metadata")
    env = {**os.environ, "UV_CACHE_DIR": str(tmp_path / "cold-uv-cache")}
    proc = raybake("pin", "--lock-only", "-C", str(root), env=env, check=False)
    assert proc.returncode == 0 and "uv.lock is up to date" in proc.stderr, proc.stderr
    env = {**env, "UV_CACHE_DIR": str(tmp_path / "another-cold-cache"), "UV_OFFLINE": "1",
           "RAYBAKE_CACHE_DIR": str(tmp_path / "raybake-cache")}  # not the passing check remembered above
    proc = raybake("pin", "--lock-only", "-C", str(root), env=env, check=False)
    assert proc.returncode == 2 and "a package with dynamic metadata needs its build backend" in proc.stderr
    assert f"run `uv lock --check` in {root} once with network access" in proc.stderr

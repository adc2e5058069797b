"""`raybake build` on the real engine and registry, with small real projects."""

import re
import subprocess
import time

import pytest
from helpers import docker, raybake

from raybake.tools.uv import uv_bin

pytestmark = pytest.mark.engine


def ref_of(stdout: str) -> str:
    return stdout.split()[0]


def test_build_then_skip_until_the_lock_changes(engine, copy_fixture, unique_repo):
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    first = raybake("build", "-C", str(root), env=env)
    ref = ref_of(first.stdout)
    assert re.fullmatch(rf"{unique_repo}:default-[0-9a-f]{{16}}", ref)
    assert " built " in first.stdout
    assert "uv sync" in first.stderr  # BuildKit's progress is shown
    # The dependency is in the image's environment; the project is not.
    out = docker("run", "--rm", "--network", "none", ref, "python", "-c",
                 "import six, importlib.util as u; print(six.__version__, u.find_spec('small'))").stdout
    assert out.split() == ["1.17.0", "None"]

    # No-op and source-only change: no build, same tag.
    (root / "src/small/__init__.py").write_text("def main():\n    print('edited')\n")
    again = raybake("build", "-C", str(root), env=env)
    assert again.stdout.split()[:4] == [ref, "up", "to", "date"]
    assert "building" not in again.stderr

    # The lock changes: a new tag is built.
    text = (root / "pyproject.toml").read_text().replace('dev = ["iniconfig==2.0.0"]', 'dev = ["iniconfig==2.1.0"]')
    (root / "pyproject.toml").write_text(text)
    stale = raybake("build", "-C", str(root), env=env, check=False)
    assert stale.returncode == 2 and "out of date" in stale.stderr and "uv lock" in stale.stderr
    subprocess.run([str(uv_bin()), "lock", "-q"], cwd=root, check=True)
    third = raybake("build", "-C", str(root), env=env)
    assert ref_of(third.stdout) != ref and " built " in third.stdout


def test_push_and_registry_skip(engine, copy_fixture, unique_repo):
    root = copy_fixture("small")
    repo = f"{engine.registry}/{unique_repo}"
    env = engine.env(RAYBAKE_REPOSITORY=repo)
    pushed = raybake("build", "--push", "-C", str(root), env=env)
    ref = ref_of(pushed.stdout)
    assert "built and pushed" in pushed.stdout
    assert re.search(rf"{re.escape(repo)}@sha256:[0-9a-f]{{64}}", pushed.stdout)
    docker("buildx", "imagetools", "inspect", ref)
    # Gone from the local store, present in the registry: nothing is rebuilt.
    docker("image", "rm", ref)
    start = time.monotonic()
    again = raybake("build", "--push", "-C", str(root), env=env)
    assert "up to date" in again.stdout and "building" not in again.stderr
    assert time.monotonic() - start < 30


def test_unreachable_registry_is_an_error_not_assumed_present(engine, copy_fixture):
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_REPOSITORY="127.0.0.1:1/nowhere/small")
    proc = raybake("build", "-C", str(root), env=env, check=False)
    assert proc.returncode == 2
    assert "cannot tell whether" in proc.stderr and "fix:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_two_clean_builds_give_the_same_digest(engine, copy_fixture, unique_repo):
    """Every layer is reproducible: the base, a pinned layer (six) and the sync layer (the extra)."""
    root = copy_fixture("small")
    with (root / "pyproject.toml").open("a") as f:
        f.write('\n[tool.raybake]\nheavy_packages = ["six"]\nextras = ["table"]\n')
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    images = []
    for _ in range(2):
        raybake("build", "--force", "--no-cache", "-C", str(root), env=env)
        ref = raybake("tag", "-C", str(root), env=env).stdout.strip()
        images.append(docker("image", "inspect", "--format", "{{.Id}} {{json .RootFS.Layers}}", ref).stdout.strip())
        time.sleep(1.1)  # file times would differ by at least a second if they leaked into a layer
    assert images[0] == images[1]
    # Each layer byte-compiled what it installed: no module is left without its .pyc.
    probe = ("import importlib.util as u, pathlib, sysconfig; "
             "site = pathlib.Path(sysconfig.get_paths()['purelib']); "
             "print([str(p) for p in site.rglob('*.py') if not pathlib.Path(u.cache_from_source(p)).exists()])")
    assert docker("run", "--rm", "--network", "none", ref, "python", "-c", probe).stdout.strip() == "[]"


def test_workspace_installs_members_dependencies_not_members(engine, copy_fixture, unique_repo):
    root = copy_fixture("workspace")
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    ref = ref_of(raybake("build", "-C", str(root), env=env).stdout)
    out = docker("run", "--rm", "--network", "none", ref, "python", "-c",
                 "import six, tabulate, importlib.util as u; "
                 "print([u.find_spec(m) for m in ('liba', 'libb', 'wsroot')])").stdout
    assert out.strip() == "[None, None, None]"

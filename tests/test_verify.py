"""Environment verification: pure comparison, then real broken images."""

import json
import shutil
import uuid

import pytest
from conftest import FIXTURES
from helpers import docker, raybake

from raybake.project import load_project
from raybake.spec import load_specs
from raybake.verify import compare, locked_selection

REQS = "six==1.17.0 ; python_full_version >= '3.11'\nwinonly==1.0 ; sys_platform == 'win32'\n"
MARKERS = {"python_full_version": "3.11.2", "sys_platform": "linux", "python_version": "3.11",
           "platform_machine": "x86_64", "implementation_name": "cpython", "os_name": "posix",
           "platform_system": "Linux", "platform_release": "", "platform_version": "",
           "platform_python_implementation": "CPython", "implementation_version": "3.11.2"}
GOOD_ENV = {"RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "UV_PROJECT_ENVIRONMENT": "/opt/venv",
            "VIRTUAL_ENV": "/opt/venv", "UV_LINK_MODE": "copy", "UV_COMPILE_BYTECODE": "1",
            "UV_PYTHON_DOWNLOADS": "never"}


def probe(**over):
    base = {"python": "3.11.2", "markers": MARKERS, "distributions": {"six": "1.17.0", "pip": "23.0.1"},
            "pip_importable": True, "pip_check": {"code": 0, "output": ""}, "import_failures": {},
            "ray_version": None, "env": GOOD_ENV}
    return {**base, **over}


@pytest.fixture
def small(copy_fixture):
    project = load_project(copy_fixture("small"))
    (spec,) = load_specs(project, {})
    return project, spec


def test_markers_select_what_applies():
    assert locked_selection(REQS, MARKERS) == {"six": "1.17.0"}
    assert locked_selection(REQS, None) == {"six": "1.17.0", "winonly": "1.0"}


@pytest.mark.parametrize(("change", "check", "text"), [
    ({}, None, None),
    ({"distributions": {"pip": "23"}}, "lock", "six==1.17.0 is in the lock but not installed"),
    ({"distributions": {"six": "1.17.0", "extra": "1"}}, "lock", "extra==1 is installed but not in the lock"),
    ({"distributions": {"six": "1.16.0"}}, "lock", "six is 1.16.0, the lock has 1.17.0"),
    ({"distributions": {"six": "1.17.0", "small": "0.1.0"}}, "project absent", "small 0.1.0 is installed"),
    ({"pip_check": {"code": 1, "output": "six 1.17.0 requires x"}}, "uv pip check", "requires x"),
    ({"python": "3.12.1"}, "python", "the spec asks for 3.11"),
    ({"pip_importable": False}, "pip", "pip is not importable"),
    ({"import_failures": {"six": "ImportError: boom"}}, "imports", "import six: ImportError: boom"),
    ({"env": {**GOOD_ENV, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": None}}, "environment", "RAY_ENABLE_UV_RUN_RUNTIME_ENV"),
])
def test_compare_finds_each_problem(small, change, check, text):
    project, spec = small
    findings = compare(project, spec, REQS, probe(**change))
    if check is None:
        assert findings == []
    else:
        assert [f.check for f in findings] == [check]
        assert text in findings[0].message


def test_ray_version_must_equal_the_lock(small):
    project, spec = small
    reqs = REQS + "ray==2.60.0\n"
    dists = {"six": "1.17.0", "ray": "2.60.0"}
    assert compare(project, spec, reqs, probe(distributions=dists, ray_version="2.60.0")) == []
    (f,) = compare(project, spec, reqs, probe(distributions=dists, ray_version="2.59.0"))
    assert f.check == "ray" and "2.59.0" in f.message


# ---- real images -----------------------------------------------------------

@pytest.fixture(scope="module")
def clean_image(engine, tmp_path_factory):
    root = tmp_path_factory.mktemp("verify") / "small"
    shutil.copytree(FIXTURES / "small", root)
    env = engine.env(RAYBAKE_REPOSITORY=f"raybake-test/v{uuid.uuid4().hex[:10]}")
    ref = raybake("build", "-C", str(root), env=env).stdout.split()[0]
    return root, ref, env


SITE = "$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])')"
BREAKAGES = {
    "extra package installed by hand": (
        f"mkdir -p {SITE}/handmade-1.0.dist-info && printf 'Metadata-Version: 2.1\\nName: handmade\\nVersion: 1.0\\n'"
        f" > {SITE}/handmade-1.0.dist-info/METADATA", "handmade==1.0 is installed but not in the lock"),
    "package removed": ("uv pip uninstall --python /opt/venv/bin/python six",
                        "six==1.17.0 is in the lock but not installed"),
    "project installed": (
        f"mkdir -p {SITE}/small-0.1.0.dist-info && printf 'Metadata-Version: 2.1\\nName: small\\nVersion: 0.1.0\\n'"
        f" > {SITE}/small-0.1.0.dist-info/METADATA", "small 0.1.0 is installed in the image"),
    "wrong version": (f"sed -i 's/^Version: 1.17.0/Version: 1.16.0/' {SITE}/six-1.17.0.dist-info/METADATA",
                      "six is 1.16.0, the lock has 1.17.0"),
}


@pytest.mark.engine
def test_clean_image_passes(clean_image):
    root, ref, env = clean_image
    proc = raybake("verify", ref, "-C", str(root), "--json", env=env)
    report = json.loads(proc.stdout)
    assert report["ok"] and report["findings"] == []
    assert report["facts"]["modules_imported"] >= 1


@pytest.mark.engine
@pytest.mark.parametrize("case", BREAKAGES)
def test_broken_images_are_caught(clean_image, case):
    root, ref, env = clean_image
    command, expected = BREAKAGES[case]
    name = f"raybake-break-{uuid.uuid4().hex[:8]}"
    broken = f"raybake-test/broken:{name}"
    docker("run", "--name", name, "--network", "none", "--entrypoint", "sh", ref, "-c", command)
    try:
        docker("commit", name, broken)
        proc = raybake("verify", broken, "-C", str(root), env=env, check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert expected in proc.stdout
        assert "FAIL" in proc.stdout
    finally:
        docker("rm", "-f", name, check=False)
        docker("image", "rm", broken, check=False)


@pytest.mark.engine
def test_build_refuses_to_tag_a_bad_environment(engine, copy_fixture, unique_repo):
    root = copy_fixture("small")
    (root / "images").mkdir()
    # An image spec that breaks a Ray pitfall the base image guards against.
    (root / "images/default.yaml").write_text('env:\n  RAY_ENABLE_UV_RUN_RUNTIME_ENV: "1"\n')
    env = engine.env(RAYBAKE_REPOSITORY=f"{engine.registry}/{unique_repo}")
    ref = raybake("tag", "-C", str(root), env=env).stdout.strip()
    proc = raybake("build", "--push", "-C", str(root), env=env, check=False)
    assert proc.returncode == 1
    assert "was not tagged" in proc.stderr and "RAY_ENABLE_UV_RUN_RUNTIME_ENV" in proc.stderr
    assert docker("image", "inspect", ref, check=False).returncode != 0
    assert "not found" in docker("buildx", "imagetools", "inspect", ref, check=False).stderr

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
            "pip_importable": True, "pip_check": {"code": 0, "output": ""}, "imports": {"six": {"ok": True}},
            "modules": {"six": ["six"], "pip": ["pip"]}, "env": GOOD_ENV}
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
    ({"python": "3.10.1"}, "python", "does not satisfy requires-python >=3.11"),
    ({"pip_importable": False}, "pip", "pip is not importable"),
    ({"imports": {"six": {"ok": False, "type": "ImportError", "message": "boom"}}}, "imports",
     "import six: ImportError: boom"),
    ({"imports": {"six": {"ok": False, "type": "ModuleNotFoundError", "message": "No module named 'six.moves'",
                          "missing": "six.moves"}}}, "imports", "import six: ModuleNotFoundError"),
    ({"imports": {"six": {"ok": False, "type": "ImportError", "missing": None,
                          "message": "libgomp.so.1: cannot open shared object file: No such file or directory"}}},
     "imports", "libgomp.so.1 is missing from the image; add the Debian package that provides it to apt_packages"),
    ({"pth": [{"file": "evil.pth", "executes": True, "owner": None}]}, "files",
     "evil.pth runs code at every interpreter start and was not installed by a locked distribution"),
    ({"pth": [{"file": "distutils-precedence.pth", "executes": True, "owner": "setuptools"}]}, None, None),
    ({"record_problems": [{"dist": "six", "file": "six.py", "problem": "differs from its RECORD hash"}]}, "files",
     "six.py of six differs from its RECORD hash"),
    ({"unrecorded_files": ["planted.py"]}, "files", "planted.py is in site-packages but no installed"),
    ({"env": {**GOOD_ENV, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": None}}, "environment", "RAY_ENABLE_UV_RUN_RUNTIME_ENV"),
])
def test_compare_finds_each_problem(small, change, check, text):
    project, spec = small
    findings, _ = compare(project, spec, REQS, probe(**change))
    if check is None:
        assert findings == []
    else:
        assert [f.check for f in findings] == [check]
        assert text in findings[0].message


def test_ray_version_must_equal_the_lock(small):
    project, spec = small
    reqs = REQS + "ray==2.60.0\n"
    dists = {"six": "1.17.0", "ray": "2.60.0"}

    def imports(version):
        return {"six": {"ok": True}, "ray": {"ok": True, "version": version}}

    assert compare(project, spec, reqs, probe(distributions=dists, imports=imports("2.60.0"))) == ([], [])
    (f,), _ = compare(project, spec, reqs, probe(distributions=dists, imports=imports("2.59.0")))
    assert f.check == "ray" and "2.59.0" in f.message


@pytest.mark.parametrize(("module", "result", "note"), [
    # matplotlib_inline without matplotlib: an optional dependency the lock does not hold.
    ("matplotlib_inline", {"type": "ModuleNotFoundError", "message": "No module named 'matplotlib'",
                           "missing": "matplotlib"}, "needs matplotlib, which the lock does not hold"),
])
def test_optional_dependencies_outside_the_lock_are_notes(small, module, result, note):
    project, spec = small
    over = {"imports": {"six": {"ok": True}, module: {"ok": False, **result}}}
    findings, notes = compare(project, spec, REQS, probe(**over))
    assert findings == [] and any(note in n for n in notes)


def test_a_program_the_image_lacks_is_a_note(small):
    """GitPython (through wandb) refuses to import without git; the package is intact."""
    project, spec = small
    over = {"imports": {"six": {"ok": True}, "git": {"ok": False, "type": "ImportError", "missing": None,
                                                     "message": "Failed to initialize: Bad git executable."}}}
    findings, notes = compare(project, spec, REQS, probe(**over))
    assert findings == [] and "needs the program `git`" in notes[0] and "apt_packages" in notes[0]


def test_a_missing_module_that_the_environment_provides_is_a_failure(small):
    """Not an optional dependency: six is installed, so failing to find it is breakage."""
    project, spec = small
    over = {"imports": {"six": {"ok": True}, "other": {"ok": False, "type": "ModuleNotFoundError",
                                                       "message": "No module named 'six'", "missing": "six"}}}
    findings, notes = compare(project, spec, REQS, probe(**over))
    assert [f.check for f in findings] == ["imports"] and notes == []


def test_listed_but_unshipped_modules_are_notes(small):
    project, spec = small
    findings, notes = compare(project, spec, REQS, probe(unshipped_modules={"google-auth": ["scripts", "testing"]}))
    assert findings == [] and "google-auth lists scripts, testing" in notes[0]


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
    # A .pth runs at every interpreter start: here it would hide the extra package from
    # importlib.metadata, but the probe reads the environment before any site hook runs.
    "hidden by a .pth hook": (
        f"mkdir -p {SITE}/handmade-1.0.dist-info && printf 'Metadata-Version: 2.1\\nName: handmade\\nVersion: 1.0\\n'"
        f" > {SITE}/handmade-1.0.dist-info/METADATA && echo 'import shutil, glob; "
        f"[shutil.rmtree(p) for p in glob.glob(\"/opt/venv/lib/python3*/site-packages/handmade-*\")]'"
        f" > {SITE}/zz-hide.pth", "zz-hide.pth runs code at every interpreter start"),
    "stubbed module": (f"echo 'def b(s): return s' > {SITE}/six.py", "six.py of six differs from its RECORD hash"),
    "stubbed module, RECORD edited": (
        f"echo 'def b(s): return s' > {SITE}/six.py && sed -i '/^six.py,/d' {SITE}/six-1.17.0.dist-info/RECORD",
        "six.py is in site-packages but no installed distribution's RECORD lists it"),
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
def test_broken_images_are_caught(clean_image, case, tmp_path):
    root, ref, env = clean_image
    command, expected = BREAKAGES[case]
    broken = f"raybake-test/broken:{uuid.uuid4().hex[:8]}"
    # Built with BuildKit, not `docker commit` (which failed beside concurrent cache pruning).
    (tmp_path / "break.sh").write_text(command + "\n")
    (tmp_path / "Dockerfile").write_text(
        f"FROM {ref}\nRUN --mount=type=bind,source=break.sh,target=/tmp/break.sh sh /tmp/break.sh\n")
    docker("buildx", "build", "--quiet", "--network", "none", "--tag", broken, str(tmp_path))
    try:
        proc = raybake("verify", broken, "-C", str(root), env=env, check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert expected in proc.stdout
        assert "FAIL" in proc.stdout
    finally:
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


@pytest.mark.engine
def test_verify_takes_the_spec_from_the_images_label(engine, copy_fixture, unique_repo):
    """A `dev` image is judged by the `dev` spec it was built from, not by `default`."""
    root = copy_fixture("small")
    (root / "images").mkdir()
    (root / "images/default.yaml").write_text("{}\n")
    (root / "images/dev.yaml").write_text("dev: true\n")
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    ref = raybake("build", "dev", "-C", str(root), env=env).stdout.split()[0]
    proc = raybake("verify", ref, "-C", str(root), env=env)
    assert "OK" in proc.stdout and "iniconfig" not in proc.stdout
    wrong = raybake("verify", ref, "--image", "default", "-C", str(root), env=env, check=False)
    assert wrong.returncode == 1 and "iniconfig==2.0.0 is installed but not in the lock" in wrong.stdout

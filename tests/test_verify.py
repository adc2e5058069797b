"""Environment verification: pure comparison, then real broken images."""

import dataclasses
import json
import subprocess
import uuid

import pytest
from helpers import docker, make_wheel, raybake

from raybake.project import load_project
from raybake.spec import load_specs
from raybake.tools.uv import uv_bin
from raybake.verify import compare, config_env_findings, locked_selection

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


def test_a_path_sources_wheel_is_selected_by_its_file_name():
    """uv export writes a wheel path source as a bare path, with no name."""
    reqs = REQS + "./wheels/fakeflow_gcs-1.0-py3-none-any.whl\n./dist/other-2.1.tar.gz ; sys_platform == 'win32'\n"
    assert locked_selection(reqs, MARKERS) == {"six": "1.17.0", "fakeflow-gcs": "1.0"}
    assert locked_selection(reqs, None)["other"] == "2.1"


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
    ({"bytecode_problems": [{"file": "__pycache__/six.cpython-311.pyc", "problem": "holds other code than its "
                                                                                   "source compiles to"}]},
     "files", "__pycache__/six.cpython-311.pyc holds other code"),
    ({"pyvenv_cfg": {"include-system-site-packages": "true"}}, "files", "include-system-site-packages"),
    ({"pyvenv_cfg": {"include-system-site-packages": "false"}}, None, None),
])
def test_compare_finds_each_problem(small, change, check, text):
    project, spec = small
    findings, _ = compare(project, spec, REQS, probe(**change))
    if check is None:
        assert findings == []
    else:
        assert [f.check for f in findings] == [check]
        assert text in findings[0].message


def test_code_loading_variables_in_the_image_config_are_findings_unless_the_spec_sets_them(small):
    project, spec = small
    config = ("PATH=/opt/venv/bin:/usr/bin", "PYTHONPATH=/srv/x", "LD_PRELOAD=/srv/x.so", "LANG=C.UTF-8")
    assert [f.message.split(",")[0] for f in config_env_findings(spec, config)] == [
        "the image config sets PYTHONPATH=/srv/x", "the image config sets LD_PRELOAD=/srv/x.so"]
    asked = dataclasses.replace(spec, env=(("PYTHONPATH", "/srv/x"),))
    assert [f.message.split(",")[0] for f in config_env_findings(asked, config)] == [
        "the image config sets LD_PRELOAD=/srv/x.so"]


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


ENVIRONMENT_CAUSED = {
    # pynput 1.6 on Linux without $DISPLAY, through Xlib; pynput 1.8 wraps it.
    "no display": ("pynput", {"type": "DisplayNameError", "message": 'Bad display name ""'}),
    "no display, wrapped": ("pynput", {"type": "ImportError", "message": "this platform is not supported: "
                                       "('failed to acquire X connection: Bad display name \"\"', "
                                       "DisplayNameError(''))"}),
    "no GPU driver": ("gpulib", {"type": "OSError", "message": "libcuda.so.1: cannot open shared object file: "
                                 "No such file or directory"}),
    "no GPU": ("torchish", {"type": "RuntimeError", "message": "Found no NVIDIA driver on your system."}),
    # tensorflow_io_gcs_filesystem: tensorflow, which it imports, registered gs already.
    "already registered": ("tensorflow_io_gcs_filesystem", {"type": "AlreadyExistsError",
                                                            "message": "File system for gs already registered"}),
    "imported first by its own package": ("twomod_ext", {
        "type": "ImportError", "after": ["twomod"],
        "message": "cannot import name 'EXT' from partially initialized module 'twomod_ext'"}),
}


@pytest.mark.parametrize("case", ENVIRONMENT_CAUSED)
def test_import_failures_caused_by_the_probes_environment_are_notes(small, case):
    project, spec = small
    module, result = ENVIRONMENT_CAUSED[case]
    findings, notes = compare(project, spec, REQS, probe(imports={"six": {"ok": True},
                                                                  module: {"ok": False, "missing": None, **result}}))
    assert findings == [] and len(notes) == 1 and f"import {module}" in notes[0]


@pytest.mark.parametrize("message", [
    "libcudart.so.12: cannot open shared object file: No such file or directory",  # a wheel's, not the driver's
    "libGL.so.1: cannot open shared object file: No such file or directory",
])
def test_libraries_the_image_should_hold_still_fail(small, message):
    project, spec = small
    over = {"imports": {"six": {"ok": True}, "lib": {"ok": False, "type": "ImportError", "missing": None,
                                                     "message": message}}}
    findings, notes = compare(project, spec, REQS, probe(**over))
    assert [f.check for f in findings] == ["imports"] and "apt_packages" in findings[0].message and notes == []


# ---- real images -----------------------------------------------------------

@pytest.fixture(scope="module")
def clean_image(small_image):
    return small_image.root, small_image.reference, small_image.env


SITE = "$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])')"
# six's bytecode replaced by six with a line appended, under a header with the
# given flags (1: unchecked hash, never compared with six.py; 3: checked, with
# six.py's true hash, so only the code itself differs).
PYC_PLANT = """/opt/venv/bin/python - <<'EOF'
import glob, importlib.util, marshal, sysconfig
site = sysconfig.get_paths()["purelib"]
(pyc,) = glob.glob(site + "/__pycache__/six.*.pyc")
source = open(site + "/six.py", "rb").read()
code = compile(source + b"\\nopen('/tmp/planted-ran', 'w').close()\\n", site + "/six.py", "exec")
header = importlib.util.MAGIC_NUMBER + ({flags}).to_bytes(4, "little") + importlib.util.source_hash(source)
open(pyc, "wb").write(header + marshal.dumps(code))
EOF"""
PLANT_HANDMADE = (f"mkdir -p {SITE}/handmade-1.0.dist-info && "
                  f"printf 'Metadata-Version: 2.1\\nName: handmade\\nVersion: 1.0\\n' > {SITE}/handmade-1.0.dist-info/METADATA")
HIDE_HANDMADE = ('import shutil, glob; [shutil.rmtree(p) for p in '
                 'glob.glob("/opt/venv/lib/python3*/site-packages/handmade-*")]')
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
        f" > {SITE}/zz-hide.pth", ("zz-hide.pth runs code at every interpreter start",
                                    # only an isolated read of site-packages (no site hook ran) sees it
                                    "handmade==1.0 is installed but not in the lock")),
    "stubbed module": (f"echo 'def b(s): return s' > {SITE}/six.py", "six.py of six differs from its RECORD hash"),
    "stubbed module, RECORD edited": (
        f"echo 'def b(s): return s' > {SITE}/six.py && sed -i '/^six.py,/d' {SITE}/six-1.17.0.dist-info/RECORD",
        "six.py is in site-packages but no installed distribution's RECORD lists it"),
    # Issue 21.3: code that runs at import or start-up without a .py or .pth of its own.
    "unchecked-hash bytecode": (PYC_PLANT.format(flags=1), "is not checked-hash bytecode of this interpreter"),
    "checked-hash bytecode with appended code": (PYC_PLANT.format(flags=3), "holds other code than its source"),
    "extension module beside its .py": (
        f"cp /usr/lib/python3.11/lib-dynload/_json.cpython-311-*.so {SITE}/six.cpython-311-x86_64-linux-gnu.so",
        "six.cpython-311-x86_64-linux-gnu.so is in site-packages but no installed distribution's RECORD"),
    "PYTHONPATH in the image config": ("ENV PYTHONPATH=/srv/planted", "sets PYTHONPATH=/srv/planted"),
    "LD_PRELOAD in the image config": ("ENV LD_PRELOAD=/srv/planted.so", "sets LD_PRELOAD=/srv/planted.so"),
    "PYTHONSTARTUP in the image config": ("ENV PYTHONSTARTUP=/srv/planted.py", "sets PYTHONSTARTUP"),
    # The probe reads site-packages before any sitecustomize or PYTHON* variable of the
    # image runs (-I -S): here each would hide the extra package from importlib.metadata.
    "hidden by a sitecustomize": (
        f"{PLANT_HANDMADE} && echo '{HIDE_HANDMADE}' > /usr/lib/python3.11/sitecustomize.py",
        "handmade==1.0 is installed but not in the lock"),
    "hidden by PYTHONPATH's sitecustomize": (
        f"ENV PYTHONPATH=/srv/hide\n{PLANT_HANDMADE} && mkdir -p /srv/hide && "
        f"echo '{HIDE_HANDMADE}' > /srv/hide/sitecustomize.py",
        ("sets PYTHONPATH=/srv/hide", "handmade==1.0 is installed but not in the lock")),
    "a requirement nothing installs (uv pip check)": (
        f"sed -i '/^Version: 1.17.0/a Requires-Dist: raybake-absent-dep' {SITE}/six-1.17.0.dist-info/METADATA",
        "raybake-absent-dep"),
    "system site-packages with a .pth": (
        "sed -i 's/^include-system-site-packages = false/include-system-site-packages = true/' "
        "/opt/venv/pyvenv.cfg && echo 'import os' > /usr/lib/python3/dist-packages/planted.pth",
        "pyvenv.cfg sets include-system-site-packages"),
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
    # An ENV line first goes into the image config; the rest is a script run in the image.
    config, _, script = command.partition("\n") if command.startswith("ENV ") else ("", "", command)
    (tmp_path / "break.sh").write_text(script + "\n")
    step = "\n".join(filter(None, [config, script and (
        "RUN --mount=type=bind,source=break.sh,target=/tmp/break.sh sh /tmp/break.sh")]))
    (tmp_path / "Dockerfile").write_text(f"FROM {ref}\nUSER root\n{step}\n")
    docker("buildx", "build", "--quiet", "--network", "none", "--tag", broken, str(tmp_path))
    try:
        proc = raybake("verify", broken, "-C", str(root), env=env, check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        for needle in expected if isinstance(expected, tuple) else (expected,):
            assert needle in proc.stdout, proc.stdout
        assert "FAIL" in proc.stdout
    finally:
        docker("image", "rm", broken, check=False)


@pytest.mark.registry
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


# Small wheels that reproduce, without tensorflow or a GPU, import failures the
# probe's environment causes; and one really missing library.
FIXTURE_WHEELS = {
    # Like tensorflow: on import it loads every installed filesystem plugin by path
    # (tf.load_library), so the plugin's own module registers a second time.
    "fakeflow": {"fakeflow/__init__.py": """\
import importlib.util
import pathlib


class AlreadyExistsError(Exception):
    pass


_filesystems = set()


def register_filesystem(scheme):
    if scheme in _filesystems:
        raise AlreadyExistsError(f"File system for {scheme} already registered")
    _filesystems.add(scheme)


def load_library(path):
    spec = importlib.util.spec_from_file_location(f"_fakeflow_plugin_{len(_filesystems)}", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


_gcs = importlib.util.find_spec("fakeflow_gcs")
if _gcs is not None:
    load_library(pathlib.Path(_gcs.origin).with_name("_plugin.py"))
"""},
    "fakeflow-gcs": {"fakeflow_gcs/__init__.py": "import pathlib\n\nimport fakeflow\n\n"
                                                 "fakeflow.load_library(pathlib.Path(__file__).with_name('_plugin.py'))\n",
                     "fakeflow_gcs/_plugin.py": "import fakeflow\n\nfakeflow.register_filesystem('gs')\n"},
    # twomod_ext works once twomod, which imports it, is imported first; alone it is a circular import.
    "twomod": {"twomod/__init__.py": "VALUE = 1\nfrom twomod_ext import EXT  # noqa: E402\n",
               "twomod_ext/__init__.py": "from twomod import VALUE\n\nEXT = VALUE + 1\n"},
    "gpulib": {"gpulib/__init__.py": "import ctypes\n\nctypes.CDLL('libcuda.so.1')\n"},
    "brokenlib": {"brokenlib/__init__.py": "import ctypes\n\nctypes.CDLL('libraybake-absent.so.1')\n"},
}


@pytest.mark.engine
def test_environment_caused_import_failures_are_notes_in_a_real_image(engine, tmp_path, unique_repo):
    """pynput (a real wheel) without a display, a tensorflow-like plugin registered
    twice, a module its own package imports first, a GPU driver library: notes. A
    library really missing from the image still fails the build."""
    root = tmp_path / "envcaused"
    (root / "wheels").mkdir(parents=True)
    sources = []
    for name, files in FIXTURE_WHEELS.items():
        wheel = make_wheel(root / "wheels", name, "1.0", files)
        sources.append(f'{name} = {{ path = "wheels/{wheel.name}" }}')
    deps = ", ".join(f'"{n}"' for n in ["pynput==1.6.8", *FIXTURE_WHEELS])
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "envcaused"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        f"dependencies = [{deps}]\n\n[tool.uv.sources]\n" + "\n".join(sources) + "\n")
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    subprocess.run([str(uv_bin()), "lock", "-q"], cwd=root, env=env, check=True)
    proc = raybake("build", "-C", str(root), env=env, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = proc.stderr
    failures = [line.strip() for line in report.splitlines() if line.strip().startswith("import ")]
    assert len(failures) == 1 and "libraybake-absent.so.1 is missing from the image" in failures[0], report
    notes = {line.split("note  import ", 1)[1].split(" ", 1)[0].rstrip(":")
             for line in report.splitlines() if "note  import " in line}
    assert notes == {"pynput", "fakeflow_gcs", "twomod_ext", "gpulib"}, report
    assert "no X display" in report and "works once twomod is imported" in report


def test_a_missing_shared_library_named_after_the_first_line_is_kept(tmp_path):
    """torchcodec's error starts "Could not load libtorchcodec. Likely causes:" and
    names the library lines later: the probe's child keeps that line, so the
    finding names the library."""
    import runpy
    import subprocess
    import sys
    from importlib.resources import files

    from raybake import contract
    from raybake.verify import classify_import_failure

    (tmp_path / "codec.py").write_text(
        "import ctypes\n"
        "try:\n"
        "    ctypes.CDLL('libraybake-absent.so.59')\n"
        "except OSError as exc:\n"
        "    raise RuntimeError('Could not load libcodec. Likely causes:\\n  1. FFmpeg is not installed.\\n'\n"
        "                       f'The following exceptions were raised:\\n{exc}') from None\n")
    # The probe as a module: it defines CHILD and runs nothing unless it is __main__.
    probe_script = runpy.run_path(str(files("raybake") / "templates" / "in_image" / contract.PROBE_SCRIPT))
    proc = subprocess.run([sys.executable, "-c", probe_script["CHILD"], "codec"], cwd=tmp_path, text=True,
                          capture_output=True, env={"PYTHONPATH": str(tmp_path)})
    result = json.loads(proc.stdout.rsplit("@@RAYBAKE-IMPORT@@", 1)[1])
    finding, _ = classify_import_failure("codec", result, set())
    assert "the shared library libraybake-absent.so.59 is missing from the image" in finding


@pytest.mark.parametrize(("found", "ok"), [("3.11.2", True), ("3.11.11", True), ("3.12.1", False)])
def test_the_image_python_must_have_the_minor_version_the_spec_asks_for(small, found, ok):
    """A different patch release is accepted, a different minor version is a finding."""
    from dataclasses import replace

    project, spec = small
    findings, _ = compare(project, replace(spec, python="3.11"), REQS, probe(python=found))
    assert [f.check for f in findings] == ([] if ok else ["python"])
    if not ok:
        assert f"the image has Python {found}, the spec asks for 3.11" in findings[0].message

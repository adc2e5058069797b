"""raybake-pin.json and the pre-commit hooks that keep it and uv.lock honest.

The hook tests run the real `pre-commit` against a throwaway clone of this
repository (its working tree committed), installing raybake into pre-commit's
own environment once per session."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import billion_laughs, docker, raybake

from raybake.errors import ProjectError
from raybake.pin import (
    PIN_FILE,
    Pin,
    compute_pin,
    pinned_reference,
    read_pin,
    render_pin,
    update_pin,
)
from raybake.project import load_project
from raybake.tools.uv import uv_bin

REPO = Path(__file__).resolve().parents[1]
# What the hook clone needs from this working tree (HEAD may not have it yet).
HOOK_SOURCES = ("src", "pyproject.toml", "README.md", "Dockerfile.base", ".pre-commit-hooks.yaml",
                "uv.lock")
# Proof that no daemon and no network are asked.
OFFLINE_ENV = {"DOCKER_HOST": "unix:///nonexistent", "HTTPS_PROXY": "http://127.0.0.1:9",
               "HTTP_PROXY": "http://127.0.0.1:9", "ALL_PROXY": "http://127.0.0.1:9"}


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


def tags(root: Path) -> dict[str, str]:
    """What `raybake tag --all` prints, by spec name."""
    refs = raybake("tag", "--all", "-C", str(root)).stdout.split()
    return {ref.rsplit(":", 1)[1].rsplit("-", 1)[0]: ref for ref in refs}


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.endswith(".tmp"))


# ---------------------------------------------------------------- the command


def test_pin_writes_stable_json_then_leaves_a_current_pin_untouched(copy_fixture):
    root = copy_fixture("small")
    first = raybake("pin", cwd=root, env=env(**OFFLINE_ENV), check=False)
    assert first.returncode == 0, first.stderr  # writing the pin is its job, not an error
    assert first.stderr.startswith("updated raybake-pin.json (it did not exist):")
    assert "stage it: git add raybake-pin.json" in first.stderr and "error" not in first.stderr

    path = root / PIN_FILE
    text = path.read_text()
    expected = tags(root)
    assert json.loads(text) == {"version": 2, "images": expected, "bases": {}}  # the base names its digest
    assert text == json.dumps({"bases": {}, "images": expected, "version": 2}, indent=2, sort_keys=True) + "\n"

    old = 1_000_000_000
    os.utime(path, ns=(old, old))  # a rewrite could not hide behind coarse timestamps
    again = raybake("pin", "-C", str(root), env=env(**OFFLINE_ENV), check=False)
    assert again.returncode == 0, again.stderr
    assert path.read_text() == text and path.stat().st_mtime_ns == old
    assert raybake("pin", "--check", "-C", str(root), env=env(**OFFLINE_ENV), check=False).returncode == 0
    assert leftovers(root) == []


def test_check_names_stale_entries_and_changes_nothing(copy_fixture):
    root = copy_fixture("small")
    path = root / PIN_FILE
    proc = raybake("pin", "--check", "-C", str(root), check=False)
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    assert not path.exists()

    current = tags(root)["default"]
    stale = render_pin(Pin({"default": "small:default-0000000000000000", "gone": "small:gone-1111111111111111"}, {}))
    path.write_text(stale)
    proc = raybake("pin", "--check", "-C", str(root), check=False)
    assert proc.returncode == 1, proc.stderr
    assert f"default: small:default-0000000000000000 -> {current}" in proc.stderr
    assert "gone: small:gone-1111111111111111 -> (removed: no spec has it any more)" in proc.stderr
    assert f"fix: run `raybake pin -C {root}` and commit {root / PIN_FILE}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert path.read_text() == stale


def test_a_stale_pin_is_rewritten_and_reported(copy_fixture):
    root = copy_fixture("small")
    path = root / PIN_FILE
    path.write_text(render_pin(Pin({"default": "small:default-0000000000000000"}, {})))
    proc = raybake("pin", cwd=root, check=False)
    assert proc.returncode == 0, proc.stderr
    current = tags(root)["default"]
    assert proc.stderr.startswith("updated raybake-pin.json (what decides its images changed):")
    assert f"default: small:default-0000000000000000 -> {current}" in proc.stderr
    assert "stage it: git add raybake-pin.json" in proc.stderr and "error" not in proc.stderr
    assert read_pin(root).images == {"default": current}

    # New specs: one line per spec, sorted, and the removed spec named.
    (root / "images").mkdir()
    (root / "images" / "gpu.yaml").write_text("env: {CUDA: '1'}\n")
    (root / "images" / "cpu.yaml").write_text("extras: [table]\n")
    proc = raybake("pin", "-C", str(root), check=False)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"cpu: \(not pinned\) -> small:cpu-[0-9a-f]{16}", proc.stderr)
    assert f"default: {current} -> (removed: no spec has it any more)" in proc.stderr
    assert list(json.loads(path.read_text())["images"]) == ["cpu", "gpu"]
    assert read_pin(root).images == tags(root)
    assert raybake("pin", "--check", "-C", str(root), check=False).returncode == 0


def test_a_pin_out_of_canonical_form_is_stale(copy_fixture):
    root = copy_fixture("small")
    path = root / PIN_FILE
    path.write_text(json.dumps({"version": 2, "images": tags(root), "bases": {}}))  # same entries, one line
    proc = raybake("pin", "--check", "-C", str(root), check=False)
    assert proc.returncode == 1 and "not in canonical form" in proc.stderr
    assert raybake("pin", "-C", str(root), check=False).returncode == 0
    assert path.read_text() == render_pin(Pin(tags(root), {}))


def test_an_invalid_pin_is_reported_and_regenerated(copy_fixture):
    root = copy_fixture("small")
    path = root / PIN_FILE
    path.write_text('{\n<<<<<<< HEAD\n  "images": {}\n')  # a merge conflict
    with pytest.raises(ProjectError, match="not valid JSON") as exc:
        read_pin(root)
    assert "raybake pin" in exc.value.fix
    proc = raybake("pin", "--check", "-C", str(root), check=False)
    assert proc.returncode == 1 and "not a valid pin" in proc.stderr
    proc = raybake("pin", "-C", str(root), check=False)
    assert proc.returncode == 0 and "updated" in proc.stderr and "it was not a valid pin" in proc.stderr
    assert read_pin(root).images == tags(root)


def test_an_out_of_date_lock_is_an_error_and_the_pin_is_untouched(copy_fixture):
    root = copy_fixture("small")
    raybake("pin", "-C", str(root), check=False)
    before = (root / PIN_FILE).read_bytes()
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("six==1.17.0", "six==1.17.0\", \"tabulate==0.9.0"))
    for args in (("pin",), ("pin", "--check"), ("pin", "--lock-only")):
        proc = raybake(*args, "-C", str(root), env=env(**OFFLINE_ENV), check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "out of date with pyproject.toml" in proc.stderr and "fix: run `uv lock`" in proc.stderr
    assert (root / PIN_FILE).read_bytes() == before
    assert raybake("pin", "--lock-only", "--check", "-C", str(root), check=False).returncode == 2


def test_concurrent_pins_leave_one_complete_file(copy_fixture):
    root = copy_fixture("small")
    exe = Path(sys.executable).parent / "raybake"
    path = root / PIN_FILE
    expected = render_pin(Pin(tags(root), {}))
    for start in (None, render_pin(Pin({"default": "small:default-0000000000000000"}, {}))):
        if start is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(start)
        procs = [subprocess.Popen([str(exe), "pin", "-C", str(root)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
        codes = [p.wait(timeout=120) for p in procs]
        errors = [p.stderr.read() for p in procs]
        assert codes == [0, 0, 0, 0], errors
        # Exactly one rewrote it; the others found it current.
        assert sorted(e.startswith("updated ") for e in errors) == [False, False, False, True], errors
        assert path.read_text() == expected
        assert leftovers(root) == []


def test_exit_non_zero_on_change_fails_a_run_that_wrote_the_pin(copy_fixture):
    root = copy_fixture("small")
    flag = "--exit-non-zero-on-change"
    proc = raybake("pin", flag, cwd=root, env=env(**OFFLINE_ENV), check=False)
    assert proc.returncode == 1 and "raybake-pin.json did not exist; rewrote it" in proc.stderr
    assert "git add raybake-pin.json" in proc.stderr
    assert read_pin(root).images == tags(root)
    assert raybake("pin", flag, cwd=root, env=env(**OFFLINE_ENV), check=False).returncode == 0
    (root / PIN_FILE).write_text(render_pin(Pin({"default": "small:default-0000000000000000"}, {})))
    proc = raybake("pin", flag, cwd=root, check=False)
    assert proc.returncode == 1 and "stale: what decides its images changed; rewrote it" in proc.stderr
    assert read_pin(root).images == tags(root)
    assert raybake("pin", flag, "--check", cwd=root, check=False).returncode == 2  # a usage error


def test_a_yaml_bomb_in_a_spec_stops_pin_at_once(copy_fixture):
    # The pre-commit hooks run `raybake pin`: nested aliases must not expand there.
    root = copy_fixture("small")
    (root / "images").mkdir()
    (root / "images" / "bomb.yaml").write_text(billion_laughs(9))
    for args in (("pin",), ("pin", "--check"), ("pin", "--exit-non-zero-on-change")):
        proc = raybake(*args, "-C", str(root), env=env(**OFFLINE_ENV), check=False, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert "images/bomb.yaml:2: YAML anchor &a" in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr) < 600
    assert not (root / PIN_FILE).exists()


# ---------------------------------------------------------------- the library


def test_library_api(copy_fixture):
    root = copy_fixture("small")
    assert read_pin(root) is None and pinned_reference(root, "default") is None
    project = load_project(root)
    images = compute_pin(project).images
    assert images == tags(root)
    assert update_pin(project).rewritten is True
    mtime = (root / PIN_FILE).stat().st_mtime_ns
    assert update_pin(project).rewritten is False and (root / PIN_FILE).stat().st_mtime_ns == mtime
    assert read_pin(root).images == images
    assert pinned_reference(root, "default") == images["default"]
    assert pinned_reference(root, "nope") is None
    (root / PIN_FILE).write_text(json.dumps({"version": 3, "images": {}}))
    with pytest.raises(ProjectError, match="version 3"):
        pinned_reference(root, "default")


@pytest.mark.engine
def test_require_present_asks_the_local_store(copy_fixture, engine, unique_repo):
    root = copy_fixture("small")
    run_env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    raybake("pin", "-C", str(root), env=run_env, check=False)
    (reference,) = read_pin(root).images.values()
    assert reference.startswith(f"{unique_repo}:default-")

    proc = raybake("pin", "--require-present", "-C", str(root), env=run_env, check=False)
    assert proc.returncode == 1, proc.stderr
    assert f"default: {reference} is not in the local image store" in proc.stderr
    assert "raybake build --all" in proc.stderr

    docker("tag", engine.base_image, reference)  # a foreign image under the pinned tag is not the pin's
    try:
        proc = raybake("pin", "--require-present", "-C", str(root), env=run_env, check=False)
        assert proc.returncode == 1 and "is not raybake's build of this lock and spec" in proc.stderr
    finally:
        docker("rmi", reference, check=False)
    raybake("build", "-C", str(root), env=run_env)
    assert raybake("pin", "--require-present", "-C", str(root), env=run_env).returncode == 0


@pytest.mark.registry
@pytest.mark.engine
def test_require_present_asks_the_registry_and_an_unreachable_one_is_an_error(copy_fixture, engine,
                                                                               unique_repo):
    root = copy_fixture("small")
    run_env = engine.env(RAYBAKE_REPOSITORY=f"{engine.registry}/{unique_repo}")
    raybake("pin", "-C", str(root), env=run_env, check=False)
    (reference,) = read_pin(root).images.values()
    proc = raybake("pin", "--require-present", "-C", str(root), env=run_env, check=False)
    assert proc.returncode == 1, proc.stderr
    assert f"default: {reference} is not in its registry" in proc.stderr

    run_env = engine.env(RAYBAKE_REPOSITORY=f"127.0.0.1:9/{unique_repo}")  # nothing listens there
    raybake("pin", "-C", str(root), env=run_env, check=False)
    proc = raybake("pin", "--require-present", "-C", str(root), env=run_env, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "cannot tell whether" in proc.stderr and "did not answer" in proc.stderr


@pytest.mark.registry
@pytest.mark.engine
def test_require_present_with_a_foreign_image_in_the_registry_is_an_error_naming_both_hashes(
        copy_fixture, engine, unique_repo, tmp_path):
    """An image under the pinned tag that raybake did not build for this pin is never "present"."""
    from test_build import foreign_image
    from test_errors import assert_clean_error

    root = copy_fixture("small")
    run_env = engine.env(RAYBAKE_REPOSITORY=f"{engine.registry}/{unique_repo}")
    raybake("pin", "-C", str(root), env=run_env, check=False)
    (reference,) = read_pin(root).images.values()
    other = "0" * 64
    foreign_image(reference, tmp_path, other)
    try:
        docker("push", "--quiet", reference)
    finally:
        docker("image", "rm", reference)
    proc = raybake("pin", "--require-present", "-C", str(root), env=run_env, check=False)
    assert_clean_error(proc, reference, f"label is {other}", reference.rsplit("-", 1)[1])


# ---------------------------------------------------------------- pre-commit


def test_hook_manifest():
    hooks = {h["id"]: h for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"raybake-lock", "raybake-pin"}
    assert hooks["raybake-lock"]["entry"] == "raybake pin --lock-only"
    # pre-commit notices a rewritten pin, not a new one: the flag fails the hook for both.
    assert hooks["raybake-pin"]["entry"] == "raybake pin --exit-non-zero-on-change"
    # The uv version is hashed into every tag: the hook's must be the one raybake locks.
    locked_uv = re.search(r'\[\[package\]\]\nname = "uv"\nversion = "([^"]+)"',
                          (REPO / "uv.lock").read_text()).group(1)
    for hook in hooks.values():
        assert hook["language"] == "python" and hook["pass_filenames"] is False
        assert hook["additional_dependencies"] == [f"uv=={locked_uv}"]
        files = re.compile(hook["files"])
        for path in ("pyproject.toml", "uv.lock", "raybake-pin.json", "images/cpu.yaml",
                     "libs/a/pyproject.toml", ".python-version", ".pre-commit-config.yaml"):
            assert files.search(path), path
        for path in ("src/small/__init__.py", "README.md", "images/notes.txt"):
            assert not files.search(path), path


def git(*args: str, cwd: Path, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=300, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def git_init(path: Path) -> None:
    git("init", "-q", "-b", "main", cwd=path)
    git("config", "user.name", "raybake tests", cwd=path)
    git("config", "user.email", "tests@raybake.invalid", cwd=path)
    git("config", "commit.gpgsign", "false", cwd=path)


@pytest.fixture(scope="session")
def hook_repo(tmp_path_factory) -> tuple[Path, str, dict[str, str]]:
    """A clone of this repository with its working tree committed, and an
    environment whose PRE_COMMIT_HOME holds the hooks' installed environment."""
    base = tmp_path_factory.mktemp("hooks")
    clone = base / "raybake-src"
    git("clone", "-q", str(REPO), str(clone), cwd=base)
    for name in HOOK_SOURCES:
        src, dest = REPO / name, clone / name
        if src.is_dir():
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest)
    git("config", "user.name", "raybake tests", cwd=clone)
    git("config", "user.email", "tests@raybake.invalid", cwd=clone)
    git("add", "-A", *HOOK_SOURCES, cwd=clone)
    git("commit", "-q", "--no-verify", "--allow-empty", "-m", "working tree", cwd=clone)
    sha = git("rev-parse", "HEAD", cwd=clone).stdout.strip()
    hook_env = env(PRE_COMMIT_HOME=str(base / "pre-commit-home"))

    # Build the hooks' environment once (pip installs raybake from the clone).
    warm = base / "warm"
    warm.mkdir()
    git_init(warm)
    write_config(warm, clone, sha)
    proc = subprocess.run([str(Path(sys.executable).parent / "pre-commit"), "install-hooks"], cwd=warm,
                          env=hook_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return clone, sha, hook_env


def write_config(root: Path, clone: Path, sha: str) -> None:
    (root / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {clone}\n    rev: {sha}\n    hooks:\n"
        "      - id: raybake-lock\n      - id: raybake-pin\n")


def hooked_project(copy_fixture, hook_repo) -> tuple[Path, dict[str, str]]:
    """The small fixture in a git repository with the hooks installed."""
    clone, sha, hook_env = hook_repo
    root = copy_fixture("small")
    git_init(root)
    write_config(root, clone, sha)
    subprocess.run([str(Path(sys.executable).parent / "pre-commit"), "install"], cwd=root, env=hook_env,
                   check=True, capture_output=True)
    return root, hook_env


@pytest.fixture
def committed_project(copy_fixture, hook_repo) -> tuple[Path, dict[str, str]]:
    """The small fixture in a git repository with the hooks installed, its pin
    made by this environment's `raybake pin`, all committed through the hooks."""
    root, hook_env = hooked_project(copy_fixture, hook_repo)
    raybake("pin", "-C", str(root), check=False)
    git("add", "-A", cwd=root)
    proc = commit(root, hook_env, "initial")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"raybake-pin\.json names the images.*Passed", proc.stdout + proc.stderr)
    return root, hook_env


def commit(root: Path, hook_env: dict[str, str], message: str) -> subprocess.CompletedProcess[str]:
    """git commit through the hooks, with no Docker daemon and no network to reach."""
    return git("commit", "-m", message, cwd=root, check=False, env={**hook_env, **OFFLINE_ENV})


def test_hooks_skip_a_source_only_commit(committed_project):
    root, hook_env = committed_project
    pin = (root / PIN_FILE).read_bytes()
    init = root / "src" / "small" / "__init__.py"
    init.write_text(init.read_text() + "\n# a source edit\n")
    git("add", "-A", cwd=root)
    proc = commit(root, hook_env, "source only")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Skipped" in out and "Failed" not in out
    assert (root / PIN_FILE).read_bytes() == pin
    assert git("status", "--porcelain", cwd=root).stdout == ""


def test_hooks_stop_a_lock_change_until_the_rewritten_pin_is_staged(committed_project):
    root, hook_env = committed_project
    old = read_pin(root).images["default"]
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("six==1.17.0", "six==1.16.0"))
    subprocess.run([str(uv_bin()), "lock", "--quiet"], cwd=root, check=True, timeout=300)
    git("add", "pyproject.toml", "uv.lock", cwd=root)

    proc = commit(root, hook_env, "six 1.16")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    new = tags(root)["default"]
    assert new != old and read_pin(root).images == {"default": new}
    assert f"default: {old} -> {new}" in out and "git add raybake-pin.json" in out
    assert git("rev-list", "--count", "HEAD", cwd=root).stdout.strip() == "1"  # nothing committed

    git("add", PIN_FILE, cwd=root)
    proc = commit(root, hook_env, "six 1.16")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert git("status", "--porcelain", cwd=root).stdout == ""
    assert json.loads(git("show", f"HEAD:{PIN_FILE}", cwd=root).stdout)["images"] == {"default": new}


def test_hooks_stop_a_pyproject_edit_without_uv_lock(committed_project):
    root, hook_env = committed_project
    pin = (root / PIN_FILE).read_bytes()
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"six==1.17.0"', '"six==1.17.0", "tabulate==0.9.0"'))
    git("add", "pyproject.toml", cwd=root)
    proc = commit(root, hook_env, "forgot uv lock")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "uv lock" in out and "out of date with pyproject.toml" in out
    assert (root / PIN_FILE).read_bytes() == pin
    assert git("rev-list", "--count", "HEAD", cwd=root).stdout.strip() == "1"


def test_hooks_stop_the_commit_that_creates_the_pin(copy_fixture, hook_repo):
    # pre-commit does not notice a new untracked file: the hook's own exit code must.
    root, hook_env = hooked_project(copy_fixture, hook_repo)
    git("add", "-A", cwd=root)
    proc = commit(root, hook_env, "initial, no pin yet")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "raybake-pin.json did not exist; rewrote it" in out and "git add raybake-pin.json" in out
    assert read_pin(root).images == tags(root)
    assert git("rev-list", "--all", "--count", cwd=root).stdout.strip() == "0"

    git("add", PIN_FILE, cwd=root)
    proc = commit(root, hook_env, "initial, with the pin")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_changed_pin_says_what_changed_it(copy_fixture):
    """An override variable set here, the uv put into the image, the lock: each named
    as what changed the entry, never "out of date with the lock" for all of them."""
    from raybake.contract import DEFAULT_UV_VERSION

    root = copy_fixture("small")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAYBAKE_") or k == "RAYBAKE_CACHE_DIR"}
    raybake("pin", "-C", str(root), env=clean)
    pinned = (root / PIN_FILE).read_text()
    shell = raybake("pin", "-C", str(root), env={**clean, "RAYBAKE_BASE_IMAGE": "python:3.12-slim"}, check=False)
    assert "differs only by RAYBAKE_* variables" in shell.stderr, shell.stderr
    assert "changed by: only RAYBAKE_BASE_IMAGE=python:3.12-slim set in this environment" in shell.stderr
    assert "unset them and run `raybake pin` again" in shell.stderr
    (root / PIN_FILE).write_text(pinned)
    check = raybake("pin", "--check", "-C", str(root), env={**clean, "RAYBAKE_REPOSITORY": "other/small"},
                    check=False)
    assert check.returncode == 1 and "changed by: only RAYBAKE_REPOSITORY=other/small" in check.stderr
    (root / PIN_FILE).write_text(pinned)
    with (root / "pyproject.toml").open("a") as f:
        f.write('\n[tool.raybake]\nuv_version = "0.13.8"\n')
    uv = raybake("pin", "-C", str(root), env=clean)
    assert f"changed by: the uv put into the image ({DEFAULT_UV_VERSION} -> 0.13.8)" in uv.stderr, uv.stderr
    with (root / "uv.lock").open("a") as f:
        f.write("\n")
    lock = raybake("pin", "--check", "-C", str(root), env=clean, check=False)
    assert lock.returncode == 1 and "changed by: uv.lock\n" in lock.stderr, lock.stderr
    assert "RAYBAKE_" not in lock.stderr


def no_interpreter_for_requires_python(root: Path) -> None:
    """requires-python that no interpreter on this machine satisfies, in pyproject.toml and uv.lock alike."""
    for name in ("pyproject.toml", "uv.lock"):
        path = root / name
        assert 'requires-python = ">=3.11"' in path.read_text()
        path.write_text(path.read_text().replace('requires-python = ">=3.11"', 'requires-python = ">=3.30"'))


NO_INTERPRETER = "uv found no Python on this machine that satisfies requires-python >=3.30"


@pytest.mark.parametrize("flags", [[], ["--lock-only"], ["--exit-non-zero-on-change"], ["--check"]])
def test_pin_with_no_interpreter_for_requires_python_says_which_to_install(copy_fixture, flags):
    from test_errors import assert_clean_error

    root = copy_fixture("small")
    no_interpreter_for_requires_python(root)
    proc = raybake("pin", *flags, "-C", str(root), env=env(**OFFLINE_ENV), check=False)
    assert_clean_error(proc, NO_INTERPRETER, "uv python install 3.30")
    assert not (root / PIN_FILE).exists()


def test_hooks_with_no_interpreter_for_requires_python_stop_the_commit_saying_which(copy_fixture, hook_repo):
    root, hook_env = hooked_project(copy_fixture, hook_repo)
    no_interpreter_for_requires_python(root)
    git("add", "-A", cwd=root)
    proc = commit(root, hook_env, "a Python nobody has")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert NO_INTERPRETER in out and "uv python install 3.30" in out and "Traceback" not in out
    assert git("rev-list", "--all", "--count", cwd=root).stdout.strip() == "0"

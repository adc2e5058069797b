"""Bad input: one clear paragraph naming the problem and the fix, a non-zero
exit, no traceback, nothing tagged or pushed. The README's failure table
lists the same messages."""

import os
import re
import subprocess
from pathlib import Path

import pytest
from helpers import docker, raybake

from raybake.errors import EngineError
from raybake.tools.docker import _mapped


def assert_clean_error(proc, *needles, code=2):
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    # Build progress may come first; the error paragraph closes the output.
    start = 0 if proc.stderr.startswith("error: ") else proc.stderr.find("\nerror: ") + 1
    paragraph = proc.stderr[start:]
    assert paragraph.startswith("error: ") and "\nfix: " in paragraph, proc.stderr
    for needle in needles:
        assert needle in paragraph, proc.stderr


def test_no_pyproject(tmp_path):
    assert_clean_error(raybake("build", "-C", str(tmp_path), check=False), "no pyproject.toml", "uv init")


def test_no_lock(copy_fixture):
    root = copy_fixture("small")
    (root / "uv.lock").unlink()
    assert_clean_error(raybake("build", "-C", str(root), check=False), "uv.lock does not exist", "uv lock")


def test_lock_out_of_date(copy_fixture):
    root = copy_fixture("small")
    text = (root / "pyproject.toml").read_text().replace("six==1.17.0", "six==1.16.0")
    (root / "pyproject.toml").write_text(text)
    assert_clean_error(raybake("build", "-C", str(root), check=False), "out of date", "run `uv lock`")


def test_lock_not_valid_toml(copy_fixture):
    root = copy_fixture("small")
    with (root / "uv.lock").open("a") as f:
        f.write("[[package]\n")
    assert_clean_error(raybake("build", "-C", str(root), check=False), "not a valid lock file", "merge conflicts")


def conflicted_lock(root: Path) -> None:
    """Leave uv.lock as a merge of two branches that changed one line leaves it: git's own markers."""
    lock = root / "uv.lock"
    ours, base, theirs = (root / ".ours", root / ".base", root / ".theirs")
    base.write_bytes(lock.read_bytes())
    ours.write_text(lock.read_text().replace('version = "1.17.0"', 'version = "1.16.0"', 1))
    theirs.write_text(lock.read_text().replace('version = "1.17.0"', 'version = "1.15.0"', 1))
    subprocess.run(["git", "merge-file", "-L", "HEAD", "-L", "base", "-L", "feature", str(ours), str(base),
                    str(theirs)], check=False)
    lock.write_bytes(ours.read_bytes())
    for f in (ours, base, theirs):
        f.unlink()
    assert "<<<<<<< HEAD" in lock.read_text()


@pytest.mark.parametrize("command", [
    ["tag"], ["build"], ["dockerfile"], ["pin"], ["pin", "--lock-only"], ["pin", "--check"], ["stage"],
    ["job-config", "--entrypoint", "python main.py"], ["submit", "--", "python", "main.py"],
    ["py-executable"], ["verify", "raybake-test/absent:x"],
])
def test_a_lock_with_merge_conflict_markers_is_reported_first_by_every_command(copy_fixture, tmp_path, command):
    root = copy_fixture("small")
    conflicted_lock(root)
    # No daemon: the lock is reported before anything asks the engine.
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no.sock"}
    proc = raybake(command[0], "-C", str(root), *command[1:], env=env, check=False)
    assert_clean_error(proc, "uv.lock holds merge-conflict markers (line", "git checkout --theirs uv.lock",
                       "uv lock")
    assert not (root / "raybake-pin.json").exists()


def test_lock_newer_than_the_image_uv(copy_fixture):
    root = copy_fixture("small")
    text = (root / "uv.lock").read_text().replace("version = 1\n", "version = 2\n", 1)
    (root / "uv.lock").write_text(text)
    assert_clean_error(raybake("build", "-C", str(root), check=False), "lock format version 2",
                       "the uv in the image", "set uv_version")


@pytest.mark.parametrize(("yaml_text", "needle"), [
    ("colour: red\n", "images/default.yaml:1: unknown field 'colour'"),
    ("groups: nope\n", "images/default.yaml:1: field 'groups' must be a list of strings"),
    ("groups: [a\n", "invalid YAML"),
])
def test_spec_errors(copy_fixture, yaml_text, needle):
    root = copy_fixture("small")
    (root / "images").mkdir()
    (root / "images/default.yaml").write_text(yaml_text)
    assert_clean_error(raybake("build", "-C", str(root), check=False), needle)


def test_daemon_not_reachable(copy_fixture, tmp_path):
    root = copy_fixture("small")
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "DOCKER_HOST": f"unix://{tmp_path}/no.sock",
           "HOME": str(tmp_path)}
    assert_clean_error(raybake("build", "-C", str(root), env=env, check=False),
                       "Docker daemon is not reachable", "systemctl start docker")


def test_buildx_missing_is_mapped():
    # The plugin cannot be hidden from a real engine without root changes; this
    # maps the docker CLI's own words for it.
    from python_on_whales.exceptions import DockerException

    exc = DockerException(["docker", "buildx", "build"], 1, stderr=b"docker: 'buildx' is not a docker command.\n")
    mapped = _mapped(exc)
    assert isinstance(mapped, EngineError) and "apt-get install docker-buildx" in mapped.fix


@pytest.mark.engine
def test_base_image_absent_and_not_pullable(engine, copy_fixture, unique_repo):
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo, RAYBAKE_BASE_IMAGE="127.0.0.1:1/absent/base:1")
    proc = raybake("build", "-C", str(root), env=env, check=False)
    assert_clean_error(proc, "127.0.0.1:1/absent/base:1", "docker load", "RAYBAKE_BASE_IMAGE")


@pytest.mark.engine
def test_index_unreachable_surfaces_uv_message(engine, copy_fixture, unique_repo):
    root = copy_fixture("small")
    (root / "images").mkdir()
    # No network in the build and no uv cache: uv must download and cannot (at once: no retries).
    (root / "images/default.yaml").write_text('network: none\nenv:\n  UV_NO_CACHE: "1"\n  UV_HTTP_RETRIES: "0"\n')
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    env.pop("RAYBAKE_NETWORK")
    proc = raybake("build", "-C", str(root), env=env, check=False)
    assert_clean_error(proc, "Failed to download `six==1.17.0`", "package index is unreachable")
    ref = raybake("tag", "-C", str(root), env=env).stdout.strip()
    assert docker("image", "inspect", ref, check=False).returncode != 0


@pytest.mark.registry
@pytest.mark.engine
@pytest.mark.parametrize("push", [[], ["--push"]])
def test_registry_unreachable_is_an_error_not_assumed_absent_or_present(engine, copy_fixture, push):
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_REPOSITORY="127.0.0.1:1/team/small")
    proc = raybake("build", *push, "-C", str(root), env=env, check=False)
    assert_clean_error(proc, "cannot tell whether 127.0.0.1:1/team/small:", "the registry did not answer (",
                       "RAYBAKE_REGISTRY_TIMEOUT")
    assert "building" not in proc.stderr


# A bcrypt hash of a throwaway password: the registry demands credentials, none are given.
HTPASSWD = "user:$2b$12$.wS8WYdN6AOXGfv6QNTBtuEk1hKUCjPZ1dKcsh9w7pN54gK.N/Nru\n"


@pytest.fixture
def auth_registry(tmp_path):
    """A real registry on 127.0.0.1 that refuses anonymous access."""
    import subprocess
    import time
    import urllib.error
    import urllib.request

    from raybake.localcluster import free_port

    port = free_port()
    (tmp_path / "htpasswd").write_text(HTPASSWD)
    (tmp_path / "config.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/data\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: raybake-test\n    path: {tmp_path}/htpasswd\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(tmp_path / "config.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            except urllib.error.HTTPError:
                break  # 401: up, and refusing
            except OSError:
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.registry
@pytest.mark.engine
def test_registry_refusing_credentials(engine, copy_fixture, auth_registry):
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_REPOSITORY=f"{auth_registry}/team/small")
    assert_clean_error(raybake("build", "--push", "-C", str(root), env=env, check=False),
                       "refused access", "docker login")


# ---- no traceback for any input (issue 14.9) ----------------------------------

def dead_daemon_env(tmp_path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin:/usr/local/bin", "DOCKER_HOST": f"unix://{tmp_path}/no.sock",
            "HOME": str(tmp_path), "RAYBAKE_CACHE_DIR": str(tmp_path / "cache")}


@pytest.mark.parametrize(("where", "content", "command", "needle"), [
    ("images/default.yaml", b'python: "3.11\xff"\n', ("tag",), "not UTF-8"),
    (".python-version", b"\xff3.11\n", ("tag",), "not UTF-8"),
    ("images/a.yml", b"dev: true\n", ("tag", "--all"), "both define the spec 'a'"),
    ("images/gpu.yaml", b"groups: [trian]\n", ("tag", "gpu"), "groups 'trian' not defined in [dependency-groups]"),
    ("images/gpu.yaml", b"extras: [s3]\n", ("pin",), "extras 's3' not defined in [project.optional-dependencies]"),
    ("images/" + "x" * 101 + ".yaml", b"", ("tag", "--all"), "at most 100"),
])
def test_bad_project_files(copy_fixture, where, content, command, needle):
    root = copy_fixture("small")
    (root / "images").mkdir()
    if where == "images/a.yml":
        (root / "images/a.yaml").write_text("dev: false\n")
    (root / where).write_bytes(content)
    assert_clean_error(raybake(*command, "-C", str(root), check=False), needle)
    assert not (root / "raybake-pin.json").exists()


def test_workspace_member_pattern_outside_the_project(copy_fixture):
    root = copy_fixture("workspace")
    sibling = root.parent / "sibling"
    sibling.mkdir()
    (sibling / "pyproject.toml").write_text('[project]\nname = "sibling"\nversion = "0"\n')
    text = (root / "pyproject.toml").read_text()
    (root / "pyproject.toml").write_text(text.replace('members = ["libs/*"]', 'members = ["libs/*", "../*"]'))
    assert 'members = ["libs/*", "../*"]' in (root / "pyproject.toml").read_text()
    assert_clean_error(raybake("tag", "-C", str(root), check=False), "lies outside the project")


def test_repository_over_dockers_limit_is_a_name_error(copy_fixture, tmp_path):
    root = copy_fixture("small")
    env = {**dead_daemon_env(tmp_path), "RAYBAKE_REPOSITORY": "team/" + "a" * 300}
    proc = raybake("build", "-C", str(root), env=env, check=False)
    assert_clean_error(proc, "Docker allows at most 255", "RAYBAKE_REPOSITORY")
    assert "daemon" not in proc.stderr


@pytest.mark.engine
def test_an_over_long_reference_to_verify_is_a_name_error(engine, copy_fixture):
    proc = raybake("verify", "team/" + "a" * 300 + ":x", "-C", str(copy_fixture("small")), env=engine.env(),
                   check=False)
    assert_clean_error(proc, "Docker refuses the image name", "at most 255")
    assert "start the Docker daemon" not in proc.stderr


def test_verify_without_a_daemon_says_so(copy_fixture, tmp_path):
    proc = raybake("verify", "small:default-0123456789abcdef", "-C", str(copy_fixture("small")),
                   env=dead_daemon_env(tmp_path), check=False)
    assert_clean_error(proc, "Docker daemon is not reachable", "systemctl start docker")


def test_lock_timeout_that_is_not_a_number(copy_fixture):
    root = copy_fixture("small")
    env = {**os.environ, "RAYBAKE_LOCK_TIMEOUT": "abc"}
    assert_clean_error(raybake("pin", "-C", str(root), env=env, check=False),
                       "RAYBAKE_LOCK_TIMEOUT='abc' is not a number of seconds", "positive number")


@pytest.mark.parametrize("entrypoint", ["", "  ", 'python "main.py'])
def test_job_config_with_an_empty_or_broken_entrypoint(copy_fixture, entrypoint):
    proc = raybake("job-config", "--entrypoint", entrypoint, "-C", str(copy_fixture("small")), check=False)
    assert_clean_error(proc, "--entrypoint")


def test_an_unknown_pin_version_is_an_error_not_rewritten(copy_fixture):
    root = copy_fixture("small")
    for version in ("3", '"one"'):
        text = f'{{"images": {{}}, "version": {version}}}\n'
        (root / "raybake-pin.json").write_text(text)
        assert_clean_error(raybake("pin", "-C", str(root), check=False), "pin format version")
        assert (root / "raybake-pin.json").read_text() == text


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nobody can write to, root included (a read-only mount when root)."""
    path = tmp_path / "read-only"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "raybake-test-ro", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.mark.engine
def test_a_read_only_cache_dir_breaks_nothing(engine, copy_fixture, unique_repo, read_only_dir, tmp_path):
    """The whole build path (locks, scratch contexts) works with a cache directory
    it cannot write: a private directory under TMPDIR (here the test's own) stands in."""
    root = copy_fixture("small")
    own_tmp = tmp_path / "tmp"
    own_tmp.mkdir()
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo, TMPDIR=str(own_tmp))
    for cache in (read_only_dir, read_only_dir / "raybake"):
        ro = {**env, "RAYBAKE_CACHE_DIR": str(cache)}
        again = raybake("build", "--force", "-C", str(root), env=ro)
        assert " built " in again.stdout and "Traceback" not in again.stderr
        assert f"cannot use {cache} as raybake's cache" in again.stderr, again.stderr
        assert (own_tmp / f"raybake-{os.getuid()}").is_dir()
        pinned = raybake("pin", "-C", str(root), env=ro, check=False)
        assert pinned.returncode == 0 and "Traceback" not in pinned.stderr, pinned.stderr
        assert (root / "raybake-pin.json").is_file()


@pytest.mark.parametrize("logs", ["cache", "temp"])
def test_an_unexpected_exception_exits_3_with_one_line_and_a_log(copy_fixture, monkeypatch, capsys, tmp_path, logs):
    """The log goes to raybake's cache, else (no logs directory can be made there) to the temp directory."""
    import tempfile

    import raybake.commands.tag as tag_command
    from raybake.cli import main

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(tag_command, "identities_for", broken)
    monkeypatch.setenv("RAYBAKE_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    if logs == "temp":
        (tmp_path / "cache").mkdir()
        (tmp_path / "cache" / "logs").write_text("a file where the logs directory would be\n")
    with pytest.raises(SystemExit) as exited:
        main(["tag", "-C", str(copy_fixture("small"))])
    assert exited.value.code == 3  # never 1: a hook must not read a crash as findings
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "RuntimeError: boom" in err and "Traceback" not in err
    log = Path(re.search(r"the traceback is in (\S+)", err).group(1))
    assert log.parent == (tmp_path / "cache" / "logs" if logs == "cache" else tmp_path / "tmp")
    assert "Traceback" in log.read_text() and "RuntimeError: boom" in log.read_text()

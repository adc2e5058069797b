"""Bad input: one clear paragraph naming the problem and the fix, a non-zero
exit, no traceback, nothing tagged or pushed. The README's failure table
lists the same messages."""

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
        f.write("<<<<<<< HEAD\n")
    assert_clean_error(raybake("build", "-C", str(root), check=False), "not a valid lock file", "merge conflicts")


def test_lock_newer_than_the_image_uv(copy_fixture):
    root = copy_fixture("small")
    text = (root / "uv.lock").read_text().replace("version = 1\n", "version = 2\n", 1)
    (root / "uv.lock").write_text(text)
    assert_clean_error(raybake("build", "-C", str(root), check=False), "lock format version 2",
                       "the uv in the image", "upgrade raybake's uv")


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
                       "Docker daemon is not reachable", "buildkit/engine-up")


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
    # No network in the build and no uv cache: uv must download and cannot.
    (root / "images/default.yaml").write_text('network: none\nenv:\n  UV_NO_CACHE: "1"\n')
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    env.pop("RAYBAKE_NETWORK")
    proc = raybake("build", "-C", str(root), env=env, check=False)
    assert_clean_error(proc, "Failed to download `six==1.17.0`", "package index is unreachable")
    ref = raybake("tag", "-C", str(root), env=env).stdout.strip()
    assert docker("image", "inspect", ref, check=False).returncode != 0


@pytest.mark.engine
def test_registry_unreachable(engine, copy_fixture):
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_REPOSITORY="127.0.0.1:1/team/small")
    assert_clean_error(raybake("build", "--push", "-C", str(root), env=env, check=False),
                       "cannot tell whether", "registry")


# A bcrypt hash of a throwaway password: the registry demands credentials, none are given.
HTPASSWD = "user:$2b$12$.wS8WYdN6AOXGfv6QNTBtuEk1hKUCjPZ1dKcsh9w7pN54gK.N/Nru\n"


@pytest.fixture
def auth_registry(tmp_path):
    """A real registry on 127.0.0.1 that refuses anonymous access."""
    import socket
    import subprocess
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
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


@pytest.mark.engine
def test_registry_refusing_credentials(engine, copy_fixture, auth_registry):
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_REPOSITORY=f"{auth_registry}/team/small")
    assert_clean_error(raybake("build", "--push", "-C", str(root), env=env, check=False),
                       "refused access", "docker login")

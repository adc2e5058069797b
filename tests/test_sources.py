"""The lock's sources for a spec, checked before building: loopback sources the
build cannot reach, indexes the project no longer declares, packages with no
wheel for the image, index_secrets that are not set."""

import os

import pytest
from helpers import raybake
from test_errors import assert_clean_error

from raybake.errors import ProjectError
from raybake.lockfile import parse_lock
from raybake.plan import identify, plan_build
from raybake.planner import build_warnings, spec_requirements
from raybake.project import load_project
from raybake.sources import check_reachable
from raybake.spec import load_specs


def project_and_spec(root, spec_yaml=None):
    if spec_yaml:
        (root / "images").mkdir(exist_ok=True)
        (root / "images/default.yaml").write_text(spec_yaml)
    project = load_project(root)
    (spec,) = load_specs(project, {})
    return project, spec


def warnings_for(root, spec_yaml=None, environ=None):
    """build_warnings of the spec's plan with the base image's Python 3.11.2 (no daemon)."""
    project, spec = project_and_spec(root, spec_yaml)
    identity = identify(project, spec, base_digest=None, template_digest="0" * 64)
    recipe = plan_build(project, identity, requirements=spec_requirements(project, spec),
                        lock=parse_lock(project.lock_bytes), python="3.11.2")
    return build_warnings(project, recipe, environ or {})


def relocked_from(root, index):
    """The lock as `uv lock` writes it against another index (a local mirror, an old index)."""
    lock = root / "uv.lock"
    lock.write_text(lock.read_text().replace('registry = "https://pypi.org/simple"', f'registry = "{index}"')
                    .replace("https://files.pythonhosted.org/packages", f"{index.removesuffix('/simple')}/packages"))


@pytest.mark.parametrize("index", ["http://localhost:8080/simple", "http://127.0.0.1:3141/root/pypi/+simple"])
def test_a_source_on_loopback_is_refused_before_building(copy_fixture, tmp_path, index):
    """uv lock --check passes (the project's files did not change); the build could
    not reach it. The recipe (`raybake build` makes it before building, `raybake
    dockerfile` prints it) refuses it without asking the engine."""
    root = copy_fixture("small")
    relocked_from(root, index)
    raybake("pin", "--lock-only", "-C", str(root))
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no.sock"}
    proc = raybake("dockerfile", "-C", str(root), env=env, check=False)
    assert_clean_error(proc, "uv.lock fetches six", "from this machine's loopback",
                       "uv lock --upgrade-package six", "network: host")


def test_a_source_on_loopback_is_fine_on_the_hosts_network(copy_fixture):
    root = copy_fixture("small")
    relocked_from(root, "http://localhost:8080/simple")
    project, spec = project_and_spec(root, "network: host\n")
    check_reachable(spec, parse_lock(project.lock_bytes), {"six"})
    project, spec = project_and_spec(root, "network: default\n")
    with pytest.raises(ProjectError, match="loopback"):
        check_reachable(spec, parse_lock(project.lock_bytes), {"six"})


def test_an_index_the_project_no_longer_declares_is_a_warning(copy_fixture):
    root = copy_fixture("small")
    relocked_from(root, "https://mirror.example.com/simple")
    (warning,) = warnings_for(root)
    assert "six (https://mirror.example.com/simple)" in warning and "no longer declares" in warning
    assert "uv lock --upgrade-package six" in warning
    # Declared (in pyproject.toml, or through uv's variables here): nothing to say.
    assert warnings_for(root, environ={"UV_INDEX": "mirror=https://mirror.example.com/simple/"}) == []
    (root / "uv.toml").write_text('[[index]]\nname = "mirror"\nurl = "https://mirror.example.com/simple/"\n')
    assert warnings_for(root) == []


def test_a_package_with_no_wheel_for_the_image_is_named_with_the_compiler_packages(copy_fixture):
    root = copy_fixture("sdist-only")
    (warning,) = warnings_for(root)
    assert warning.startswith("pyyaml 5.4.1: no wheel for linux/") and "Python 3.11" in warning
    assert "apt_packages: [build-essential, python3-dev]" in warning and "six" not in warning
    assert warnings_for(root, "apt_packages: [build-essential, python3-dev]\n") == []


def test_unset_index_secrets_are_a_warning(copy_fixture):
    root = copy_fixture("small")
    spec_yaml = "index_secrets: [UV_INDEX_CORP_USERNAME, UV_INDEX_CORP_PASSWORD]\n"
    (warning,) = warnings_for(root, spec_yaml, {"UV_INDEX_CORP_USERNAME": "me"})
    assert warning.startswith("UV_INDEX_CORP_PASSWORD (index_secrets of images/default.yaml) is not set here")
    assert warnings_for(root, spec_yaml, {"UV_INDEX_CORP_USERNAME": "me", "UV_INDEX_CORP_PASSWORD": "x"}) == []


def test_an_unreachable_git_host_is_named_with_the_git_config_route(copy_fixture, tmp_path):
    """What uv prints when the git host of a locked git source does not answer
    (real uv, a closed port), as a failed build carries it."""
    import socket
    import subprocess

    from raybake.errors import BuildError
    from raybake.sources import explain_build_failure
    from raybake.tools.uv import uv_bin

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the socket is
    proc = subprocess.run([str(uv_bin()), "pip", "compile", "--no-cache", "-"], text=True, capture_output=True,
                          input=f"six @ git+https://127.0.0.1:{port}/team/six.git\n", cwd=tmp_path,
                          env={**os.environ, "UV_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode != 0
    project, spec = project_and_spec(copy_fixture("small"))
    error = explain_build_failure(project, spec, BuildError(f"the image build failed:\n{proc.stderr}"))
    assert f"the git host 127.0.0.1:{port} could not be reached from the build" in error.message
    assert "GIT_CONFIG_KEY_0=url.https://x-access-token:TOKEN@127.0.0.1" in error.fix
    assert "package index" not in error.message + error.fix

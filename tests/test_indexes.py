"""Projects with their own package indexes keep the split dependency layers:
a private index (a real pypiserver on 127.0.0.1 that wants a password) for one
small package, and the same index used only `sys_platform != 'linux'` (the
torch-index pattern). Real uv, real engine."""

import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from helpers import docker, make_wheel, raybake
from test_layers import layer_ids

from raybake.tools.uv import uv_bin

pytestmark = pytest.mark.engine
USER, PASSWORD = "raybake", f"pw-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def own_index(tmp_path_factory):
    """A pypiserver on a free port of 127.0.0.1 that wants a password to list or download."""
    from passlib.apache import HtpasswdFile

    folder = tmp_path_factory.mktemp("own-index")
    packages = folder / "packages"
    packages.mkdir()
    make_wheel(packages, "greeting", "1.0")
    # The marker-only source: another build of tabulate 0.9.0, which Linux never installs.
    make_wheel(packages, "tabulate", "0.9.0")
    passwords = HtpasswdFile(str(folder / "htpasswd"), new=True)
    passwords.set_password(USER, PASSWORD)
    passwords.save()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "pypi-server"), "run", "-p", str(port),
                               "-i", "127.0.0.1", "--disable-fallback", "--hash-algo", "sha256",
                               "-a", "download,list", "-P", str(folder / "htpasswd"), str(packages)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/simple"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        yield url, packages
    finally:
        server.terminate()
        server.wait(timeout=30)


PYPROJECT = """\
[project]
name = "ownindex"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["six==1.17.0", "greeting==GREETING", "tabulate==0.9.0"]

[[tool.uv.index]]
name = "own"
url = "URL"
explicit = true

[tool.uv.sources]
greeting = { index = "own" }
tabulate = [{ index = "own", marker = "sys_platform != 'linux'" }]
"""


def test_own_indexes_keep_the_split_layers(engine, own_index, tmp_path, unique_repo):
    url, packages = own_index
    root = tmp_path / "ownindex"
    root.mkdir()
    (root / "images").mkdir()
    # Tiny packages: heavy_packages gives them layers of their own (tabulate, six, greeting from the bottom).
    (root / "images/default.yaml").write_text(
        "heavy_packages: [greeting, six, tabulate]\nindex_secrets: [UV_INDEX_OWN_USERNAME, UV_INDEX_OWN_PASSWORD]\n")
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo,
                     UV_INDEX_OWN_USERNAME=USER, UV_INDEX_OWN_PASSWORD=PASSWORD)

    def lock(greeting: str) -> None:
        (root / "pyproject.toml").write_text(PYPROJECT.replace("GREETING", greeting).replace("URL", url))
        subprocess.run([str(uv_bin()), "lock", "-q"], cwd=root, env=env, check=True)

    lock("1.0")
    assert "sys_platform != 'linux'" in (root / "uv.lock").read_text()
    dockerfile = raybake("dockerfile", "-C", str(root), env=env).stdout
    own_layer, tabulate_layer = (re.split(r"\n(?=\S)", dockerfile.split(f"# pinned layer {name}\n", 1)[1])[0]
                                 for name in ("heavy-greeting: greeting", "heavy-tabulate: tabulate"))
    # The private package comes from its index alone, with its secrets; PyPI's layers have none.
    assert f"--default-index own={url}" in own_layer and "id=UV_INDEX_OWN_PASSWORD" in own_layer
    assert "--default-index" not in tabulate_layer and "type=secret" not in tabulate_layer
    refs = []
    try:
        refs.append(raybake("build", "-C", str(root), env=env).stdout.split()[0])  # verified inside
        make_wheel(packages, "greeting", "1.1")
        lock("1.1")
        refs.append(raybake("build", "-C", str(root), env=env).stdout.split()[0])
        old, new = layer_ids(refs[0]), layer_ids(refs[1])
        # The private bump rebuilt its own layer and the sync above it; tabulate's and six's stayed.
        assert len(old) == len(new) and old[:-2] == new[:-2] and old[-2:] != new[-2:]
        out = docker("run", "--rm", "--network", "none", refs[1], "python", "-c",
                     "import greeting, six, tabulate; print(greeting.__version__)").stdout
        assert out.strip() == "1.1"
        # PyPI's tabulate, not the private index's: the Linux marker chose it.
        tabulate = docker("run", "--rm", "--network", "none", refs[1], "python", "-c",
                          "import tabulate; print(tabulate.__version__, hasattr(tabulate, 'tabulate'))").stdout
        assert tabulate.split() == ["0.9.0", "True"]
    finally:
        for ref in refs:
            docker("rmi", ref, check=False)


def test_an_index_that_refuses_is_named_with_the_variables_that_carry_its_credentials(engine, own_index,
                                                                                         tmp_path, unique_repo):
    """Locked with the password; built without it: the unset index_secrets are a
    warning before the build, and the refusal names the index 'own' and its variables."""
    from test_errors import assert_clean_error

    url, packages = own_index
    name = f"refused{uuid.uuid4().hex[:8]}"  # in no uv cache: the build must download it
    make_wheel(packages, name, "1.0")
    root = tmp_path / "refused"
    (root / "images").mkdir(parents=True)
    (root / "images/default.yaml").write_text("index_secrets: [UV_INDEX_OWN_USERNAME, UV_INDEX_OWN_PASSWORD]\n")
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "refused"\nversion = "0.1.0"\nrequires-python = ">=3.11"\ndependencies = ["{name}"]\n\n'
        f'[[tool.uv.index]]\nname = "own"\nurl = "{url}"\nexplicit = true\n\n'
        f'[tool.uv.sources]\n{name} = {{ index = "own" }}\n')
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    subprocess.run([str(uv_bin()), "lock", "-q"], cwd=root, check=True,
                   env={**env, "UV_INDEX_OWN_USERNAME": USER, "UV_INDEX_OWN_PASSWORD": PASSWORD})
    for variable in ("UV_INDEX_OWN_USERNAME", "UV_INDEX_OWN_PASSWORD"):
        env.pop(variable, None)
    proc = raybake("build", "-C", str(root), env=env, check=False)
    warning = proc.stderr.index("warning: UV_INDEX_OWN_PASSWORD, UV_INDEX_OWN_USERNAME (index_secrets of "
                                "images/default.yaml) are not set here")
    assert warning < proc.stderr.index("building "), proc.stderr
    assert_clean_error(proc, f"the package index 'own' ({url}) refused the build's request (HTTP 403 Forbidden)",
                       "set UV_INDEX_OWN_USERNAME and UV_INDEX_OWN_PASSWORD here",
                       "index_secrets of images/default.yaml")

"""Secrets (a proxy CA bundle, a private index's password) reach uv during the
build, which installs from that index over HTTPS and needs both, and nowhere else: not a layer, the config, labels, history, output or the tag.
The same build checks that environment values reach the image as written."""

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest
from conftest import FIXTURES
from helpers import docker, http_server, job_runtime_env, make_wheel, raybake

from raybake.tools.uv import uv_bin

pytestmark = pytest.mark.engine
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
# Values a Dockerfile would expand or unescape if raybake wrote them carelessly.
ENV = {"X": "${PATH}:$HOME", "Y": 'tab\tand "quotes" \\ back\\slash $ café \\n'}


def blobs(archive: Path):
    """Every blob of a `docker save` archive, layers decompressed."""
    with tarfile.open(archive) as outer:
        for member in outer.getmembers():
            if not member.isfile():
                continue
            data = outer.extractfile(member).read()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            yield member.name, data
            if member.name.startswith("blobs/") and tarfile.is_tarfile(io.BytesIO(data)):
                with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                    for f in layer.getmembers():
                        if f.isfile():
                            yield f"{member.name}:{f.name}", layer.extractfile(f).read()


USER = "raybake"
PRIVATE = "corpsecret"  # the one package only the private index has


@pytest.fixture(scope="module")
def private_index(tmp_path_factory):
    """A simple index on 127.0.0.1 over HTTPS, its certificate issued by a CA made
    for this module, that answers only with basic auth: (url, the CA's PEM, the
    password). A build installing from it needs both the CA bundle and the secret."""
    import base64
    import hashlib
    import http.server
    import ssl
    from functools import partial

    import trustme

    password = f"tok-{uuid.uuid4().hex}"
    www = tmp_path_factory.mktemp("private-index")
    (www / "simple" / PRIVATE).mkdir(parents=True)
    wheel = make_wheel(www, PRIVATE, "1.0")
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (www / "simple" / PRIVATE / "index.html").write_text(
        f'<a href="../../{wheel.name}#sha256={sha256}">{wheel.name}</a>\n')
    expected = "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="corp"')
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with http_server(partial(Handler, directory=str(www)), tls=context) as url:
        yield f"{url}/simple", ca.cert_pem.bytes().decode(), password


@pytest.fixture(scope="module")
def built(engine, repositories, tmp_path_factory, private_index):
    """One build of the small fixture, which also needs a package from the private
    index, with the CA bundle that index needs, its credentials and tricky env values."""
    url, certificate, token = private_index
    tmp_path = tmp_path_factory.mktemp("secrets")
    ca = tmp_path / "proxy-ca.pem"
    # A real bundle (HTTPS here goes through a proxy with its own CA) plus the
    # private index's CA, whose bytes are searched for.
    ca.write_text(SYSTEM_CA.read_text() + certificate)
    root = tmp_path / "small"
    shutil.copytree(FIXTURES / "small", root)
    (root / "pyproject.toml").write_text(
        (root / "pyproject.toml").read_text().replace('dependencies = ["six==1.17.0"]',
                                                      f'dependencies = ["six==1.17.0", "{PRIVATE}==1.0"]')
        + f'\n[[tool.uv.index]]\nname = "corp"\nurl = "{url}"\nexplicit = true\n\n'
          f'[tool.uv.sources]\n{PRIVATE} = {{ index = "corp" }}\n')
    (root / "images").mkdir()
    secrets = {"UV_INDEX_CORP_USERNAME": USER, "UV_INDEX_CORP_PASSWORD": token}
    spec = {"ca_bundle": str(ca), "index_secrets": sorted(secrets),
            # UV_NO_CACHE: uv must download, through the proxy and from the private index.
            "env": {"UV_NO_CACHE": "1", **ENV}}
    (root / "images/default.yaml").write_text(json.dumps(spec))  # JSON is YAML
    env = engine.env(RAYBAKE_REPOSITORY=repositories("s"), SSL_CERT_FILE="", **secrets)
    subprocess.run([str(uv_bin()), "lock", "-q"], cwd=root, check=True, env={**env, "SSL_CERT_FILE": str(ca)})
    tag_with = raybake("tag", "-C", str(root), env=env).stdout
    proc = raybake("build", "-C", str(root), env=env)  # succeeds only if the CA and the password reached uv
    ref = proc.stdout.split()[0]
    yield {"root": root, "env": env, "ref": ref, "proc": proc, "tag": tag_with, "token": token,
           "needles": [certificate.splitlines()[1], certificate.splitlines()[-2]], "tmp": tmp_path}
    docker("rmi", ref, check=False)


def test_secrets_never_leave_the_build(built):
    ref, proc, token, root, env = built["ref"], built["proc"], built["token"], built["root"], built["env"]
    needles = [n.encode() for n in built["needles"]] + [token.encode()]
    # The package only the private index serves is there: the CA and the password reached uv.
    docker("run", "--rm", "--network", "none", ref, "/opt/venv/bin/python", "-c", f"import {PRIVATE}")
    archive = built["tmp"] / "image.tar"
    docker("save", "-o", str(archive), ref)
    found = [name for name, data in blobs(archive) if any(n in data for n in needles)]
    assert found == []
    inspect = docker("image", "inspect", ref).stdout
    history = docker("history", "--no-trunc", ref).stdout
    for text in (inspect, history, proc.stdout, proc.stderr, built["tag"]):
        assert not any(n.decode() in text for n in needles)
    # The secrets are not in the hash: the tag is the same without them.
    spec = json.loads((root / "images/default.yaml").read_text())
    del spec["ca_bundle"], spec["index_secrets"]
    (root / "images/default.yaml").write_text(json.dumps(spec))
    assert raybake("tag", "-C", str(root), env=env).stdout == built["tag"]


def test_env_values_reach_the_image_and_the_job_config_as_written(built, tmp_path):
    for name, value in ENV.items():
        shown = docker("run", "--rm", "--network", "none", built["ref"], "printenv", name).stdout
        assert shown == value + "\n", name
    runtime_env = job_runtime_env(built["root"], built["env"], tmp_path / "stage")
    assert {k: runtime_env["env_vars"][k] for k in ENV} == ENV


# ---- issue 21.1: a build backend must not get the secrets, nor share them ----

# A PEP 517 backend (in-tree, needing nothing from an index) that writes the
# index password it finds in its environment into the wheel it builds.
LEAKY_BACKEND = '''import base64, hashlib, os, zipfile

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = "leaky-1.0-py3-none-any.whl"
    files = {"leaky.py": "TOKEN = %r\\n" % os.environ.get("UV_INDEX_CORP_PASSWORD", ""),
             "leaky-1.0.dist-info/METADATA": "Metadata-Version: 2.1\\nName: leaky\\nVersion: 1.0\\n",
             "leaky-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: leaky\\nRoot-Is-Purelib: true\\n"
                                          "Tag: py3-none-any\\n"}
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
            record.append("%s,sha256=%s,%d" % (path, digest, len(text.encode())))
        z.writestr("leaky-1.0.dist-info/RECORD", "\\n".join(record + ["leaky-1.0.dist-info/RECORD,,"]) + "\\n")
    return name
'''
LEAKY_PYPROJECT = """[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]

[project]
name = "leaky"
version = "1.0"
"""


@pytest.fixture(scope="module")
def leaky_sdist_url(tmp_path_factory):
    """http://127.0.0.1:PORT/leaky-1.0.tar.gz, an sdist with the backend above."""
    import http.server
    from functools import partial

    www = tmp_path_factory.mktemp("www")
    src = tmp_path_factory.mktemp("leaky") / "leaky-1.0"
    src.mkdir()
    (src / "pyproject.toml").write_text(LEAKY_PYPROJECT)
    (src / "backend.py").write_text(LEAKY_BACKEND)
    with tarfile.open(www / "leaky-1.0.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="leaky-1.0")
    with http_server(partial(http.server.SimpleHTTPRequestHandler, directory=str(www))) as url:
        yield f"{url}/leaky-1.0.tar.gz"


def leaky_project(tmp_path: Path, name: str, url: str, spec: dict) -> Path:
    root = tmp_path / name
    root.mkdir()
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        f'dependencies = ["leaky @ {url}"]\n')
    (root / "images").mkdir()
    (root / "images/default.yaml").write_text(json.dumps(spec))
    subprocess.run([sys.executable, "-m", "uv", "lock", "--directory", str(root)], check=True,
                   capture_output=True, env={**os.environ, "UV_INDEX_CORP_PASSWORD": ""})
    return root


def test_a_build_backend_never_gets_the_secrets_unless_the_spec_says_so(engine, leaky_sdist_url, tmp_path,
                                                                        unique_repo):
    token = f"tok-{uuid.uuid4().hex}"
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo, UV_INDEX_CORP_PASSWORD=token, SSL_CERT_FILE="")
    holder = leaky_project(tmp_path, "holder", leaky_sdist_url, {"index_secrets": ["UV_INDEX_CORP_PASSWORD"]})
    ref = raybake("tag", "-C", str(holder), env=env).stdout.strip()
    try:
        proc = raybake("build", "-C", str(holder), env=env, check=False)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "marked as `--no-build`" in proc.stderr and "build_with_secrets: true" in proc.stderr
        assert docker("image", "inspect", ref, check=False).returncode != 0
        assert token not in proc.stdout + proc.stderr
    finally:
        docker("rmi", ref, check=False)


def test_a_wheel_built_with_secrets_never_reaches_another_project(engine, leaky_sdist_url, tmp_path,
                                                                   unique_repo):
    token = f"tok-{uuid.uuid4().hex}"
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo, UV_INDEX_CORP_PASSWORD=token, SSL_CERT_FILE="")
    holder = leaky_project(tmp_path, "holder", leaky_sdist_url,
                           {"index_secrets": ["UV_INDEX_CORP_PASSWORD"], "build_with_secrets": True})
    other = leaky_project(tmp_path, "other", leaky_sdist_url, {})
    refs = []
    try:
        refs.append(raybake("build", "-C", str(holder), env=env).stdout.split()[0])
        # Opted in: this backend did see the secret (what build_with_secrets accepts).
        shown = docker("run", "--rm", "--network", "none", refs[0], "/opt/venv/bin/python", "-c",
                       "import leaky; print(leaky.TOKEN)").stdout.strip()
        assert shown == token
        # Another project with the same dependency, no secrets: its wheel is its own.
        other_env = {k: v for k, v in env.items() if k != "UV_INDEX_CORP_PASSWORD"}
        refs.append(raybake("build", "-C", str(other), env=other_env).stdout.split()[0])
        shown = docker("run", "--rm", "--network", "none", refs[1], "/opt/venv/bin/python", "-c",
                       "import leaky; print(repr(leaky.TOKEN))").stdout.strip()
        assert shown == "''"
    finally:
        for ref in refs:
            docker("rmi", ref, check=False)

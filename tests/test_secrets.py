"""Secrets (a proxy CA bundle, a private index token) reach uv during the build
and nowhere else: not a layer, the config, labels, history, output or the tag.
The same build checks that environment values reach the image as written."""

import gzip
import io
import json
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest
from conftest import FIXTURES
from helpers import docker, raybake

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


def unique_certificate(tmp_path: Path, marker: str) -> str:
    """A fresh self-signed certificate (PEM) whose subject is ``marker``: a CA
    bundle holds certificates only, so the bytes to search for must be one."""
    cert = tmp_path / "marker-cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", "/dev/null", "-subj", f"/CN={marker}", "-days", "1",
                    "-out", str(cert)], check=True, capture_output=True)
    return cert.read_text()


@pytest.fixture(scope="module")
def built(engine, tmp_path_factory):
    """One build of the small fixture with a proxy CA, an index token and tricky env values."""
    tmp_path = tmp_path_factory.mktemp("secrets")
    marker = f"raybake-secret-{uuid.uuid4().hex}"
    token = f"tok-{uuid.uuid4().hex}"
    certificate = unique_certificate(tmp_path, marker)
    ca = tmp_path / "proxy-ca.pem"
    # A real bundle (HTTPS here goes through a proxy with its own CA) plus one
    # certificate of our own, so its bytes can be searched for.
    ca.write_text(SYSTEM_CA.read_text() + certificate)
    root = tmp_path / "small"
    shutil.copytree(FIXTURES / "small", root)
    (root / "images").mkdir()
    spec = {"ca_bundle": str(ca), "index_secrets": ["UV_INDEX_CORP_PASSWORD"],
            # UV_NO_CACHE: uv must download through the proxy, which only works with the CA.
            "env": {"UV_NO_CACHE": "1", **ENV}}
    (root / "images/default.yaml").write_text(json.dumps(spec))  # JSON is YAML
    env = engine.env(RAYBAKE_REPOSITORY=f"raybake-test/t{uuid.uuid4().hex[:12]}",
                     UV_INDEX_CORP_PASSWORD=token, SSL_CERT_FILE="")
    tag_with = raybake("tag", "-C", str(root), env=env).stdout
    proc = raybake("build", "-C", str(root), env=env)
    ref = proc.stdout.split()[0]
    yield {"root": root, "env": env, "ref": ref, "proc": proc, "tag": tag_with, "token": token,
           "needles": [marker, certificate.splitlines()[1]], "tmp": tmp_path}
    docker("rmi", ref, check=False)


def test_secrets_never_leave_the_build(built):
    ref, proc, token, root, env = built["ref"], built["proc"], built["token"], built["root"], built["env"]
    needles = [n.encode() for n in built["needles"]] + [token.encode()]
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


def test_env_values_reach_the_image_and_the_job_config_as_written(built):
    for name, value in ENV.items():
        shown = docker("run", "--rm", "--network", "none", built["ref"], "printenv", name).stdout
        assert shown == value + "\n", name
    config = json.loads(raybake("job-config", "-C", str(built["root"]), "--entrypoint", "python -V",
                                env=built["env"]).stdout)
    assert {k: config["runtime_env"]["env_vars"][k] for k in ENV} == ENV

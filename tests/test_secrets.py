"""Secrets (a proxy CA bundle, a private index token) reach uv during the build
and nowhere else: not a layer, the config, labels, history, output or the tag."""

import gzip
import io
import tarfile
import uuid
from pathlib import Path

import pytest
from helpers import docker, raybake

pytestmark = pytest.mark.engine
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")


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


def test_secrets_never_leave_the_build(engine, copy_fixture, unique_repo, tmp_path):
    marker = f"raybake-secret-{uuid.uuid4().hex}"
    token = f"tok-{uuid.uuid4().hex}"
    ca = tmp_path / "proxy-ca.pem"
    # A real bundle (HTTPS here goes through a proxy with its own CA) with a
    # unique comment line, so its bytes can be searched for.
    ca.write_bytes(SYSTEM_CA.read_bytes() + f"# {marker}\n".encode())
    root = copy_fixture("small")
    (root / "images").mkdir()
    # UV_NO_CACHE: uv must download through the proxy, which only works with the CA.
    (root / "images/default.yaml").write_text(
        f'ca_bundle: {ca}\nindex_secrets: [UV_INDEX_CORP_PASSWORD]\nenv:\n  UV_NO_CACHE: "1"\n')
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo, UV_INDEX_CORP_PASSWORD=token, SSL_CERT_FILE="")
    tag_with = raybake("tag", "-C", str(root), env=env).stdout
    proc = raybake("build", "-C", str(root), env=env)
    ref = proc.stdout.split()[0]

    archive = tmp_path / "image.tar"
    docker("save", "-o", str(archive), ref)
    found = [name for name, data in blobs(archive) if marker.encode() in data or token.encode() in data]
    assert found == []
    inspect = docker("image", "inspect", ref).stdout
    history = docker("history", "--no-trunc", ref).stdout
    for text in (inspect, history, proc.stdout, proc.stderr, tag_with):
        assert marker not in text and token not in text
    # The secrets are not in the hash: the tag is the same without them.
    (root / "images/default.yaml").write_text('env:\n  UV_NO_CACHE: "1"\n')
    assert raybake("tag", "-C", str(root), env=env).stdout == tag_with

"""The uv that goes into images is decided by raybake (or a spec's uv_version),
never by the uv installed next to raybake: tags do not move with the installer."""

import hashlib
import http.server
import io
import json
import re
import subprocess
import tomllib
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata

import pytest
import yaml
from conftest import REPO
from helpers import http_server, raybake

from raybake.contract import DEFAULT_UV_VERSION
from raybake.errors import ToolError
from raybake.planner import identities_for
from raybake.project import load_project
from raybake.tools import uv


def tags(root):
    return [i.reference for i in identities_for(load_project(root), all_specs=True)]


def test_tags_do_not_change_with_the_hosts_uv(copy_fixture, monkeypatch):
    root = copy_fixture("small")
    before = tags(root)
    monkeypatch.setattr(uv, "version", lambda name: "0.13.8" if name == "uv" else metadata.version(name))
    uv.host_uv_version.cache_clear()
    try:
        assert uv.host_uv_version() == "0.13.8"
        assert tags(root) == before
    finally:
        monkeypatch.undo()
        uv.host_uv_version.cache_clear()


def test_a_specs_uv_version_changes_the_tag(copy_fixture):
    root = copy_fixture("small")
    before = tags(root)
    (root / "images").mkdir()
    (root / "images/default.yaml").write_text('uv_version: "0.13.8"\n')
    assert tags(root) != before


def test_the_images_uv_is_the_pypi_wheel_of_the_version_asked_for(tmp_path, monkeypatch):
    """On the host's platform too: another release than the host's comes from PyPI (sha256-checked)."""
    monkeypatch.setenv("RAYBAKE_CACHE_DIR", str(tmp_path))
    assert uv.uv_bin_for("linux/amd64", uv.host_uv_version(), host="linux/amd64") == uv.uv_bin()
    binary = uv.uv_bin_for("linux/amd64", "0.13.8", host="linux/amd64")
    assert binary != uv.uv_bin() and binary.is_relative_to(tmp_path)
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("uv 0.13.8")


def test_raybakes_uv_is_its_own_locks_and_the_hooks():
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    assert {p["version"] for p in lock["package"] if p["name"] == "uv"} == {DEFAULT_UV_VERSION}
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert all(h["additional_dependencies"] == [f"uv=={DEFAULT_UV_VERSION}"] for h in hooks)


def test_version_names_the_uv_put_into_images():
    out = raybake("--version").stdout
    assert f"uv {DEFAULT_UV_VERSION}" in out


@contextmanager
def simple_index(wheel_name: str, wheel: bytes, sha256: str) -> Iterator[str]:
    """A PEP 691 simple index of uv on 127.0.0.1 listing one wheel with the sha256 given."""
    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/simple/uv/":
                host = f"http://127.0.0.1:{self.server.server_address[1]}"
                body = json.dumps({"meta": {"api-version": "1.1"}, "name": "uv", "files": [
                    {"filename": wheel_name, "url": f"{host}/files/{wheel_name}", "hashes": {"sha256": sha256}}]})
                self._send(body.encode(), "application/vnd.pypi.simple.v1+json")
            elif self.path == f"/files/{wheel_name}":
                self._send(wheel, "application/octet-stream")
            else:
                self.send_error(404)

        def _send(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    with http_server(Index) as url:
        yield f"{url}/simple/uv/"


@pytest.mark.parametrize("matches", [True, False])
def test_the_uv_wheel_is_used_only_when_it_matches_the_index_sha256(tmp_path, monkeypatch, matches):
    """uv for another platform comes from its wheel on the index: one whose bytes do
    not match the sha256 the index lists is refused and nothing is kept."""
    monkeypatch.setenv("RAYBAKE_CACHE_DIR", str(tmp_path / "cache"))
    name = "uv-0.13.8-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("uv-0.13.8.data/scripts/uv", b"#!/bin/sh\necho uv 0.13.8\n")
    wheel = buffer.getvalue()
    digest = hashlib.sha256(wheel if matches else wheel + b"tampered").hexdigest()
    with simple_index(name, wheel, digest) as index:
        monkeypatch.setattr(uv, "SIMPLE_INDEX", index)
        if matches:
            binary = uv.uv_bin_for("linux/arm64", "0.13.8", host="linux/amd64")
            assert binary.read_bytes() == b"#!/bin/sh\necho uv 0.13.8\n"
        else:
            with pytest.raises(ToolError, match=f"the uv wheel {re.escape(name)} does not match PyPI's sha256"):
                uv.uv_bin_for("linux/arm64", "0.13.8", host="linux/amd64")
            assert not list((tmp_path / "cache").rglob("uv"))

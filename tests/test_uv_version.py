"""The uv that goes into images is decided by raybake (or a spec's uv_version),
never by the uv installed next to raybake: tags do not move with the installer."""

import subprocess
import tomllib
from importlib import metadata

import yaml
from conftest import REPO
from helpers import raybake

from raybake.contract import DEFAULT_UV_VERSION
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

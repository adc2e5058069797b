"""Split dependency layers: pure splitting, then real builds that reuse the
lower layers when only a small dependency changes."""

import json
import subprocess

import pytest
from conftest import EXAMPLE
from helpers import docker, raybake

from raybake.layers import MiB, can_split, package_sizes, pinned_layers, requirement_blocks, split
from raybake.lockfile import parse_lock
from raybake.tools.uv import uv_bin

EXPORT = """\
numpy==2.3.1 ; python_full_version >= '3.11' \\
    --hash=sha256:aa \\
    --hash=sha256:bb
six==1.17.0 \\
    --hash=sha256:cc
Ray==2.60.0
"""


def test_requirement_blocks_keep_hashes_per_package():
    blocks = requirement_blocks(EXPORT)
    assert set(blocks) == {"numpy", "six", "ray"}
    assert blocks["numpy"].count("--hash") == 2 and "six" not in blocks["numpy"]


def test_split_by_size_and_override():
    sizes = {"ray": 70 * MiB, "numpy": 16 * MiB, "grpcio": 6 * MiB, "six": 11_000}
    names = set(sizes)
    # Each heavy package alone, largest lowest; then the medium ones; tiny ones stay on top.
    assert split(sizes, names, ()) == [("heavy-ray", ("ray",)), ("heavy-numpy", ("numpy",)),
                                       ("medium", ("grpcio",))]
    assert split(sizes, names, ("Six", "absent")) == [("heavy-six", ("six",)),
                                                      ("medium", ("grpcio", "numpy", "ray"))]
    assert split({"six": 1}, {"six"}, ()) == []


def test_sizes_come_from_the_lock_for_the_platform():
    sizes = package_sizes(parse_lock((EXAMPLE / "uv.lock").read_bytes()), "linux/amd64")
    assert sizes["ray"] > 50 * MiB and sizes["six"] < MiB
    assert sizes["pyarrow"] > sizes["pandas"] > 10 * MiB


def test_projects_with_their_own_index_keep_one_layer():
    assert can_split({"tool": {"uv": {"sources": {"a": {"workspace": True}}}}})
    assert not can_split({"tool": {"uv": {"index": [{"name": "corp", "url": "https://x"}]}}})
    assert can_split({"tool": {"uv": {"sources": {"a": {"git": "https://x"}}}}})


def test_git_and_url_requirements_stay_in_the_sync_layer():
    export = EXPORT + "gitdep @ git+https://example.com/gitdep@0123abcd\n"
    layers = pinned_layers(export, {"numpy": 16 * MiB, "six": 200_000, "gitdep": 50 * MiB, "ray": 70 * MiB}, ())
    # ray has no hash here, gitdep is a git source: neither goes into a pinned layer.
    assert [(name, packages) for name, packages, _ in layers] == [("heavy-numpy", ("numpy",)), ("medium", ("six",))]


def layer_ids(ref: str) -> list[str]:
    return json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", ref).stdout)


@pytest.mark.engine
def test_a_small_new_dependency_rebuilds_only_the_top_layer(engine, copy_fixture, unique_repo):
    root = copy_fixture("small")
    (root / "images").mkdir()
    (root / "images/default.yaml").write_text("heavy_packages: [six]\nextras: [table]\n")
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    first = raybake("build", "-C", str(root), env=env)  # verification runs inside build
    ref1 = first.stdout.split()[0]
    assert "pinned layer heavy-six: six" in raybake("dockerfile", "-C", str(root), env=env).stdout

    text = (root / "pyproject.toml").read_text().replace('"six==1.17.0"]', '"six==1.17.0", "iniconfig==2.0.0"]')
    (root / "pyproject.toml").write_text(text)
    subprocess.run([str(uv_bin()), "lock", "-q"], cwd=root, check=True)
    second = raybake("build", "-C", str(root), env=env)
    ref2 = second.stdout.split()[0]
    assert ref2 != ref1
    old, new = layer_ids(ref1), layer_ids(ref2)
    # Base layers and the pinned six layer are the same blobs; only the top differs.
    assert len(old) == len(new) and old[:-1] == new[:-1] and old[-1] != new[-1]
    out = docker("run", "--rm", "--network", "none", ref2, "python", "-c",
                 "import six, tabulate, iniconfig; print('ok')").stdout
    assert out.strip() == "ok"

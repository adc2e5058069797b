"""Split dependency layers: pure splitting, then real builds that reuse the
lower layers when only a small dependency changes."""

import json
import re
import subprocess
from dataclasses import replace

import pytest
from conftest import EXAMPLE
from helpers import docker, raybake

from raybake.dockerfile import render
from raybake.layers import (
    HEAVY_LAYER_BUDGET,
    KiB,
    MiB,
    IndexAccess,
    PackageIndex,
    declared_indexes,
    image_markers,
    index_access,
    package_sizes,
    pinned_layers,
    requirement_blocks,
    split,
)
from raybake.lockfile import parse_lock
from raybake.plan import PinnedLayer, identify, plan_build
from raybake.project import load_project
from raybake.spec import load_specs
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


def synthetic_lock(sizes: dict[str, int]) -> tuple[str, str]:
    """(uv.lock text, `uv export` text) of PyPI packages with one wheel each of the given sizes."""
    lock, export = ["version = 1\nrevision = 2\n"], []
    for i, (name, size) in enumerate(sizes.items()):
        digest = f"{i:064x}"
        lock.append(f'[[package]]\nname = "{name}"\nversion = "1.0"\n'
                    'source = { registry = "https://pypi.org/simple" }\n'
                    f'wheels = [{{ url = "https://files.example/{name}-1.0-py3-none-any.whl", '
                    f'hash = "sha256:{digest}", size = {size} }}]\n\n')
        export.append(f"{name}==1.0 \\\n    --hash=sha256:{digest}\n")
    return "".join(lock), "".join(export)


def test_a_lock_of_200_heavy_packages_stays_within_the_layer_budget(copy_fixture):
    """Far under the 127 layers overlayfs stacks: the heaviest keep a layer each,
    the rest share layers; every package is installed exactly once."""
    sizes = {f"heavy{i:03d}": 11 * MiB + i * KiB for i in range(200)}
    lock_text, export = synthetic_lock(sizes)
    project = load_project(copy_fixture("small"))
    (spec,) = load_specs(project, {})
    plan = plan_build(project, identify(project, spec, base_digest=None, template_digest="0" * 64),
                      requirements=export, lock=parse_lock(lock_text.encode()), python="3.11.2")
    pinned = [layer for layer in plan.dep_layers if isinstance(layer, PinnedLayer)]
    assert len(pinned) <= HEAVY_LAYER_BUDGET
    assert sorted(p for layer in pinned for p in layer.packages) == sorted(sizes)
    # The heaviest, lowest, alone; the groups keep size order.
    assert pinned[0].packages == ("heavy199",) and len(pinned[-1].packages) > 1
    assert render(plan).count("\nRUN ") <= HEAVY_LAYER_BUDGET + 3
    # Packages from two indexes: still within the budget, and no group mixes them.
    index = {name: "own" if i % 3 == 0 else "" for i, name in enumerate(sizes)}
    layers = split(sizes, set(sizes), (), index.__getitem__)
    assert len(layers) <= HEAVY_LAYER_BUDGET and all(len({index[p] for p in ps}) == 1 for _, ps in layers)
    # Up to the budget, each heavy package keeps its own layer.
    assert len(split(sizes, set(list(sizes)[:HEAVY_LAYER_BUDGET]), ())) == HEAVY_LAYER_BUDGET


def test_sizes_come_from_the_lock_for_the_platform():
    sizes = package_sizes(parse_lock((EXAMPLE / "uv.lock").read_bytes()), "linux/amd64")
    assert sizes["ray"] > 50 * MiB and sizes["six"] < MiB
    assert sizes["pyarrow"] > sizes["pandas"] > 10 * MiB


OWN = "http://127.0.0.1:8080/simple"
H1, H2, H3, H4 = ("1" * 64, "2" * 64, "3" * 64, "4" * 64)
# A private index for one package, and a torch-like index used only off Linux.
INDEX_LOCK = f"""version = 1
revision = 2

[[package]]
name = "greeting"
version = "1.0"
source = {{ registry = "{OWN}" }}
wheels = [{{ url = "http://127.0.0.1:8080/packages/greeting-1.0-py3-none-any.whl", hash = "sha256:{H1}" }}]

[[package]]
name = "numpy"
version = "2.3.1"
source = {{ registry = "https://pypi.org/simple" }}
wheels = [{{ url = "https://f/numpy-2.3.1-cp311-manylinux_x86_64.whl", hash = "sha256:{H2}", size = {16 * MiB} }}]

[[package]]
name = "tabulate"
version = "0.9.0"
source = {{ registry = "https://download.pytorch.org/whl/cpu" }}
wheels = [{{ url = "https://download.pytorch.org/whl/tabulate-0.9.0-py3-none-any.whl", hash = "sha256:{H3}" }}]

[[package]]
name = "tabulate"
version = "0.9.0"
source = {{ registry = "https://pypi.org/simple" }}
wheels = [{{ url = "https://f/tabulate-0.9.0-py3-none-any.whl", hash = "sha256:{H4}", size = 200000 }}]
"""
INDEX_EXPORT = f"""greeting==1.0 \\
    --hash=sha256:{H1}
numpy==2.3.1 \\
    --hash=sha256:{H2}
tabulate==0.9.0 ; sys_platform != 'linux' \\
    --hash=sha256:{H3}
tabulate==0.9.0 ; sys_platform == 'linux' \\
    --hash=sha256:{H4}
"""
INDEX_PYPROJECT = {"tool": {"uv": {
    "index": [{"name": "own", "url": OWN, "explicit": True},
              {"name": "pytorch", "url": "https://download.pytorch.org/whl/cpu", "explicit": True}],
    "sources": {"greeting": {"index": "own"},
                "tabulate": [{"index": "pytorch", "marker": "sys_platform != 'linux'"}]}}}}


def index_layers(pyproject=INDEX_PYPROJECT, secrets=(), heavy=(), sizes=None):
    lock = parse_lock(INDEX_LOCK.encode())
    if sizes:  # pretend sizes: the lock's wheels of greeting and tabulate carry none
        lock = replace(lock, packages=tuple(
            replace(p, wheel_sizes=((f"{p.name}-none-any", sizes[p.name]),)) if p.name in sizes else p
            for p in lock.packages))
    return pinned_layers(INDEX_EXPORT, lock, platform="linux/amd64", python="3.11.2",
                         heavy_override=heavy, indexes=declared_indexes([pyproject]), secrets=secrets)


def test_own_indexes_keep_the_split_per_package():
    """A private index for one package and a marker-only torch index keep the split:
    each package is installed from the index it was locked from, alone, with that
    index's secrets only; the index that only serves other platforms plays no part."""
    secrets = ("UV_INDEX_OWN_PASSWORD", "UV_INDEX_OWN_USERNAME", "UV_INDEX_PYTORCH_PASSWORD")
    layers = index_layers(secrets=secrets, heavy=("greeting", "tabulate"))
    assert [(c.name, c.packages, c.access) for c in layers] == [
        ("heavy-tabulate", ("tabulate",), IndexAccess()),
        ("heavy-greeting", ("greeting",), IndexAccess(f"own={OWN}", secrets[:2])),
        ("medium", ("numpy",), IndexAccess()),
    ]
    # The marker that excludes Linux excludes its source: PyPI's tabulate only.
    assert H4 in layers[0].requirements and H3 not in layers[0].requirements


def test_a_shared_layer_holds_one_index():
    layers = index_layers(heavy=("numpy",), sizes={"greeting": 300_000, "tabulate": 200_000})
    assert [(c.name, c.packages, c.access.default_index) for c in layers] == [
        ("heavy-numpy", ("numpy",), None), ("medium-own", ("greeting",), f"own={OWN}"),
        ("medium", ("tabulate",), None)]


@pytest.mark.parametrize(("pyproject", "secrets"), [
    ({}, ()),  # an index only the environment names (UV_INDEX_URL): uv sync knows it
    ({"tool": {"uv": {"index": [{"name": "own", "url": OWN.replace("//", "//u:tok@")}]}}}, ()),
    ({"tool": {"uv": {"index": [{"name": "own", "url": OWN, "format": "flat"}]}}}, ()),
    ({"tool": {"uv": {"extra-index-url": [OWN]}}}, ("UV_EXTRA_INDEX_URL",)),  # a secret that may be its
])
def test_indexes_a_pinned_layer_cannot_reach_stay_in_the_sync_layer(pyproject, secrets):
    assert "greeting" not in {p for c in index_layers(pyproject, secrets, ("greeting",)) for p in c.packages}


def test_a_local_directory_index_stays_in_the_sync_layer():
    """Its directory is not in the build context of a pinned layer."""
    assert index_access("wheels", (PackageIndex("wheels", "local"),), ()) is None
    assert index_access(OWN, (PackageIndex(OWN, "own"),), ()) == IndexAccess(f"own={OWN}")


def test_an_unnamed_declared_index_without_secrets_is_pinned():
    (layer, *_) = index_layers({"tool": {"uv": {"extra-index-url": [OWN]}}}, heavy=("greeting",))
    assert (layer.packages, layer.access) == (("greeting",), IndexAccess(OWN))


def test_markers_for_other_platforms_drop_their_requirements():
    blocks = requirement_blocks(INDEX_EXPORT, image_markers("linux/amd64", "3.11.2"))
    assert H3 not in blocks["tabulate"] and H4 in blocks["tabulate"]
    assert requirement_blocks(INDEX_EXPORT)["tabulate"].count("tabulate==") == 2


def test_git_and_url_requirements_stay_in_the_sync_layer():
    lock_text, export = synthetic_lock({"numpy": 16 * MiB, "six": 200_000, "ray": 70 * MiB, "gitdep": 50 * MiB})
    export = re.sub(r"ray==1.0 \\\n.*\n", "ray==1.0\n", export)
    export = re.sub(r"gitdep==1.0 \\\n", "gitdep @ git+https://example.com/gitdep@0123abcd \\\n", export)
    layers = pinned_layers(export, parse_lock(lock_text.encode()), platform="linux/amd64", python="3.11.2",
                           heavy_override=())
    # ray has no hash here, gitdep is a git source: neither goes into a pinned layer.
    assert [(c.name, c.packages) for c in layers] == [("heavy-numpy", ("numpy",)), ("medium", ("six",))]


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


@pytest.mark.engine
def test_a_runtime_apt_package_change_rebuilds_only_its_layer(engine, copy_fixture, unique_repo):
    root = copy_fixture("small")
    (root / "images").mkdir()
    spec = root / "images/default.yaml"
    spec.write_text("heavy_packages: [six]\nruntime_apt_packages: [libgomp1]\n")
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    refs = []
    try:
        refs.append(raybake("build", "-C", str(root), env=env).stdout.split()[0])
        spec.write_text("heavy_packages: [six]\nruntime_apt_packages: [libgomp1, zstd]\n")
        refs.append(raybake("build", "-C", str(root), env=env).stdout.split()[0])
        old, new = layer_ids(refs[0]), layer_ids(refs[1])
        # The base, the pinned six layer and the sync layer are the same blobs: only the apt layer is new.
        assert refs[0] != refs[1] and len(old) == len(new) and old[:-1] == new[:-1] and old[-1] != new[-1]
        docker("run", "--rm", "--network", "none", refs[1], "sh", "-c", "command -v zstd")
    finally:
        for ref in refs:
            docker("rmi", ref, check=False)

"""What the input hash covers: table-driven, both directions."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import BASE_DIGEST
from hypothesis import given, settings
from hypothesis import strategies as st

from raybake.dockerfile import template_digest
from raybake.hashing import canonical_bytes, strip_credentials
from raybake.plan import identify
from raybake.project import load_project
from raybake.spec import load_specs


def reference(root: Path, env: dict[str, str] | None = None, base_digest: str = BASE_DIGEST) -> str:
    project = load_project(root)
    (spec,) = load_specs(project, env or {})
    return identify(project, spec, base_digest=base_digest, template_digest=template_digest()).reference


def edit(rel: str, old: str, new: str):
    def apply(root: Path) -> None:
        p = root / rel
        text = p.read_text()
        assert old in text, f"{old!r} not in {rel}"
        p.write_text(text.replace(old, new, 1))
    return apply


def append(rel: str, text: str):
    def apply(root: Path) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text((p.read_text() if p.exists() else "") + text)
    return apply


UNCHANGED = {
    "source file": append("src/small/__init__.py", "\nX = 1\n"),
    "new source file": append("src/small/extra.py", "Y = 2\n"),
    "README": append("README.md", "# hello\n"),
    "tests": append("tests/test_x.py", "def test(): pass\n"),
    "[tool.ruff]": edit("pyproject.toml", "line-length = 100", "line-length = 88"),
    "[project].description": edit("pyproject.toml", "a tiny uv project", "a small uv project"),
    "[project].version": edit("pyproject.toml", 'version = "0.1.0"', 'version = "0.2.0"'),
    "[project.scripts]": edit("pyproject.toml", 'small = "small:main"', 'small2 = "small:main"'),
    "new unrelated table": append("pyproject.toml", "\n[tool.black]\nline-length = 90\n"),
    "lock-adjacent file": append(".gitignore", ".venv\n"),
}

CHANGED = {
    "uv.lock bytes": append("uv.lock", "\n"),
    "dependencies": edit("pyproject.toml", 'dependencies = ["six==1.17.0"]', 'dependencies = ["six>=1.16"]'),
    "optional dependencies": edit("pyproject.toml", 'table = ["tabulate==0.9.0"]', 'table = ["tabulate"]'),
    "dependency groups": edit("pyproject.toml", 'dev = ["iniconfig==2.0.0"]', 'dev = ["iniconfig"]'),
    "requires-python": edit("pyproject.toml", 'requires-python = ">=3.11"', 'requires-python = ">=3.11,<4"'),
    "[tool.uv] index URL": append("pyproject.toml", '\n[[tool.uv.index]]\nname = "corp"\nurl = "https://pypi.corp/simple"\n'),
}


@pytest.mark.parametrize("change", UNCHANGED.values(), ids=UNCHANGED.keys())
def test_tag_does_not_change(copy_fixture, change):
    root = copy_fixture("small")
    before = reference(root)
    change(root)
    assert reference(root) == before


@pytest.mark.parametrize("change", CHANGED.values(), ids=CHANGED.keys())
def test_tag_changes_with_project_inputs(copy_fixture, change):
    root = copy_fixture("small")
    before = reference(root)
    change(root)
    assert reference(root) != before


FIXED_BASE = "base_image: example.invalid/base:1\n"  # else the default base follows the Python
SPEC_CHANGES = {
    "groups": "groups: [dev]\n",
    "extras": "extras: [table]\n",
    "dev": "dev: true\n",
    "base_image": "base_image: python:3.11-slim-trixie\n",
    "python": FIXED_BASE + 'python: "3.12"\n',  # the base stays: only the Python asked for differs
    "platform": "platform: linux/arm64\n",
    "apt_packages": "apt_packages: [git]\n",
    "runtime_apt_packages": "runtime_apt_packages: [ffmpeg]\n",
    "env": "env:\n  A: b\n",
    "heavy_packages": "heavy_packages: [six]\n",
    "package": "package: small\n",
    "base": "base: cuda\n",
    "python_apt": "python_apt: [python3.12]\n",
    "all_packages": "all_packages: true\n",
    "compression": "compression: zstd\n",
    "compression_level": "compression_level: 1\n",
    "uv_version": 'uv_version: "0.13.8"\n',
}
SPEC_NEUTRAL = {
    "repository": "repository: other/name\n",
    "network": "network: host\n",
    "ca_bundle": "ca_bundle: ca.pem\n",
    "index_secrets": "index_secrets: [UV_INDEX_CORP_PASSWORD]\n",
    "build_with_secrets": "build_with_secrets: true\n",
    "import_skip": "import_skip: [six]\n",
    "audit_severity": "audit_severity: high\n",
    "cache_from": "cache_from: [127.0.0.1:5000/small:buildcache-main]\n",
    "cache_to": "cache_to: [type=inline]\n",
    "registry_login_secret": "registry_login_secret: arn:aws:secretsmanager:us-west-2:1:secret:reg\n",
    "compute_config": "compute_config: gpu-small:2\n",
    "cloud": "cloud: my-cloud\n",
    "max_retries": "max_retries: 3\n",
}


def test_every_spec_field_is_classified_and_tested():
    """A new spec field must say whether it is hashed, and be tested for it here."""
    from raybake.spec import FIELDS, PROJECT_FIELDS

    by_role = {role: {k for k, f in FIELDS.items() if f.role == role} for role in ("hashed", "neutral", "project")}
    assert by_role["hashed"] == set(SPEC_CHANGES)
    assert by_role["neutral"] == set(SPEC_NEUTRAL)
    assert by_role["project"] == set(PROJECT_FIELDS) and set().union(*by_role.values()) == set(FIELDS)


@pytest.mark.parametrize(("module", "name", "value"), [
    ("layers", "HEAVY_FLOOR", 2 * 10 * 2**20),  # the layer-split rules
    ("dockerfile", "_apt_layer", lambda packages: "RUN true"),  # what render() emits: no version to bump
])
def test_raybakes_own_template_is_part_of_the_tag(copy_fixture, monkeypatch, module, name, value):
    import importlib

    root = copy_fixture("small")
    before = reference(root)
    monkeypatch.setattr(importlib.import_module(f"raybake.{module}"), name, value)
    template_digest.cache_clear()
    try:
        assert reference(root) != before
    finally:
        monkeypatch.undo()
        template_digest.cache_clear()


def tag_of(ref: str) -> str:
    return ref.rsplit(":", 1)[1]


@pytest.mark.parametrize("line", SPEC_CHANGES.values(), ids=SPEC_CHANGES.keys())
def test_tag_changes_with_spec_fields(copy_fixture, line):
    root = copy_fixture("small")
    (root / "images").mkdir()
    (root / "images/default.yaml").write_text(FIXED_BASE if line.startswith(FIXED_BASE) else "")
    before = reference(root)
    (root / "images/default.yaml").write_text(line)
    assert tag_of(reference(root)) != tag_of(before)


@pytest.mark.parametrize("line", SPEC_NEUTRAL.values(), ids=SPEC_NEUTRAL.keys())
def test_tag_ignores_where_and_how_it_is_built(copy_fixture, line):
    root = copy_fixture("small")
    system = Path("/etc/ssl/certs/ca-certificates.crt").read_text()  # a real certificate: ca_bundle must be one
    (root / "ca.pem").write_text(system[:system.index("-----END CERTIFICATE-----")] + "-----END CERTIFICATE-----\n")
    (root / "images").mkdir()
    (root / "images/default.yaml").write_text("")
    before = reference(root)
    (root / "images/default.yaml").write_text(line)
    assert tag_of(reference(root)) == tag_of(before)


def test_member_pyprojects_are_hashed(copy_fixture):
    root = copy_fixture("workspace")
    before = reference(root)
    edit("libs/liba/pyproject.toml", "six==1.17.0", "six>=1.17")(root)
    assert reference(root) != before


def test_the_base_images_digest_is_hashed(copy_fixture):
    """A recorded base that moves (same name, another digest) is another image;
    so is the same base unrecorded (built from by name)."""
    root = copy_fixture("small")
    refs = {reference(root, base_digest=d) for d in ("sha256:" + "c" * 64, BASE_DIGEST, None)}
    assert len(refs) == 3


def test_tag_shape_and_credentials_are_not_hashed(copy_fixture):
    root = copy_fixture("small")
    ref = reference(root)
    assert re.fullmatch(r"small:default-[0-9a-f]{16}", ref)
    append("pyproject.toml", '\n[[tool.uv.index]]\nname = "corp"\nurl = "https://user:tok1@pypi.corp/simple"\n')(root)
    with_token = reference(root)
    edit("pyproject.toml", "user:tok1@", "user:tok2@")(root)
    assert reference(root) == with_token
    assert strip_credentials({"u": ["https://a:b@h/x"]}) == {"u": ["https://h/x"]}


def test_hash_is_the_same_in_a_fresh_process(copy_fixture):
    root = copy_fixture("small")
    code = ("import sys; from pathlib import Path; sys.path.insert(0, %r); "
            "from test_hashing import reference; print(reference(Path(%r)))") % (str(Path(__file__).parent), str(root))
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}).stdout.strip()
            for seed in ("0", "1", "12345")}
    assert outs == {reference(root)}


names = st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), min_size=1, max_size=5, unique=True)


@settings(max_examples=40, deadline=None)
@given(groups=names, extras=names, apt=names, data=st.data())
def test_hash_is_independent_of_set_order(tmp_path_factory, groups, extras, apt, data):
    """Spec files listing the same sets in any order (and with repeats) give one tag."""
    root = tmp_path_factory.mktemp("order")
    shutil.copytree(Path(__file__).parent / "fixtures" / "small", root, dirs_exist_ok=True)
    (root / "images").mkdir()
    # A spec may select only groups and extras the project defines.
    text = (root / "pyproject.toml").read_text()
    for table, declared, taken in (("[project.optional-dependencies]\n", extras, "table"),
                                   ("[dependency-groups]\n", groups, "dev")):
        text = text.replace(table, table + "".join(f"{n} = []\n" for n in declared if n != taken))
    (root / "pyproject.toml").write_text(text)

    def ref_for(g, e, a):
        (root / "images/default.yaml").write_text(
            yaml.safe_dump({"groups": g, "extras": e, "apt_packages": a}))
        return reference(root)

    shuffled = [data.draw(st.permutations(xs)) for xs in (groups, extras, apt)]
    assert ref_for(groups, extras, apt) == ref_for(*shuffled) == ref_for(*(xs + xs[:1] for xs in shuffled))


def test_canonical_bytes_sort_keys():
    assert canonical_bytes({"b": 1, "a": [2]}) == b'{"a":[2],"b":1}'

"""A release built the usual way is complete: `uv build` makes the sdist, then
the wheel from the sdist; installed as a uv tool, that wheel runs on a project
of its own (presets, `python -m raybake`, fixes that fit an installed tool)."""

import os
import subprocess
import sys
import tarfile

from conftest import EXAMPLE, REPO
from helpers import raybake

from raybake.tools.uv import uv_bin


def test_a_release_built_from_its_sdist_is_complete(tmp_path, copy_fixture):
    uv = str(uv_bin())
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT") and not k.startswith("RAYBAKE_")}
    env.update(UV_TOOL_DIR=str(tmp_path / "tools"), UV_TOOL_BIN_DIR=str(tmp_path / "bin"))
    dist = tmp_path / "dist"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)

    built = run(uv, "build", "--out-dir", str(dist), str(REPO))  # the sdist, then the wheel from it
    assert built.returncode == 0, built.stderr
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    assert {"src/raybake/presets/ray.yaml", "src/raybake/presets/python-slim.yaml",
            "src/raybake/presets/cuda.yaml", "src/raybake/templates/Dockerfile.base"} <= names
    (wheel,) = dist.glob("*.whl")
    installed = run(uv, "tool", "install", "--python", sys.executable, str(wheel))
    assert installed.returncode == 0, installed.stderr
    tool = tmp_path / "bin" / "raybake"

    root = copy_fixture(EXAMPLE)
    (root / "images/default.yaml").write_text("base: ray\n")  # a preset: package data
    tag = run(str(tool), "tag", "-C", str(root))
    assert tag.returncode == 0, tag.stderr
    assert tag.stdout == raybake("tag", "-C", str(root), env=env).stdout  # the same tag as the source tree's

    version = run(str(tmp_path / "tools/raybake/bin/python"), "-m", "raybake", "--version")
    assert version.returncode == 0 and version.stdout.startswith("raybake, version "), version.stderr

    # No Ray in the tool's environment: the fix reinstalls the tool with the lock's Ray.
    submit = run(str(tool), "submit", "-C", str(root), "--address", "http://127.0.0.1:9", "--", "python", "main.py")
    assert submit.returncode == 2, submit.stderr
    assert "uv tool install raybake --with 'ray[default]==2.60.0'" in submit.stderr, submit.stderr


def test_no_fix_names_a_file_of_raybakes_repository():
    """Fix texts are read by users of an installed raybake, who have no clone."""
    import ast

    package = REPO / "src/raybake"
    repository_only = ("buildkit/", "benchmarks/", "examples/", "tests/", "Makefile", ".ci/")
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                assert not any(p in node.value for p in repository_only), (path, node.value)

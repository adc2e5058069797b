import pytest

from raybake.errors import ProjectError
from raybake.project import load_project


def test_workspace_members_are_found(copy_fixture):
    project = load_project(copy_fixture("workspace"))
    assert project.name == "wsroot"
    assert [(m.path, m.name) for m in project.members] == [("libs/liba", "liba"), ("libs/libb", "libb")]


def test_project_is_found_from_a_subdirectory(copy_fixture):
    root = copy_fixture("small")
    assert load_project(root / "src" / "small").root == root


def test_missing_pyproject(tmp_path):
    with pytest.raises(ProjectError, match="no pyproject.toml") as info:
        load_project(tmp_path)
    assert "uv init" in info.value.fix


def test_missing_lock(copy_fixture):
    root = copy_fixture("small")
    (root / "uv.lock").unlink()
    with pytest.raises(ProjectError, match="uv.lock does not exist") as info:
        load_project(root)
    assert "uv lock" in info.value.fix


def test_invalid_pyproject_names_the_line(copy_fixture):
    root = copy_fixture("small")
    (root / "pyproject.toml").write_text("[project\nname = 'x'\n")
    with pytest.raises(ProjectError, match=r"not valid TOML.*line 1"):
        load_project(root)


def test_a_mistyped_project_directory_is_an_error_not_the_enclosing_project(copy_fixture):
    from helpers import raybake

    root = copy_fixture("small")
    with pytest.raises(ProjectError, match="does not exist") as info:
        load_project(root / "src" / "smal")
    assert "-C" in info.value.fix
    with pytest.raises(ProjectError, match="is not a directory"):
        load_project(root / "pyproject.toml")
    proc = raybake("tag", "-C", str(root / "sr"), check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and proc.stdout == ""

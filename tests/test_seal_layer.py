"""The script that finishes every dependency layer (run inside the image; here on the host)."""

import importlib.util
import os
import py_compile
from pathlib import Path

import raybake

SCRIPT = Path(raybake.__file__).parent / "templates" / "in_image" / "seal_layer.py"
spec = importlib.util.spec_from_file_location("seal_layer", SCRIPT)
seal_layer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seal_layer)


def test_only_files_without_bytecode_are_compiled(tmp_path):
    (tmp_path / "old.py").write_text("x = 1\n")
    py_compile.compile(str(tmp_path / "old.py"))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg/new.py").write_text("y = 2\n")
    assert list(seal_layer.missing_bytecode(tmp_path)) == [str(tmp_path / "pkg/new.py")]


def test_only_entries_changed_since_the_start_get_the_fixed_time(tmp_path):
    lower = tmp_path / "lower.py"
    lower.write_text("from a lower layer\n")
    os.utime(lower, (1000, 1000))
    since = lower.stat().st_mtime + 1
    (tmp_path / "new").mkdir()
    (tmp_path / "new/file.py").write_text("new\n")
    os.symlink("file.py", tmp_path / "new/link.py")
    os.utime(tmp_path / "new", (since + 5, since + 5))
    os.utime(tmp_path / "new/file.py", (since + 5, since + 5))
    os.utime(tmp_path / "new/link.py", (since + 5, since + 5), follow_symlinks=False)
    seal_layer.set_times(tmp_path, since, 0)
    assert lower.stat().st_mtime == 1000  # untouched: touching would copy it up into the layer
    assert os.lstat(tmp_path / "new/link.py").st_mtime == 0
    assert (tmp_path / "new/file.py").stat().st_mtime == 0
    assert (tmp_path / "new").stat().st_mtime == 0


def test_third_party_compile_warnings_stay_out_of_the_build_output(tmp_path, capfd):
    """A dependency's invalid escape sequences warn when compiled; the build log is raybake's."""
    import warnings

    noisy = tmp_path / "noisy.py"
    noisy.write_text('PATTERN = "\\d+"\n')
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # what -W always or a newer Python would show
        seal_layer.compile_one(str(noisy))
    assert capfd.readouterr().err == ""
    assert (tmp_path / "__pycache__").is_dir()

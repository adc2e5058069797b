"""Finish a dependency layer: byte-compile what it installed, then fix the times of what it wrote.

Usage: python seal_layer.py START  (START: time.time() before the install began)

uv's --compile-bytecode recompiles all of site-packages, so every upper layer
would carry a fresh copy of the lower layers' .pyc files (seen: +120 MB on a
1.3 GB environment); only .py files without a .pyc are compiled here. With
SOURCE_DATE_EPOCH set, py_compile writes hash-based .pyc files, and every
entry under the environment changed since START gets that time: the layer's
bytes depend on its packages only, not on when it was built."""

import importlib.util
import os
import py_compile
import sys
import sysconfig
import warnings
from concurrent.futures import ProcessPoolExecutor


def missing_bytecode(root):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                if not os.path.exists(importlib.util.cache_from_source(path)):
                    yield path


def compile_one(path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # third-party SyntaxWarnings are not the build's news
            py_compile.compile(path, doraise=True)
    except (py_compile.PyCompileError, OSError, ValueError):
        pass  # as pip and uv do: files that do not compile (py2 fixtures, templates) stay source-only


def set_times(root, since, epoch):
    """Entries changed since ``since`` get mtime ``epoch``; older ones are left
    alone (touching them would copy them up into this layer)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.lstat(path).st_mtime >= since:
                os.utime(path, (epoch, epoch), follow_symlinks=False)
    if os.lstat(root).st_mtime >= since:
        os.utime(root, (epoch, epoch))


if __name__ == "__main__":
    since = float(sys.argv[1])
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    todo = [p for root in site for p in missing_bytecode(root)]
    with ProcessPoolExecutor() as pool:
        list(pool.map(compile_one, todo, chunksize=64))
    set_times(sys.prefix, since, epoch)
    print(f"raybake: byte-compiled {len(todo)} new files")

"""A wrapper script for Ray's ``runtime_env["py_executable"]``: for clusters
that cannot run a custom image.

Ray starts every worker as ``<py_executable> <args...>`` in its working_dir.
The wrapper makes sure a node-local environment for the project's lock exists,
installing it once per node with ``uv sync`` under a ``flock`` (into a
temporary directory, renamed into place when complete), then ``exec``s that
environment's python with the worker's arguments. It refuses an environment
root, environment or marker that another user owns or may write: it would run
an interpreter someone else planted (see ``templates/py-executable.sh``).

Rendering is pure: the same project, spec and defaults give the same text."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
from functools import cache
from importlib.resources import files
from pathlib import Path

from raybake.errors import RaybakeError
from raybake.files import atomic_write, not_a_regular_file
from raybake.hashing import canonical_bytes
from raybake.plan import uv_sync_args
from raybake.project import Project
from raybake.spec import ImageSpec

# RAYBAKE_ENV_ROOT at run time; by default a directory of the user's own,
# created 0700 (never a shared one like /tmp: see the template).
DEFAULT_ENV_ROOT = "$XDG_CACHE_HOME/raybake-envs, else ~/.cache/raybake-envs"
DEFAULT_TIMEOUT = 600  # seconds; RAYBAKE_ENV_TIMEOUT at run time
DEFAULT_UV = "uv"  # RAYBAKE_UV at run time
DEFAULT_OUT = Path(".raybake") / "py-executable"  # relative to the project root
MARKER = ".raybake-done"  # in $ROOT/<key>/, holds the key once the venv is complete
KEY_SCHEMA = 1  # bump when what an environment key covers changes

_PLACEHOLDER = re.compile(r"@[A-Z][A-Z0-9_]*@")
_SAFE_KEY = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@cache
def wrapper_template() -> str:
    return files("raybake").joinpath("templates/py-executable.sh").read_text(encoding="utf-8")


def _python_args(spec: ImageSpec) -> tuple[str, ...]:
    # No Python in the spec: uv picks one for requires-python on the node.
    return ("--python", spec.python) if spec.python else ()


def wrapper_sync_args(project: Project, spec: ImageSpec) -> tuple[str, ...]:
    """The ``uv sync`` flags the wrapper runs: the image's, plus the spec's Python."""
    return (*uv_sync_args(project, spec), *_python_args(spec))


def env_key(project: Project, spec: ImageSpec) -> str:
    """``<project>-<spec>-<hash16>``: the environment's directory name under the env root.

    The hash covers the uv sync flags (selection, Python) and uv.lock byte for
    byte, so a new lock gets a new environment and old ones are left alone."""
    doc = canonical_bytes({"schema": KEY_SCHEMA, "sync": list(wrapper_sync_args(project, spec))})
    h = hashlib.sha256()
    h.update(len(doc).to_bytes(8, "big"))
    h.update(doc)
    h.update(project.lock_bytes)
    return f"{project.name}-{spec.name}-{h.hexdigest()[:16]}"


def _dq(text: str) -> str:
    """Escape for the inside of a double-quoted shell string."""
    return re.sub(r'([\\"$`])', r"\\\1", text)


def render_wrapper(project: Project, spec: ImageSpec, *, env_root: str | None = None,
                   timeout: int = DEFAULT_TIMEOUT, uv: str = DEFAULT_UV) -> str:
    """The wrapper script's text (deterministic: no paths of this machine, no time).

    ``env_root`` None: the user's own cache directory on each node."""
    if env_root is not None and (not env_root or "\n" in env_root):
        raise ValueError(f"env_root must be a non-empty path on one line, got {env_root!r}")
    if not uv or "\n" in uv:
        raise ValueError(f"uv must be a non-empty command on one line, got {uv!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise ValueError(f"timeout must be a whole number of seconds >= 0, got {timeout!r}")
    key = env_key(project, spec)
    assert _SAFE_KEY.match(key), key  # project and spec names are validated names
    sync = wrapper_sync_args(project, spec)
    values = {
        "@PROJECT@": project.name,
        "@SPEC@": spec.name,
        "@KEY@": key,
        "@LOCK_SHA256@": hashlib.sha256(project.lock_bytes).hexdigest(),
        "@ENV_ROOT@": shlex.quote(env_root or ""),
        "@ENV_ROOT_DOC@": env_root or DEFAULT_ENV_ROOT,
        "@TIMEOUT@": str(timeout),
        "@UV@": shlex.quote(uv),
        "@UV_DOC@": uv,
        "@SYNC_ARGS@": shlex.join(sync),
        "@VENV_ARGS@": shlex.join(_python_args(spec)),
        "@SYNC_ARGS_DOC@": _dq(shlex.join(sync)),
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(0)], wrapper_template())


def write_wrapper(text: str, path: Path) -> Path:
    """Write ``text`` to ``path`` atomically, mode 0755. Returns the absolute path."""
    path = Path(path).absolute()
    if kind := not_a_regular_file(path):
        raise RaybakeError(f"{path} exists and is {kind}, not a file raybake wrote; refusing to replace it",
                           fix="pass --out with another path, or remove that one")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text.encode("utf-8"), mode=0o755)
    except OSError as exc:
        raise RaybakeError(f"cannot write the py_executable wrapper {path}: {exc.strerror or exc}",
                           fix="pass --out with a path in a writable directory") from exc
    return path


def ray_ignore_file(working_dir: Path, path: Path, *,
                    include_gitignore: bool | None = None) -> Path | None:
    """The .gitignore or .rayignore that keeps ``path`` out of Ray's working_dir
    upload, if any (Ray reads them in every directory it walks)."""
    from pathspec import PathSpec

    if include_gitignore is None:
        include_gitignore = os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"
    working_dir, path = working_dir.absolute(), path.absolute()
    try:
        rel = path.relative_to(working_dir)
    except ValueError:
        return None
    names = (".gitignore", ".rayignore") if include_gitignore else (".rayignore",)
    for depth in range(len(rel.parts)):
        directory = working_dir.joinpath(*rel.parts[:depth])
        for name in names:
            ignore = directory / name
            if not ignore.is_file():
                continue
            lines = ignore.read_text(encoding="utf-8", errors="replace").splitlines()
            spec = PathSpec.from_lines("gitwildmatch", lines)
            below = Path(*rel.parts[depth:])
            # Ray tests each directory on its way down, then the file.
            candidates = [Path(*below.parts[:i]) for i in range(1, len(below.parts) + 1)]
            if any(spec.match_file(str(c)) for c in candidates):
                return ignore
    return None

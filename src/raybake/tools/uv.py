"""uv: the binary raybake copies into images, and lock checks on the host."""

from __future__ import annotations

import hashlib
import platform
import re
import sys
from functools import cache
from importlib.metadata import version
from pathlib import Path

from raybake.errors import LockOutOfDate, NoInterpreter, ProjectError, ToolError
from raybake.files import atomic_write
from raybake.paths import cache_dir
from raybake.project import Project
from raybake.tools.run import run


@cache
def uv_version() -> str:
    """Version of the uv wheel raybake depends on; its binary goes into images."""
    return version("uv")


@cache
def uv_bin() -> Path:
    import uv  # the PyPI wheel ships the binary

    return Path(uv.find_uv_bin())


def lock_check(project: Project) -> None:
    """Fail unless uv.lock is up to date with pyproject.toml (and every member's).

    ``--offline``: a current lock is decided from local files alone, which keeps
    this usable in pre-commit hooks. The answer depends only on those files and
    uv's version, so a passing check is remembered by their digest: a source
    edit costs nothing.

    uv needs some interpreter that satisfies requires-python to run the check,
    but the answer does not depend on which: ``.python-version`` (a developer's
    exact patch release, often not installed here) is not asked for."""
    memo = lock_memo(project)
    if memo.exists():
        return
    proc = run([uv_bin(), *lock_check_args(_check_interpreter(project.requires_python))],
               cwd=project.root, check=False, timeout=120)
    lock_verdict(project, proc.returncode, proc.stderr or proc.stdout)
    remember_lock_check(memo)


def lock_memo(project: Project) -> Path:
    """Where a passing check of exactly these files (and this uv) is remembered."""
    files = [project.root / "pyproject.toml", project.root / "uv.lock",
             *(project.root / p.path / "pyproject.toml" for p in project.local_packages if p.pyproject)]
    h = hashlib.sha256(uv_version().encode())
    for f in files:
        h.update(f.read_bytes())
    return cache_dir() / "lock-checks" / h.hexdigest()


def remember_lock_check(memo: Path) -> None:
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.touch()


def lock_check_args(python: str) -> list[str]:
    """`uv lock --check` from local files alone with ``python`` (a path or a
    version request) as the interpreter; never downloads one."""
    return ["lock", "--check", "--offline", "--no-progress", "--no-python-downloads", "--python", python]


def lock_verdict(project: Project, returncode: int, output: str, *, where: str = "on this machine") -> None:
    """Raise what a `uv lock --check` that ended with ``returncode`` means.

    uv exits 1 when it compared and the lock is stale, 2 when it stopped
    before comparing (no interpreter, unreadable files): never "out of date"."""
    if returncode == 0:
        return
    requires = project.requires_python
    detail = "\n".join(line for line in output.strip().splitlines() if not line.startswith("Using "))
    if "Failed to parse `uv.lock`" in detail:
        raise ProjectError(f"{project.root / 'uv.lock'} is not a valid lock file:\n{detail}",
                           fix="resolve merge conflicts in it, or regenerate it with `uv lock`")
    if returncode == 1:
        raise LockOutOfDate(
            f"{project.root / 'uv.lock'} is out of date with pyproject.toml:\n{detail}",
            fix=f"run `uv lock` in {project.root} and commit uv.lock")
    if "interpreter" in detail.lower():
        raise NoInterpreter(
            f"could not check {project.root / 'uv.lock'} against pyproject.toml: uv found no Python "
            f"{where} that satisfies requires-python {requires or '(any)'}:\n{detail}",
            fix=f"install one (`uv python install {_lowest(requires)}`) or put it on PATH")
    raise ToolError(f"could not check {project.root / 'uv.lock'} against pyproject.toml:\n{detail}",
                    fix="fix what uv reports above")


def _check_interpreter(requires: str | None) -> str:
    """raybake's own interpreter when it satisfies requires-python (no search at
    all), else the requirement itself for uv to find among installed ones."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    here = platform.python_version()
    try:
        if not requires or here in SpecifierSet(requires):
            return sys.executable
    except InvalidSpecifier:
        return sys.executable  # uv reports the bad requires-python itself
    return requires


def _lowest(requires: str | None) -> str:
    m = re.search(r"(\d+\.\d+)", requires or "")
    return m.group(1) if m else "3"


def export_requirements(project: Project, args: tuple[str, ...]) -> str:
    """The lock's selection (``args``: uv's selection flags) as requirements.txt
    lines with markers and hashes, from the lock alone (no network)."""
    return run([uv_bin(), "export", "--frozen", "--no-header", "--no-annotate", "--format", "requirements-txt",
                "--no-progress", *args], cwd=project.root, timeout=120).stdout


# uv's wheels name the CPU with these tags (manylinux2014: glibc 2.17 and later).
_WHEEL_ARCH = {"linux/amd64": "manylinux_2_17_x86_64", "linux/arm64": "manylinux_2_17_aarch64",
               "linux/ppc64le": "manylinux_2_17_ppc64le", "linux/s390x": "manylinux_2_17_s390x"}
SIMPLE_INDEX = "https://pypi.org/simple/uv/"


def uv_bin_for(platform: str, host: str) -> Path:
    """The uv binary to put into an image for ``platform``: raybake's own on the
    host's platform, else the one in uv's wheel for that platform on PyPI (the
    same version, checked against the index's sha256), fetched once."""
    if platform == host:
        return uv_bin()
    tag = _WHEEL_ARCH.get(platform)
    if tag is None:
        raise ToolError(f"raybake has no uv binary for the platform {platform}",
                        fix=f"set platform to one of: {', '.join(_WHEEL_ARCH)}")
    target = cache_dir() / "uv-bin" / uv_version() / platform.replace("/", "-") / "uv"
    if target.is_file():
        return target
    import io
    import json
    import urllib.request
    import zipfile

    def fetch(url: str, accept: str | None = None) -> bytes:
        request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.read()
        except OSError as exc:
            raise ToolError(f"cannot fetch uv {uv_version()} for {platform} from PyPI: {exc}",
                            fix="check HTTPS access to pypi.org (proxy, SSL_CERT_FILE), or build on a "
                                f"{platform} machine") from None

    index = json.loads(fetch(SIMPLE_INDEX, "application/vnd.pypi.simple.v1+json"))
    wheel = next((f for f in index["files"]
                  if f["filename"].startswith(f"uv-{uv_version()}-") and tag in f["filename"]), None)
    if wheel is None:
        raise ToolError(f"PyPI has no uv {uv_version()} wheel for {platform}",
                        fix="set platform to one uv publishes wheels for")
    data = fetch(wheel["url"])
    if hashlib.sha256(data).hexdigest() != wheel["hashes"]["sha256"]:
        raise ToolError(f"the uv wheel {wheel['filename']} does not match PyPI's sha256", fix="try again")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        binary = archive.read(f"uv-{uv_version()}.data/scripts/uv")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, binary, mode=0o755)
    return target

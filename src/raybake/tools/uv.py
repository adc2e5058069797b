"""uv: the binary raybake copies into images, and lock checks and audits on the host.

Two uvs: the one installed next to raybake runs on this machine (lock checks,
exports); the one put into an image is the spec's uv_version (raybake's own by
default), taken from its PyPI wheel, so the host's uv never changes an image or a tag."""

from __future__ import annotations

import hashlib
import platform
import re
import sys
import threading
from functools import cache
from importlib.metadata import version
from pathlib import Path

from raybake.errors import LockOutOfDate, NoInterpreter, ProjectError, ToolError
from raybake.files import atomic_write
from raybake.paths import cache_dir
from raybake.project import Project
from raybake.tools.run import run


@cache
def host_uv_version() -> str:
    """Version of the uv installed next to raybake (it runs on this machine, never in images)."""
    return version("uv")


_UV_BIN_LOCK = threading.Lock()


@cache
def uv_bin() -> Path:
    import uv  # the PyPI wheel ships the binary

    # One thread at a time: sysconfig's first use is not thread-safe (`build --all`
    # threads saw get_config_var("EXE") return None).
    with _UV_BIN_LOCK:
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
    python = _check_interpreter(project.requires_python)
    proc = run([uv_bin(), *lock_check_args(python)],
               cwd=project.root, check=False, timeout=120, unset=HOST_RESOLUTION_SETTINGS)
    if proc.returncode == 2 and _NEEDS_NETWORK in (proc.stderr or proc.stdout):
        # A package with dynamic metadata (version or dependencies from its build
        # backend) and a uv cache without that backend: the check needs the index once.
        proc = run([uv_bin(), *lock_check_args(python, offline=False)],
                   cwd=project.root, check=False, timeout=300, unset=HOST_RESOLUTION_SETTINGS)
    lock_verdict(project, proc.returncode, proc.stderr or proc.stdout)
    remember_lock_check(memo)


# uv's variables that change what a lock resolves to. The image's `uv sync --frozen`
# never sees the host's, so they must not make a lock that the project's own
# files ([tool.uv], uv.toml) are satisfied with "out of date".
HOST_RESOLUTION_SETTINGS = frozenset({
    "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_FIND_LINKS", "UV_NO_INDEX",
    "UV_INDEX_STRATEGY", "UV_KEYRING_PROVIDER", "UV_PRERELEASE", "UV_RESOLUTION", "UV_FORK_STRATEGY",
    "UV_EXCLUDE_NEWER", "UV_CONSTRAINT", "UV_OVERRIDE", "UV_BUILD_CONSTRAINT", "UV_NO_SOURCES",
    "UV_NO_BINARY", "UV_NO_BUILD", "UV_TORCH_BACKEND", "UV_CONFIG_FILE",
})


def lock_memo(project: Project) -> Path:
    """Where a passing check of exactly these files (and this uv) is remembered."""
    files = [project.root / "pyproject.toml", project.root / "uv.lock",
             *(project.root / p.path / "pyproject.toml" for p in project.local_packages if p.pyproject)]
    h = hashlib.sha256(host_uv_version().encode())
    for f in files:
        h.update(f.read_bytes())
    return cache_dir() / "lock-checks" / h.hexdigest()


def remember_lock_check(memo: Path) -> None:
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.touch()


def lock_check_args(python: str, *, offline: bool = True) -> list[str]:
    """`uv lock --check` from local files alone (unless ``offline`` is False) with
    ``python`` (a path or a version request) as the interpreter; never downloads one."""
    return ["lock", "--check", *(["--offline"] if offline else []), "--no-progress", "--no-python-downloads",
            "--python", python]


# uv's hint when an offline run needed a package its cache does not hold.
_NEEDS_NETWORK = "the network was disabled"


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
    if _NEEDS_NETWORK in detail:
        raise ToolError(
            f"could not check {project.root / 'uv.lock'} against pyproject.toml: a package with dynamic metadata "
            f"needs its build backend, which uv can neither find in its cache nor download {where}:\n{detail}",
            fix=f"run `uv lock --check` in {project.root} once with network access (it puts the build backend in "
                "uv's cache; unset UV_OFFLINE), then run raybake again")
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


def export_cyclonedx(project: Project, args: tuple[str, ...]) -> str:
    """uv's CycloneDX 1.5 SBOM of the lock's selection (``args``), with hashes, from the lock alone."""
    return run([uv_bin(), "export", "--frozen", "--format", "cyclonedx1.5", "--preview-features", "sbom-export",
                "--no-progress", *args], cwd=project.root, timeout=120).stdout



def audit(project: Project, args: tuple[str, ...], service_url: str) -> dict:
    """`uv audit` of the lock as it stands (``args``: the --no-extra/--no-group
    flags that leave out what a spec does not select) against the OSV-compatible
    service at ``service_url``: uv's JSON report.

    ``--no-index``: the vulnerability service is the one thing asked; uv's
    project statuses would also ask every package index (private ones included,
    with their credentials) for each package."""
    import json

    proc = run([uv_bin(), "audit", "--frozen", "--no-index", "--preview-features", "audit-command,json-output",
                "--output-format", "json", "--no-progress", "--service-url", service_url, *args],
               cwd=project.root, check=False, timeout=300)
    detail = (proc.stderr or "").strip()
    if proc.returncode in (0, 1):  # 1: vulnerabilities found
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError:
            detail = detail or proc.stdout.strip()
    if "unrecognized subcommand" in detail:
        raise ToolError(f"the uv raybake runs ({uv_bin()}) has no `uv audit` command:\n{detail}",
                        fix="install a uv that has it (0.13 or later) where raybake is installed: "
                            "`uv tool install --reinstall raybake`, or `pip install -U 'uv>=0.13'` in raybake's "
                            "environment")
    if "error sending request" in detail or "Request failed after" in detail:
        raise ToolError(f"the vulnerability service {service_url} could not be reached:\n{detail}",
                        fix="check network access and proxy settings (HTTPS_PROXY, SSL_CERT_FILE) to it, or set "
                            "RAYBAKE_AUDIT_SERVICE_URL (--service-url) to an OSV-compatible service this machine "
                            "can reach")
    if "error decoding response body" in detail or "status client error" in detail \
            or "status server error" in detail:
        raise ToolError(f"{service_url} did not answer as an OSV vulnerability service:\n{detail}",
                        fix="set RAYBAKE_AUDIT_SERVICE_URL (--service-url) to the base URL of an OSV API "
                            "(POST /v1/querybatch, GET /v1/vulns/ID), e.g. https://api.osv.dev/")
    if "offline mode" in detail:
        raise ToolError(f"`uv audit` needs the network to ask {service_url}, and uv is told to stay offline:\n{detail}",
                        fix="unset UV_OFFLINE for raybake audit (and build --audit)")
    raise ToolError(f"`uv audit` of {project.root / 'uv.lock'} failed:\n{detail}",
                    fix="fix what uv reports above")


# uv's wheels name the CPU with these tags (manylinux2014: glibc 2.17 and later).
_WHEEL_ARCH = {"linux/amd64": "manylinux_2_17_x86_64", "linux/arm64": "manylinux_2_17_aarch64",
               "linux/ppc64le": "manylinux_2_17_ppc64le", "linux/s390x": "manylinux_2_17_s390x"}
SIMPLE_INDEX = "https://pypi.org/simple/uv/"


def uv_bin_for(platform: str, version: str, *, host: str) -> Path:
    """The binary of uv ``version`` to put into an image for ``platform``: the one
    installed here when it is that very release on the host's platform, else the
    one in uv's wheel for that platform on PyPI (checked against the index's
    sha256), fetched once into raybake's cache."""
    if platform == host and host_uv_version() == version:
        return uv_bin()
    tag = _WHEEL_ARCH.get(platform)
    if tag is None:
        raise ToolError(f"raybake has no uv binary for the platform {platform}",
                        fix=f"set platform to one of: {', '.join(_WHEEL_ARCH)}")
    target = cache_dir() / "uv-bin" / version / platform.replace("/", "-") / "uv"
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
            raise ToolError(f"cannot fetch uv {version} for {platform} from PyPI: {exc}",
                            fix="check HTTPS access to pypi.org (proxy, SSL_CERT_FILE), or set uv_version "
                                f"to the uv installed here ({host_uv_version()})") from None

    index = json.loads(fetch(SIMPLE_INDEX, "application/vnd.pypi.simple.v1+json"))
    wheel = next((f for f in index["files"]
                  if f["filename"].startswith(f"uv-{version}-") and tag in f["filename"]), None)
    if wheel is None:
        raise ToolError(f"PyPI has no uv {version} wheel for {platform}",
                        fix="set uv_version to a uv release on https://pypi.org/project/uv/ that has one")
    data = fetch(wheel["url"])
    if hashlib.sha256(data).hexdigest() != wheel["hashes"]["sha256"]:
        raise ToolError(f"the uv wheel {wheel['filename']} does not match PyPI's sha256", fix="try again")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        binary = archive.read(f"uv-{version}.data/scripts/uv")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, binary, mode=0o755)
    return target

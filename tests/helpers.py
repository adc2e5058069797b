"""Helpers for tests: run the real raybake and docker commands."""

from __future__ import annotations

import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# A base image digest for pure planning tests (no engine to resolve one).
BASE_DIGEST = "sha256:" + "b" * 64


def raybake(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the real `raybake` console script."""
    exe = Path(sys.executable).parent / "raybake"
    proc = subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"raybake {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@contextmanager
def http_server(handler: Callable[..., BaseHTTPRequestHandler], *,
                tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """``handler`` served on a free 127.0.0.1 port from a thread (HTTPS with ``tls``);
    yields the base URL. Ray heads and builds on the host network reach it too."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def input_hash(root: Path, env: dict[str, str]) -> str:
    """The input hash of the project's one spec under ``env`` (its label in raybake's image)."""
    from raybake.planner import identities_for
    from raybake.project import load_project

    (plan,) = identities_for(load_project(root), environ=env)
    return plan.input_hash.hexdigest


def job_runtime_env(root: Path, env: dict[str, str], stage_dir: Path) -> dict:
    """The runtime_env raybake's job configs carry, for a project whose image has no Ray
    (job-config refuses such an image; its working_dir, PYTHONPATH and env_vars are still raybake's)."""
    from raybake.jobs import runtime_env
    from raybake.planner import identities_for
    from raybake.project import load_project
    from raybake.stage import stage_project

    project = load_project(root)
    (plan,) = identities_for(project, environ=env)
    return runtime_env(plan, stage_project(project, stage_dir, plan.spec))


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def billion_laughs(depth: int = 9) -> str:
    """An image spec whose `python` expands to 9**depth strings through nested
    YAML aliases (under 600 bytes)."""
    names = "abcdefghijk"
    lines = ["python:", '  - &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"  - &{names[i]} [" + ", ".join([f"*{names[i - 1]}"] * 9) + "]" for i in range(1, depth)]
    return "\n".join(lines) + "\n"


def processes_mentioning(needle: str) -> list[str]:
    """Command lines of running processes that mention ``needle``."""
    from pathlib import Path

    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in text:
            found.append(text)
    return found


def make_wheel(folder: Path, name: str, version: str, files: dict[str, str] | None = None) -> Path:
    """A pure-Python wheel of distribution ``name`` holding ``files`` (default: one
    module of that name that knows its version), with a correct RECORD."""
    import base64
    import hashlib
    import zipfile

    dist = name.replace("-", "_")
    files = dict(files or {f"{dist}/__init__.py": f"__version__ = {version!r}\n"})
    info = f"{dist}-{version}.dist-info"
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: raybake-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    rows = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
            f"{len(text.encode())}" for path, text in files.items()]
    files[f"{info}/RECORD"] = "\n".join([*rows, f"{info}/RECORD,,"]) + "\n"
    wheel = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(zipfile.ZipInfo(path, (1980, 1, 1, 0, 0, 0)), text)
    return wheel


# ---- what tests make, and its removal ------------------------------------------------------------

# Every repository name handed out in this session: the session-end check looks for these.
HANDED_OUT: set[str] = set()

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"])


def new_repository(kind: str = "t") -> str:
    """A repository name nobody else uses (``raybake-test-...``), recorded for the session-end check."""
    import uuid

    name = f"raybake-test-{kind}{uuid.uuid4().hex[:12]}"
    HANDED_OUT.add(name)
    return name


def _registry_request(registry: str, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://{registry}/v2/{path}", method=method,
                                     headers={"Accept": MANIFEST_TYPES})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def registry_tags(registry: str, repository: str) -> list[str]:
    """The tags of ``repository`` in the registry at ``registry`` (none when it is absent)."""
    import json

    status, _, body = _registry_request(registry, f"{repository}/tags/list")
    return (json.loads(body).get("tags") or []) if status == 200 else []


def registry_blob(registry: str, repository: str, digest: str) -> tuple[int, bytes]:
    status, _, body = _registry_request(registry, f"{repository}/blobs/{digest}")
    return status, body


def registry_catalog(registry: str) -> list[str]:
    """The repositories the registry lists (some may hold no tag any more)."""
    import json

    status, _, body = _registry_request(registry, "_catalog?n=1000")
    assert status == 200, body
    return json.loads(body).get("repositories") or []


def registry_repositories(registry: str) -> list[str]:
    """The repositories of the registry that still hold a tag."""
    return [repo for repo in registry_catalog(registry) if registry_tags(registry, repo)]


def registry_answers(registry: str) -> bool:
    try:
        return _registry_request(registry, "")[0] == 200
    except OSError:
        return False


def local_images_of(repository: str) -> list[str]:
    """Local image names (REPO:TAG) of ``repository``, under any registry host, and of
    the repositories a test names after it (``REPOSITORY-other``)."""
    listed = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split()
    return [name for name in listed if named_after(name, repository)]


def named_after(name: str, repository: str) -> bool:
    """Is the image name REPO:TAG ``repository``'s or of a repository named after it?"""
    return name.rsplit(":", 1)[0].rsplit("/", 1)[-1].startswith(repository)


def remove_repository(repository: str, registry: str | None = None) -> None:
    """Remove every local image of ``repository`` (under any host) and, given the
    registry, every manifest of it there. For test clean-ups: never fails."""
    for name in local_images_of(repository):
        docker("image", "rm", "--force", name, check=False)
    if registry is None:
        return
    if repository.startswith(f"{registry}/"):
        repository = repository.removeprefix(f"{registry}/")
    for tag in registry_tags(registry, repository):
        _, headers, _ = _registry_request(registry, f"{repository}/manifests/{tag}", method="HEAD")
        if digest := {k.lower(): v for k, v in headers.items()}.get("docker-content-digest"):
            _registry_request(registry, f"{repository}/manifests/{digest}", method="DELETE")


# ---- a local OSV-compatible vulnerability service ------------------------------------------------

OSV_RECORDS = Path(__file__).parent / "data" / "osv"


class OSVServer:
    """What `uv audit` asks of an OSV service, answered from real OSV records
    (tests/data/osv, one file per record, copied with its ID): POST
    /v1/querybatch (each query's matching IDs) and GET /v1/vulns/ID (the record).
    ``requests`` records every query, so a test can tell what was audited."""

    def __init__(self, records: Path = OSV_RECORDS) -> None:
        import json

        self.records = {r["id"]: r for r in (json.loads(p.read_text()) for p in sorted(records.glob("*.json")))}
        self.queries: list[tuple[str, str]] = []  # (package, version) asked about
        self.url = ""

    def affecting(self, name: str, version: str) -> list[dict]:
        """The records whose affected ranges or versions hold ``name`` ``version`` (PyPI)."""
        from packaging.utils import canonicalize_name
        from packaging.version import Version

        found = []
        for record in self.records.values():
            for affected in record.get("affected", ()):
                package = affected.get("package", {})
                if package.get("ecosystem") != "PyPI" or canonicalize_name(package["name"]) != canonicalize_name(name):
                    continue
                listed = {Version(v) for v in affected.get("versions", ())}
                if Version(version) in listed or any(_in_range(Version(version), r["events"])
                                                     for r in affected.get("ranges", ()) if r["type"] == "ECOSYSTEM"):
                    found.append(record)
                    break
        return found

    def __enter__(self) -> OSVServer:
        import json

        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                if self.path.rstrip("/") != "/v1/querybatch":
                    return self._answer(404, {"code": 5, "message": "Not Found"})
                queries = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["queries"]
                results = []
                for q in queries:
                    server.queries.append((q["package"]["name"], q["version"]))
                    vulns = [{"id": r["id"], "modified": r["modified"]}
                             for r in server.affecting(q["package"]["name"], q["version"])]
                    results.append({"vulns": vulns} if vulns else {})
                self._answer(200, {"results": results})

            def do_GET(self) -> None:  # noqa: N802
                record = server.records.get(self.path.rsplit("/", 1)[-1]) if self.path.startswith("/v1/vulns/") else None
                if record is None:
                    return self._answer(404, {"code": 5, "message": "Bug not found."})
                self._answer(200, record)

            def log_message(self, *args: object) -> None:
                pass

        self._serving = http_server(Handler)
        self.url = self._serving.__enter__() + "/"
        return self

    def __exit__(self, *exc: object) -> None:
        self._serving.__exit__(None, None, None)


def _in_range(version, events: list[dict]) -> bool:
    """OSV's ECOSYSTEM range: affected from an ``introduced`` until the next ``fixed``."""
    from packaging.version import Version

    affected = False
    for event in sorted(events, key=lambda e: Version("0") if e.get("introduced") == "0"
                        else Version(next(iter(e.values())))):
        if "introduced" in event and (event["introduced"] == "0" or version >= Version(event["introduced"])):
            affected = True
        elif "fixed" in event and version >= Version(event["fixed"]):
            affected = False
    return affected

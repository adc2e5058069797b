"""Registries that misbehave: a push that stalls, a query that hangs, a reply
that is not a registry's. Each is a real HTTP server on 127.0.0.1 (the daemon
talks plain HTTP to 127.0.0.1 registries) driven by the real docker CLI."""

import http.server
import threading

import pytest
from helpers import docker, processes_mentioning, raybake
from test_errors import assert_clean_error

pytestmark = [pytest.mark.engine, pytest.mark.registry]


class FakeRegistry(http.server.BaseHTTPRequestHandler):
    """Answers /v2/ like a registry; what it does with the rest is the server's ``mode``:
    "stall-upload": no manifests or blobs, accepts an upload, then never answers its data;
    "stall-query": never answers a manifest request; "junk": a web page for everything."""

    protocol_version = "HTTP/1.1"

    def _reply(self, code: int, headers: tuple[tuple[str, str], ...] = (), body: bytes = b"") -> None:
        self.send_response(code)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _stall(self) -> None:
        self.server.stalled.append(f"{self.command} {self.path}")
        self.server.release.wait(600)
        self.close_connection = True

    def _answer(self) -> None:
        mode = self.server.mode
        if mode == "junk":
            return self._reply(200, (("Content-Type", "text/html"),), b"<html><body>Welcome to nginx!</body></html>")
        if self.path == "/v2/":
            return self._reply(200)
        if mode == "stall-query" and "/manifests/" in self.path:
            return self._stall()
        if self.command == "POST" and "/blobs/uploads/" in self.path:  # maybe ?mount=...: no, upload it
            location = self.path.split("?")[0] + "upload-1"
            return self._reply(202, (("Location", location), ("Docker-Upload-UUID", "upload-1"), ("Range", "0-0")))
        if self.command in ("PATCH", "PUT"):
            return self._stall()
        self._reply(404, (("Content-Type", "application/json"),),
                    b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
                    if "/manifests/" in self.path else b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')

    do_GET = do_HEAD = do_POST = do_PATCH = do_PUT = _answer

    def handle_one_request(self) -> None:
        # The daemon tries TLS first: answer it the way Go's HTTP servers do, so it falls back to HTTP.
        if self.rfile.peek(1)[:1] == b"\x16":
            self.wfile.write(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
            self.close_connection = True
            return
        super().handle_one_request()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_registry():
    servers = []

    def start(mode: str) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
        server.daemon_threads = True
        server.mode, server.stalled, server.release = mode, [], threading.Event()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.release.set()
        server.shutdown()


def test_a_stalled_push_times_out_and_a_retry_only_pushes(engine, copy_fixture, unique_repo, fake_registry):
    registry = fake_registry("stall-upload")
    root = copy_fixture("small")
    with (root / "pyproject.toml").open("a") as f:
        f.write("\n[tool.raybake]\ncache_to = []\n")  # the image's own push stalls, not a cache export
    env = engine.env(RAYBAKE_REPOSITORY=f"{registry}/{unique_repo}", RAYBAKE_PUSH_TIMEOUT="4")
    ref = raybake("tag", "-C", str(root), env=env).stdout.strip()
    proc = raybake("build", "--push", "-C", str(root), env=env, check=False, timeout=300)
    assert_clean_error(proc, f"pushing {ref} did not finish within 4 s", "RAYBAKE_PUSH_TIMEOUT",
                       "only pushes")
    assert "raybake: building" in proc.stderr
    assert [p for p in processes_mentioning(ref) if p.startswith("docker")] == []  # the push was stopped, not left running
    assert docker("image", "inspect", ref, check=False).returncode == 0  # built, verified, tagged here
    # The retry goes straight to the push (and the registry still stalls).
    again = raybake("build", "--push", "-C", str(root), env=env, check=False, timeout=120)
    assert_clean_error(again, "did not finish within 4 s")
    assert "raybake: pushing" in again.stderr and "raybake: building" not in again.stderr
    docker("image", "rm", ref)


def test_a_hanging_registry_query_times_out(engine, copy_fixture, fake_registry):
    registry = fake_registry("stall-query")
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_REPOSITORY=f"{registry}/team/small", RAYBAKE_REGISTRY_TIMEOUT="2")
    proc = raybake("build", "--push", "-C", str(root), env=env, check=False, timeout=120)
    assert_clean_error(proc, "the registry did not answer within 2 s", "RAYBAKE_REGISTRY_TIMEOUT")


def test_a_registry_timeout_that_is_not_a_number_is_an_error(engine, copy_fixture):
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_REPOSITORY="127.0.0.1:1/team/small", RAYBAKE_REGISTRY_TIMEOUT="soon")
    assert_clean_error(raybake("build", "--push", "-C", str(root), env=env, check=False),
                       "RAYBAKE_REGISTRY_TIMEOUT='soon' is not a number of seconds")


def test_a_garbage_reply_is_not_taken_for_silence(engine, copy_fixture, fake_registry):
    registry = fake_registry("junk")
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_REPOSITORY=f"{registry}/team/small")
    proc = raybake("build", "--push", "-C", str(root), env=env, check=False, timeout=120)
    assert_clean_error(proc, "makes no sense as a registry's", "names a Docker registry")
    assert "did not answer" not in proc.stderr

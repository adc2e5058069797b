"""Docker's error texts, classified in one place, on outputs recorded from a real engine."""

from pathlib import Path

import pytest

from raybake.errors import EngineError, InvalidReference
from raybake.tools.docker import _build_fix, _engine_error
from raybake.tools.docker_errors import DockerFailure, classify

DATA = Path(__file__).parent / "data" / "docker_errors"
EXPECTED = {
    "daemon-down": DockerFailure.DAEMON_DOWN,
    "daemon-denied": DockerFailure.DAEMON_DENIED,
    "buildx-missing": DockerFailure.BUILDX_MISSING,
    "bad-name": DockerFailure.BAD_NAME,
    "not-found": DockerFailure.NOT_FOUND,
    "push-no-such-image": DockerFailure.NOT_FOUND,
    "unauthorized": DockerFailure.UNAUTHORIZED,
    "unreachable": DockerFailure.UNREACHABLE,
    "base-unavailable": DockerFailure.BASE_UNAVAILABLE,
    "no-bridge": DockerFailure.NO_BRIDGE,
    "index-unreachable": DockerFailure.INDEX_UNREACHABLE,
    "tls": DockerFailure.TLS,
}


def test_every_recording_is_expected():
    assert {p.stem for p in DATA.glob("*.txt")} == set(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_recorded_outputs_are_classified(name):
    kind, evidence = classify((DATA / f"{name}.txt").read_text())
    assert kind is EXPECTED[name] and evidence


def test_engine_failures_become_typed_errors():
    assert isinstance(_engine_error((DATA / "daemon-down.txt").read_text()), EngineError)
    bad = _engine_error((DATA / "bad-name.txt").read_text())
    assert isinstance(bad, InvalidReference) and "must be lowercase" in bad.message
    assert _engine_error((DATA / "not-found.txt").read_text()) is None  # the request failed, not the engine


@pytest.mark.parametrize(("name", "fix"), [
    ("no-bridge", "network: host"), ("base-unavailable", "docker pull"), ("tls", "ca_bundle"),
    ("index-unreachable", "package index is unreachable"),
])
def test_build_failures_get_their_fix(name, fix):
    assert fix in _build_fix((DATA / f"{name}.txt").read_text())


def test_an_identical_image_stored_first_is_recognised():
    from raybake.tools.docker import _ALREADY_STORED

    text = ('ERROR: failed to solve: image "moby-dangling@sha256:' + "2" * 64 + '": already exists')
    assert _ALREADY_STORED.search(text).group(1) == "sha256:" + "2" * 64


def test_a_user_outside_the_docker_group_is_told_so_not_to_start_the_daemon():
    error = _engine_error((DATA / "daemon-denied.txt").read_text())
    assert isinstance(error, EngineError) and "may not use the Docker daemon" in error.message
    assert "docker group" in error.fix and "start the Docker daemon" not in error.fix


def test_a_daemon_that_never_answers_is_an_engine_error_with_a_fix(tmp_path, monkeypatch):
    """A socket that accepts and says nothing, as a hung dockerd does: the real docker CLI waits on it."""
    import socket
    import threading

    from raybake.tools import docker

    path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(8)
    held = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # and never answer
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    monkeypatch.setenv("RAYBAKE_DOCKER_TIMEOUT", "2")
    try:
        with pytest.raises(EngineError) as info:
            docker.local_image("raybake-test/anything:x")
        assert "did not answer `docker image` within 2 s" in info.value.message
        assert "docker info" in info.value.fix and "RAYBAKE_DOCKER_TIMEOUT" in info.value.fix
    finally:
        stop.set()
        server.close()
        for conn in held:
            conn.close()

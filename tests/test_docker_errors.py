"""Docker's error texts, classified in one place, on outputs recorded from a real engine."""

from pathlib import Path

import pytest

from raybake.errors import EngineError, InvalidReference
from raybake.tools.docker import _build_fix, _engine_error
from raybake.tools.docker_errors import DockerFailure, classify

DATA = Path(__file__).parent / "data" / "docker_errors"
EXPECTED = {
    "daemon-down": DockerFailure.DAEMON_DOWN,
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

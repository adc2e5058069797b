"""What went wrong, from what the docker CLI and BuildKit printed: the one place
raybake reads Docker's error texts. Pure; tests/test_docker_errors.py checks it
against outputs recorded from a real engine (tests/data/docker_errors/)."""

from __future__ import annotations

import enum
import re


class DockerFailure(enum.Enum):
    DAEMON_DOWN = "the Docker daemon is not reachable"
    DAEMON_DENIED = "this user may not use the Docker daemon's socket"
    BUILDX_MISSING = "the buildx plugin is missing"
    BAD_NAME = "Docker refuses the image name"
    NOT_FOUND = "no such image or tag"
    UNAUTHORIZED = "the registry refused access"
    BASE_UNAVAILABLE = "the base image is neither local nor pullable"
    NO_BRIDGE = "the daemon has no bridge network"
    TLS = "a TLS certificate was not trusted"
    INDEX_UNREACHABLE = "the package index could not be reached"
    NO_BUILD = "a source distribution would be built where index secrets are"
    UNREACHABLE = "the registry did not answer"
    UNKNOWN = "something else"


# First match wins: a base image that cannot be pulled also mentions a failed
# lookup, which alone means an unreachable registry.
_PATTERNS: tuple[tuple[DockerFailure, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.I)) for kind, pattern in (
        (DockerFailure.NO_BUILD, r"Distribution `[^`\n]+` can't be installed because it is marked as `--no-build`"),
        (DockerFailure.DAEMON_DOWN, r"Cannot connect to the Docker daemon|Is the docker daemon running"),
        # Before UNAUTHORIZED, whose "denied" it also holds: the daemon runs, this user may not reach it.
        (DockerFailure.DAEMON_DENIED, r"permission denied while trying to connect to the Docker (?:daemon socket|API)"
                                      r"[^\n]*|dial unix \S+: connect: permission denied"),
        (DockerFailure.BUILDX_MISSING, r"'?buildx'? is not a docker command|buildx component is missing"),
        (DockerFailure.BAD_NAME, r"invalid reference format[^\n]*|repository name must not be more than \d+ "
                                 r"characters|invalid tag format[^\n]*"),
        (DockerFailure.BASE_UNAVAILABLE, r"failed to resolve source metadata"),
        (DockerFailure.NO_BRIDGE, r"network bridge not found"),
        (DockerFailure.UNAUTHORIZED, r"\b401\b|unauthorized|pull access denied|denied"),
        (DockerFailure.NOT_FOUND, r"no such manifest|manifest unknown|: not found\b|tag does not exist"),
        (DockerFailure.TLS, r"certificate|x509|tls handshake"),
        (DockerFailure.INDEX_UNREACHABLE, r"Failed to fetch|error sending request|dns error"),
        (DockerFailure.UNREACHABLE, r"connection refused|no such host|i/o timeout|dial tcp|connection reset"
                                    r"|\bEOF\b|network is unreachable"),
    ))


def classify(text: str) -> tuple[DockerFailure, str]:
    """The failure ``text`` shows, and the part of it that shows it."""
    for kind, pattern in _PATTERNS:
        if m := pattern.search(text):
            return kind, m.group(0)
    return DockerFailure.UNKNOWN, ""

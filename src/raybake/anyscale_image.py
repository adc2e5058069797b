"""Anyscale's image requirements, and the judgement of an image against them. Pure.

The requirements are those of docs.anyscale.com, "Image requirements"
(configuration/dependency-management/image-requirement). What the image has
comes from its config (docker image inspect) and from raybake's in-image
probe (templates/in_image/anyscale_probe.py, run by raybake.jobs); this
module only compares. A hard requirement unmet refuses the Anyscale job
config; a soft one (the base OS and platform Anyscale names, the Python
packages of the lock) is a warning."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

USER = "ray"
UID = 1000
GID = 100
HOME = "/home/ray"
# The system packages Anyscale lists, each with the command that shows it is
# installed and the Debian/Ubuntu package that brings that command.
SYSTEM_PACKAGES: tuple[tuple[str, str, str], ...] = (
    ("sudo", "sudo", "sudo"),
    ("python", "python", "python-is-python3"),
    ("bash", "bash", "bash"),
    ("openssh-server", "sshd", "openssh-server"),
    ("openssh-client", "ssh", "openssh-client"),
    ("rsync", "rsync", "rsync"),
    ("zip", "zip", "zip"),
    ("unzip", "unzip", "unzip"),
    ("git", "git", "git"),
    ("gdb", "gdb", "gdb"),
    ("curl", "curl", "curl"),
)
COMMANDS = tuple(command for _, command, _ in SYSTEM_PACKAGES)
# The Python packages Anyscale lists (its `google` is the namespace
# google-cloud-storage brings). The job runs the venv, so the lock must have them.
PYTHON_PACKAGES = ("anyscale", "boto3", "google-cloud-storage", "jupyterlab", "packaging", "ray")
MIN_RAY = Version("2.7")
BASE_OS = ("ubuntu", "22.04")
ARCHITECTURE = "amd64"
PROBE_MARK = "@@RAYBAKE@@"  # the probe's report follows it on its standard output

BASE_FIX = "`base: anyscale` in the spec (Anyscale's own base images meet every requirement)"
USER_FIX = (f"`RUN useradd --uid {UID} --gid {GID} --create-home --home-dir {HOME} --shell /bin/bash {USER}` "
            "in the base image")
SUDO_FIX = f"`RUN echo '{USER} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/{USER}` in the base image"
WORKDIR_FIX = (f"end the base image with `USER {USER}` and `WORKDIR {HOME}` (raybake's image ends as a "
               "non-root base's user, in its working directory)")


@dataclass(frozen=True)
class ImageFacts:
    """What an image has, as far as Anyscale's requirements ask."""

    workdir: str  # the image config's WorkingDir ("" when unset: /)
    env: tuple[str, ...]  # the image config's KEY=VALUE entries
    architecture: str  # the image config's, e.g. amd64
    probe: Mapping[str, Any]  # the in-image probe's report


@dataclass(frozen=True)
class Shortfall:
    requirement: str  # what Anyscale requires
    found: str  # what the image has instead
    fix: str  # what to add


@dataclass(frozen=True)
class Judgement:
    missing: tuple[Shortfall, ...]  # hard requirements unmet: the job cannot start
    soft: tuple[Shortfall, ...]  # what Anyscale asks for that a job may do without

    @property
    def ok(self) -> bool:
        return not self.missing


def judge(facts: ImageFacts) -> Judgement:
    """The image's shortfalls against Anyscale's image requirements."""
    probe = facts.probe
    user: Mapping[str, Any] | None = probe.get("user")
    missing: list[Shortfall] = []
    want_user = f"user `{USER}` with uid {UID} and gid {GID}"
    if user is None:
        missing.append(Shortfall(want_user, f"the image has no user `{USER}`", USER_FIX))
    elif (user["uid"], user["gid"]) != (UID, GID):
        missing.append(Shortfall(want_user, f"`{USER}` has uid {user['uid']} and gid {user['gid']}",
                                 f"`RUN usermod --uid {UID} --gid {GID} {USER}` in the base image"))

    if not (sudo := probe.get("sudo") or {}).get("ok"):
        if user is None:
            found = f"there is no user `{USER}`"
        elif not probe.get("tools", {}).get("sudo"):
            found = "sudo is not installed"
        else:
            found = f"`sudo -n true` as `{USER}` failed: {(sudo.get('output') or '').strip()[:300] or 'no output'}"
        missing.append(Shortfall(f"`{USER}` runs sudo without a password", found, SUDO_FIX))

    env = dict(entry.partition("=")[::2] for entry in facts.env)
    home = env.get("HOME") or (user or {}).get("home")
    if home is None:
        missing.append(Shortfall(f"HOME {HOME}", f"there is no user `{USER}`, so no home", USER_FIX))
    elif home.rstrip("/") != HOME and "HOME" in env:
        missing.append(Shortfall(f"HOME {HOME}", f"the image's env sets HOME {home}",
                                 "no other HOME in the image's env (the spec's env, the base image's ENV)"))
    elif home.rstrip("/") != HOME:
        missing.append(Shortfall(f"HOME {HOME}", f"`{USER}`'s home is {home}",
                                 f"`RUN usermod --home {HOME} --move-home {USER}` in the base image"))

    workdir = facts.workdir.rstrip("/") or "/"
    want_workdir = f"WORKDIR {HOME}, which `{USER}` reads and writes"
    if workdir != HOME:
        missing.append(Shortfall(want_workdir, f"the image's WORKDIR is {workdir}", WORKDIR_FIX))
    elif user is not None and not (probe.get("dir_access") or {}).get("writable"):
        state = "does not exist" if not (probe.get("dir_access") or {}).get("exists") else \
            f"is not readable and writable by `{USER}`"
        missing.append(Shortfall(want_workdir, f"{HOME} {state}",
                                 f"`RUN mkdir -p {HOME} && chown {USER}:{GID} {HOME}` in the base image"))

    tools: Mapping[str, str | None] = probe.get("tools", {})
    absent = [(name, command, apt) for name, command, apt in SYSTEM_PACKAGES if not tools.get(command)]
    if absent:
        missing.append(Shortfall(
            "the system packages " + ", ".join(name for name, _, _ in SYSTEM_PACKAGES),
            "not on PATH: " + ", ".join(name if name == command else f"{name} (`{command}`)"
                                        for name, command, _ in absent),
            f"`runtime_apt_packages: [{', '.join(apt for _, _, apt in absent)}]` in the spec"))

    soft: list[Shortfall] = []
    os_release: Mapping[str, str] = probe.get("os") or {}
    if (os_release.get("ID"), os_release.get("VERSION_ID")) != BASE_OS:
        soft.append(Shortfall(f"base image {':'.join(BASE_OS)}",
                              f"the image is {os_release.get('PRETTY_NAME') or 'of an unknown OS'}", BASE_FIX))
    if facts.architecture != ARCHITECTURE:
        soft.append(Shortfall(f"platform linux/{ARCHITECTURE}",
                              f"the image is for {facts.architecture or 'an unknown one'}",
                              f"`platform: linux/{ARCHITECTURE}` in the spec"))
    return Judgement(tuple(missing), tuple(soft))


def parse_probe(output: str) -> dict[str, Any] | None:
    """The probe's report from its standard output, or None when it did not finish."""
    if PROBE_MARK not in output:
        return None
    report: dict[str, Any] = json.loads(output.rsplit(PROBE_MARK, 1)[1])
    return report


def missing_python_packages(locked: Mapping[str, str | None]) -> list[str]:
    """The Python packages Anyscale requires that the lock lacks (Ray older than 2.7 counts as lacking)."""
    missing = [p for p in PYTHON_PACKAGES if p not in locked]
    ray = locked.get("ray")
    try:
        old = ray is not None and Version(ray) < MIN_RAY
    except InvalidVersion:
        old = False
    return [*missing, f"ray>={MIN_RAY}"] if old else missing


def refusal(spec_name: str, image: str, judgement: Judgement) -> tuple[str, str]:
    """(message, fix) of the error that refuses an image missing hard requirements."""
    lines = "\n".join(f"  - {s.requirement}: {s.found}" for s in judgement.missing)
    message = (f"the image of spec '{spec_name}' ({image}) does not meet Anyscale's image requirements "
               f"(docs.anyscale.com, \"Image requirements\"), so an Anyscale job cannot start in it:\n{lines}")
    fixes = list(dict.fromkeys(s.fix for s in judgement.missing))
    fix = (f"{BASE_FIX}; or, on a base_image of your own: " + "; ".join(fixes)
           + "; then `raybake build --push` and run this again")
    return message, fix


def warning(spec_name: str, judgement: Judgement) -> str | None:
    """The warning for soft requirements unmet, or None."""
    if not judgement.soft:
        return None
    return (f"the image of spec '{spec_name}' differs from what Anyscale's image requirements ask: "
            + "; ".join(f"{s.requirement}: {s.found} (fix: {s.fix})" for s in judgement.soft))

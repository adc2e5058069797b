"""Limits a user can set through the environment.

Every step that waits on something outside raybake (the network, another
raybake) ends after a bounded time; these are the settings that bound it,
and how many builds run at once."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from raybake.errors import SettingError

# The longest wait a setting may ask for: a week. Waiting on a child's output
# overflows past about 24 days (poll() counts milliseconds in a C int), and no
# build or push needs a week.
MAX_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Seconds:
    variable: str
    default: float
    what: str  # what it bounds, for messages and the README

    def value(self) -> float:
        raw = os.environ.get(self.variable, "").strip()
        if not raw:
            return self.default
        try:
            seconds = float(raw)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds <= 0:
            raise SettingError(f"{self.variable}={raw!r} is not a number of seconds",
                               fix=f"set {self.variable} to a positive number of seconds "
                                   f"(default {self.default:.0f}), or unset it")
        if seconds > MAX_SECONDS:
            raise SettingError(f"{self.variable}={raw!r} is longer than raybake waits for anything "
                               f"({MAX_SECONDS} s, a week)",
                               fix=f"set {self.variable} to at most {MAX_SECONDS} seconds "
                                   f"(default {self.default:.0f}), or unset it")
        return seconds


@dataclass(frozen=True)
class Count:
    variable: str
    default: int
    what: str

    def value(self) -> int:
        raw = os.environ.get(self.variable, "").strip()
        if not raw:
            return self.default
        # ASCII digits only: str.isdigit() also accepts '²', which int() refuses.
        if not re.fullmatch(r"[0-9]+", raw) or int(raw) < 1:
            raise SettingError(f"{self.variable}={raw!r} is not a whole number of at least 1",
                               fix=f"set {self.variable} to 1 or more (default {self.default}), or unset it")
        return int(raw)


LOCK_TIMEOUT = Seconds("RAYBAKE_LOCK_TIMEOUT", 3600, "waiting for another raybake building the same image")
DOCKER_TIMEOUT = Seconds("RAYBAKE_DOCKER_TIMEOUT", 60, "one request to the Docker daemon (inspect, tag)")
REGISTRY_TIMEOUT = Seconds("RAYBAKE_REGISTRY_TIMEOUT", 60, "one registry query (does a tag exist, which image)")
RAY_TIMEOUT = Seconds("RAYBAKE_RAY_TIMEOUT", 60, "connecting to a Ray cluster's dashboard, and each of its answers")
PUSH_TIMEOUT = Seconds("RAYBAKE_PUSH_TIMEOUT", 1800, "pushing one image")
BUILD_TIMEOUT = Seconds("RAYBAKE_BUILD_TIMEOUT", 3600, "one image build (base image pull, package downloads)")
BUILD_JOBS = Count("RAYBAKE_BUILD_JOBS", 4, "images `raybake build --all` builds at the same time "
                   "(on different base images; 1: one after another)")

"""Limits a user can set through the environment.

Every step that waits on something outside raybake (the network, another
raybake) ends after a bounded time; these are the settings that bound it,
and how many builds run at once."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from raybake.errors import SettingError


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
        if not raw.isdigit() or int(raw) < 1:
            raise SettingError(f"{self.variable}={raw!r} is not a whole number of at least 1",
                               fix=f"set {self.variable} to 1 or more (default {self.default}), or unset it")
        return int(raw)


LOCK_TIMEOUT = Seconds("RAYBAKE_LOCK_TIMEOUT", 3600, "waiting for another raybake building the same image")
REGISTRY_TIMEOUT = Seconds("RAYBAKE_REGISTRY_TIMEOUT", 60, "one registry query (does a tag exist, which image)")
PUSH_TIMEOUT = Seconds("RAYBAKE_PUSH_TIMEOUT", 1800, "pushing one image")
BUILD_TIMEOUT = Seconds("RAYBAKE_BUILD_TIMEOUT", 3600, "one image build (base image pull, package downloads)")
BUILD_JOBS = Count("RAYBAKE_BUILD_JOBS", 4, "images `raybake build --all` builds at the same time "
                   "(on different base images; 1: one after another)")

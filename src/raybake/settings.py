"""Time limits a user can raise through the environment.

Every step that waits on something outside raybake (the network, another
raybake) ends after a bounded time; these are the settings that bound it."""

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


LOCK_TIMEOUT = Seconds("RAYBAKE_LOCK_TIMEOUT", 3600, "waiting for another raybake building the same image")
REGISTRY_TIMEOUT = Seconds("RAYBAKE_REGISTRY_TIMEOUT", 60, "one registry query (does a tag exist, which image)")
PUSH_TIMEOUT = Seconds("RAYBAKE_PUSH_TIMEOUT", 1800, "pushing one image")
BUILD_TIMEOUT = Seconds("RAYBAKE_BUILD_TIMEOUT", 3600, "one image build (base image pull, package downloads)")

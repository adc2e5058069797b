"""The pin file, ``raybake-pin.json``: its format, read and written here
(what it holds and how it is kept current: raybake.pin). Light: job configs
read the pinned reference, and planning the recorded base digests, through it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from raybake.errors import ProjectError, UnknownPinVersion

PIN_FILE = "raybake-pin.json"
PIN_VERSION = 2
OLD_PIN_VERSIONS = (1,)  # read (no "bases"), then rewritten as PIN_VERSION


def pin_path(project_root: Path) -> Path:
    return Path(project_root) / PIN_FILE


@dataclass(frozen=True)
class Pin:
    images: Mapping[str, str]  # spec name -> reference
    bases: Mapping[str, str]  # base image -> the digest it resolved to (names carrying a digest are not listed)


def render_pin(pin: Pin) -> str:
    """The canonical text of a pin: stable, so a change touches only its own lines."""
    return json.dumps({"version": PIN_VERSION, "images": dict(pin.images), "bases": dict(pin.bases)},
                      indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def parse_pin(text: str, where: str = PIN_FILE) -> Pin:
    """The pin in ``text``; ProjectError when it is not a valid pin."""
    fix = "regenerate it with `raybake pin` (after a merge conflict, too) and commit it"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProjectError(f"{where} is not valid JSON: {exc}", fix=fix) from None
    if not isinstance(data, dict):
        raise ProjectError(f"{where} must hold a JSON object, not {type(data).__name__}", fix=fix)
    version = data.get("version")
    if version != PIN_VERSION and version not in OLD_PIN_VERSIONS:
        if version is not None:  # a format raybake does not know: never rewritten over
            newer = isinstance(version, int) and version > PIN_VERSION
            raise UnknownPinVersion(
                f"{where} has pin format version {version!r}; this raybake reads version {PIN_VERSION}",
                fix="upgrade raybake to the release that wrote it" if newer else
                f"set \"version\": {PIN_VERSION} if it was edited by hand, or delete the file and run `raybake pin`")
        raise ProjectError(f"{where} has no valid \"version\" (expected {PIN_VERSION}, got {version!r})",
                           fix=fix)
    images = data.get("images")
    if not _string_map(images):
        raise ProjectError(f"{where}: \"images\" must map spec names to references (strings)", fix=fix)
    bases = data.get("bases", {}) if version in OLD_PIN_VERSIONS else data.get("bases")
    if not _string_map(bases):
        raise ProjectError(f"{where}: \"bases\" must map base images to digests (strings)", fix=fix)
    return Pin(dict(images), dict(bases))


def _string_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def read_pin(project_root: Path) -> Pin | None:
    """The project's pin, or None when it has none."""
    path = pin_path(project_root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(f"cannot read {path}: {exc}",
                           fix="regenerate it with `raybake pin` and commit it") from None
    return parse_pin(text, str(path))


def pinned_reference(project_root: Path, spec_name: str) -> str | None:
    """The pinned reference of one spec; None when there is no pin or it lacks the spec.

    The pin is taken as written: keeping it current is the job of `raybake pin`
    (the pre-commit hook)."""
    pin = read_pin(project_root)
    return None if pin is None else pin.images.get(spec_name)

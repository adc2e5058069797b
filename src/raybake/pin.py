"""The image pin: ``raybake-pin.json``, committed next to ``uv.lock``.

For every image spec it records the reference the current lock produces (what
``raybake tag --all`` prints), so job configs name the right image and a diff
shows when a commit changes it; and, once ``raybake pin --update-bases`` has
recorded them, each base image's digest, which the tags hash: builds start
from exactly that base until ``--update-bases`` records another. The pre-commit hooks in
``.pre-commit-hooks.yaml`` keep it honest: ``raybake pin`` rewrites a stale pin
and says so (exit 0); pre-commit then fails the hook, as it fails any hook that
changes a file, until the rewritten pin is staged. ``--check`` changes nothing
and exits 1 for a stale pin.

Format (sorted keys, 2-space indent, trailing newline)::

    {
      "bases": {
        "python:3.11-slim-bookworm": "sha256:..."
      },
      "images": {
        "default": "my-app:default-0123456789abcdef"
      },
      "version": 2
    }

Computing and checking the pin needs neither the Docker daemon nor the
network; only ``--update-bases`` (which records the bases' digests) and
:func:`require_present` ask the image store or a registry. A base the pin does
not record is hashed and built from by name."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from raybake.errors import ImageMissing, ProjectError, StaleError, UnknownPinVersion
from raybake.files import atomic_write
from raybake.project import Project

PIN_FILE = "raybake-pin.json"
PIN_VERSION = 2
OLD_PIN_VERSIONS = (1,)  # read (no "bases"), then rewritten as PIN_VERSION


@dataclass(frozen=True)
class PinChange:
    """One entry that differs between the pin on disk and the current lock."""

    name: str
    old: str | None  # None: it was not pinned
    new: str | None  # None: no spec has it any more

    def describe(self) -> str:
        if self.old is None:
            return f"{self.name}: (not pinned) -> {self.new}"
        if self.new is None:
            return f"{self.name}: {self.old} -> (removed: no spec has it any more)"
        return f"{self.name}: {self.old} -> {self.new}"


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


def compute_pin(project: Project, environ: Mapping[str, str] | None = None, *,
                recorded: Mapping[str, str] | None = None, update_bases: bool = False) -> Pin:
    """Every spec's reference for the current lock, and the base digests they hash.

    The lock must be up to date with pyproject.toml first (LockOutOfDate, whose
    fix is `uv lock`): a pin of a stale lock would name an image nobody builds.
    Base digests are the ``recorded`` ones (by default the pin on disk's) of
    bases some spec still uses; with ``update_bases`` every base's digest on
    this machine, from the engine (the only case that asks it)."""
    from raybake.planner import (  # imported here: `pinned_reference` stays light
        identify_all,
        known_base_digests,
        recorded_bases,
        resolve_base_digests,
        specs_for,
    )
    from raybake.tools.uv import lock_check

    lock_check(project)
    specs = specs_for(project, all_specs=True, environ=environ)
    if update_bases:
        recorded = resolve_base_digests(s.base_image for s in specs)
    elif recorded is None:
        recorded = recorded_bases(project.root)
    bases = known_base_digests(specs, recorded)
    return Pin({i.spec.name: i.reference for i in identify_all(project, specs, bases)},
               {image: recorded[image] for image in bases if image in recorded})


def diff_pins(old: Pin | None, new: Pin) -> list[PinChange]:
    """The entries that differ: images by spec name, then bases ("base NAME")."""
    changes = _diff(old.images if old else {}, new.images)
    return changes + [PinChange(f"base {c.name}", c.old, c.new)
                      for c in _diff(old.bases if old else {}, new.bases)]


def _diff(old: Mapping[str, str], new: Mapping[str, str]) -> list[PinChange]:
    return [PinChange(n, old.get(n), new.get(n)) for n in sorted(set(old) | set(new))
            if old.get(n) != new.get(n)]


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` in one step: readers see the old file or the new one, never a part.

    The temporary file lives in the same directory (os.replace is atomic there)
    and is removed whatever happens."""
    try:
        atomic_write(path, text.encode("utf-8"))
    except OSError as exc:
        raise ProjectError(f"cannot write {path}: {exc}",
                           fix=f"make {path.parent} writable (and {path.name} a regular file)") from None


def _pin_lock(path: Path):
    from raybake import locks

    return locks.build_lock(f"pin:{path.resolve()}")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return ""  # unreadable counts as stale; rewriting it is the fix


@dataclass(frozen=True)
class PinStatus:
    path: Path
    images: dict[str, str]  # the current pin (what the lock produces)
    current: bool  # the file on disk was exactly the canonical pin
    changes: tuple[PinChange, ...] = ()  # entries that differed (none: formatting only)
    invalid: str | None = None  # why the file on disk was not a valid pin
    missing: bool = False  # there was no pin file
    rewritten: bool = False


def update_pin(project: Project, *, check: bool = False, update_bases: bool = False,
               environ: Mapping[str, str] | None = None) -> PinStatus:
    """Compare the pin with the current lock and, unless ``check``, rewrite it when stale.

    Only ``update_bases`` asks the engine (for every base's digest on this
    machine). Read, compare and write happen under one cross-process lock, and
    the write is an atomic replace: concurrent runs never leave a torn file, and
    a current pin is not touched (same bytes, same mtime)."""
    path = pin_path(project.root)
    old, _ = _parse_on_disk(_read_text(path), path)
    pin = compute_pin(project, environ, recorded=old.bases if old else {}, update_bases=update_bases)
    text = render_pin(pin)
    with _pin_lock(path):
        on_disk = _read_text(path)
        if on_disk == text:
            return PinStatus(path, dict(pin.images), current=True)
        old, invalid = _parse_on_disk(on_disk, path)
        changes = tuple(diff_pins(old, pin))
        if not check:
            _write_atomic(path, text)
        return PinStatus(path, dict(pin.images), current=False, changes=changes, invalid=invalid,
                         missing=on_disk is None, rewritten=not check)


def _parse_on_disk(text: str | None, path: Path) -> tuple[Pin | None, str | None]:
    """The pin in a file's text, or why it is not one; a format raybake does not know is an error."""
    if text is None:
        return None, None
    try:
        return parse_pin(text, "the file"), None
    except UnknownPinVersion as exc:
        raise UnknownPinVersion(exc.message.replace("the file", str(path), 1), exc.fix) from None
    except ProjectError as exc:
        return None, exc.message


def _display_path(path: Path) -> str:
    """Relative to the current directory when inside it (a hook runs at the
    repository root), else absolute."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return str(path)


def _entries(status: PinStatus) -> str:
    lines = [c.describe() for c in status.changes] or [
        "(same references; the file was not in canonical form)"]
    return "\n".join(f"  {line}" for line in lines)


def update_message(status: PinStatus) -> str:
    """What a rewrite changed, and how to commit it (a report, not an error)."""
    shown = _display_path(status.path)
    if status.missing:
        why = "it did not exist"
    elif status.invalid:
        why = f"it was not a valid pin ({status.invalid})"
    else:
        why = "it was out of date with the lock"
    return f"updated {shown} ({why}):\n{_entries(status)}\nstage it: git add {shown}"


def stale_error(status: PinStatus) -> StaleError:
    """The finding for a pin that is stale (--check) or was (rewritten, with
    --exit-non-zero-on-change)."""
    shown = _display_path(status.path)
    was = "was" if status.rewritten else "is"
    if status.missing:
        what = f"{shown} did not exist" if status.rewritten else f"{shown} does not exist"
    elif status.invalid:
        what = f"{shown} {was} not a valid pin ({status.invalid})"
    else:
        what = f"{shown} {was} out of date with the lock"
    if status.rewritten:
        return StaleError(f"{what}; rewrote it:\n{_entries(status)}",
                          fix=f"stage the rewritten pin: git add {shown}")
    where = _display_path(status.path.parent)
    run = "raybake pin" if where == "." else f"raybake pin -C {where}"
    return StaleError(f"{what}:\n{_entries(status)}", fix=f"run `{run}` and commit {shown}")


def require_present(images: Mapping[str, str]) -> None:
    """Raise ImageMissing unless every pinned reference exists: in its registry
    when its repository names a registry host, else in the local image store.

    An unreachable registry or daemon is an error (RegistryError, EngineError),
    never taken for "absent" or "present"."""
    from raybake.plan import tag_hash
    from raybake.reference import Reference
    from raybake.tools import docker
    from raybake.trust import foreign_image, registry_digest_reference

    missing = []
    for name in sorted(images):
        reference = images[name]
        want = tag_hash(reference)
        if Reference.parse(reference).registry:
            # A foreign image under the pinned tag is an error naming both hashes, never "present".
            if registry_digest_reference(reference, want, platform=None) is None:
                missing.append(f"{name}: {reference} is not in its registry")
            continue
        local = docker.local_image(reference)
        if local is None:
            missing.append(f"{name}: {reference} is not in the local image store")
        elif (problem := foreign_image(reference, local.input_hash, want)) is not None:
            missing.append(f"{name}: {problem}")
    if missing:
        raise ImageMissing("pinned images are missing:\n" + "\n".join(f"  {m}" for m in missing),
                           fix="build them with `raybake build --all` (with --push when the repository "
                               "names a registry)")


__all__ = ["PIN_FILE", "PIN_VERSION", "ImageMissing", "Pin", "PinChange", "PinStatus", "compute_pin",
           "diff_pins", "parse_pin", "pin_path", "pinned_reference", "read_pin", "render_pin",
           "require_present", "stale_error", "update_message", "update_pin"]

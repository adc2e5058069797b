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

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from raybake.dockerfile import template_digest
from raybake.errors import ImageMissing, ProjectError, StaleError, UnknownPinVersion
from raybake.files import atomic_write
from raybake.hashing import hash_document
from raybake.paths import cache_dir
from raybake.pinfile import PIN_FILE, PIN_VERSION, Pin, parse_pin, pin_path, pinned_reference, read_pin, render_pin
from raybake.plan import tag_hash
from raybake.planner import identify_all, known_base_digests, recorded_bases, resolve_base_digests, specs_for
from raybake.project import Project
from raybake.reference import Reference
from raybake.signing import VerificationKey
from raybake.spec import ENV_OVERRIDES, spec_variable_suffix


@dataclass(frozen=True)
class PinChange:
    """One entry that differs between the pin on disk and the current lock."""

    name: str
    old: str | None  # None: it was not pinned
    new: str | None  # None: no spec has it any more
    why: str | None = None  # what changed it, when both are set (see explain_changes)

    def describe(self) -> str:
        if self.old is None:
            return f"{self.name}: (not pinned) -> {self.new}"
        if self.new is None:
            return f"{self.name}: {self.old} -> (removed: no spec has it any more)"
        return f"{self.name}: {self.old} -> {self.new}" + (f"\n    changed by: {self.why}" if self.why else "")


def compute_pin(project: Project, environ: Mapping[str, str] | None = None, *,
                recorded: Mapping[str, str] | None = None, update_bases: bool = False) -> Pin:
    """Every spec's reference for the current lock, and the base digests they hash.

    The lock must be up to date with pyproject.toml first (LockOutOfDate, whose
    fix is `uv lock`): a pin of a stale lock would name an image nobody builds.
    Base digests are the ``recorded`` ones (by default the pin on disk's) of
    bases some spec still uses; with ``update_bases`` every base's digest on
    this machine, from the engine (the only case that asks it)."""
    from raybake.tools.uv import lock_check

    lock_check(project)
    specs = specs_for(project, all_specs=True, environ=environ)
    if update_bases:
        recorded = resolve_base_digests(s.base_image for s in specs)
    elif recorded is None:
        recorded = recorded_bases(project.root)
    bases = known_base_digests(specs, recorded)
    identities = identify_all(project, specs, bases)
    _remember_inputs(project, identities)
    return Pin({i.spec.name: i.reference for i in identities},
               {image: recorded[image] for image in bases if image in recorded})


# ---- what changed an entry ----
# The pin holds references only. What an input hash was made of is remembered in
# raybake's cache by the runs that computed it (this machine's earlier pins), so
# a changed entry names the inputs that differ; an override variable set here is
# found by computing the pin without it.

_INPUT_NAMES = {
    "uv": "the uv put into the image", "template": "raybake's own Dockerfile template (another raybake release)",
    "lock": "uv.lock", "pyproject": "pyproject.toml's dependencies", "members": "a workspace member's pyproject.toml",
    "base_image": "the base image", "base_digest": "the base image's digest", "python": "the Python asked for",
    "schema": "raybake's input-hash format",
}


def _inputs_memo(short_hash: str) -> Path:
    return cache_dir() / "pin-inputs" / f"{short_hash}.json"


def _remember_inputs(project: Project, identities) -> None:
    """Best effort: without the memo a change is explained less precisely."""
    lock = hashlib.sha256(project.lock_bytes).hexdigest()
    for identity in identities:
        document = hash_document(project, identity.spec, template_digest=template_digest(),
                                 base_digest=identity.base_digest)
        try:
            memo = _inputs_memo(identity.input_hash.short)
            if not memo.exists():
                memo.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(memo, json.dumps({**document, "lock": lock}, sort_keys=True).encode())
        except OSError:
            pass


def _recalled_inputs(reference: str) -> dict | None:
    try:
        return json.loads(_inputs_memo(tag_hash(reference)).read_text())
    except (OSError, ValueError):
        return None


def override_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The RAYBAKE_* spec overrides set in ``environ`` (for every spec, or one: RAYBAKE_BASE_IMAGE_PY313)."""
    return {k: v for k, v in environ.items()
            if v and any(k == var or k.startswith(f"{var}_") for var in ENV_OVERRIDES)}


def explain_changes(project: Project, changes: list[PinChange], environ: Mapping[str, str],
                    recorded: Mapping[str, str]) -> list[PinChange]:
    """``changes`` with what changed each entry that was and is pinned: a RAYBAKE_*
    override set here (the pin without it would keep the entry), else the inputs
    that differ from those remembered for the old reference, else unknown here."""
    overrides = override_variables(environ)
    without = {}
    if overrides and any(c.old and c.new for c in changes):
        bare = {k: v for k, v in environ.items() if k not in overrides}
        without = compute_pin(project, bare, recorded=recorded).images
    explained = []
    for change in changes:
        why = None
        if change.old and change.new:
            if without.get(change.name) == change.old:
                names = sorted(k for k in overrides
                               if k in ENV_OVERRIDES or k.endswith(f"_{spec_variable_suffix(change.name)}"))
                why = ("only " + ", ".join(f"{k}={overrides[k]}" for k in names)
                       + " set in this environment; without it the pinned reference stays")
            else:
                why = _differing_inputs(change.old, change.new)
        explained.append(PinChange(change.name, change.old, change.new, why))
    return explained


def _differing_inputs(old: str, new: str) -> str:
    before, after = _recalled_inputs(old), _recalled_inputs(new)
    if tag_hash(old) == tag_hash(new):
        return f"the repository ({Reference.parse(old).repository} -> {Reference.parse(new).repository})"
    if before is None or after is None:
        return ("inputs this machine has no record of: uv.lock, a pyproject.toml, a spec, the uv put into the "
                "image or raybake's own template (not a RAYBAKE_* variable set here)")
    parts = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) == after.get(key):
            continue
        name = _INPUT_NAMES.get(key, f"the spec's {key}")
        values = (before.get(key), after.get(key))
        shown = all(v is None or (isinstance(v, str) and len(v) <= 80) for v in values)
        parts.append(f"{name} ({values[0]} -> {values[1]})" if shown and key not in ("lock", "template")
                     else name)
    return ", ".join(parts) or "raybake's own template (another raybake release)"


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

    @property
    def overrides_only(self) -> bool:
        """Every changed entry differs only by a RAYBAKE_* variable set here."""
        return bool(self.changes) and all((c.why or "").startswith("only ") for c in self.changes)

    def as_json(self) -> dict[str, object]:
        """What `raybake pin --json` gives."""
        return {"path": str(self.path), "current": self.current, "missing": self.missing, "invalid": self.invalid,
                "rewritten": self.rewritten, "images": dict(sorted(self.images.items())),
                "changes": [{"entry": c.name, "old": c.old, "new": c.new, "why": c.why} for c in self.changes]}


def update_pin(project: Project, *, check: bool = False, update_bases: bool = False,
               environ: Mapping[str, str] | None = None) -> PinStatus:
    """Compare the pin with the current lock and, unless ``check``, rewrite it when stale.

    Only ``update_bases`` asks the engine (for every base's digest on this
    machine). Read, compare and write happen under one cross-process lock, and
    the write is an atomic replace: concurrent runs never leave a torn file, and
    a current pin is not touched (same bytes, same mtime)."""
    environ = os.environ if environ is None else environ
    path = pin_path(project.root)
    old, _ = _parse_on_disk(_read_text(path), path)
    recorded = old.bases if old else {}
    pin = compute_pin(project, environ, recorded=recorded, update_bases=update_bases)
    text = render_pin(pin)
    with _pin_lock(path):
        on_disk = _read_text(path)
        if on_disk == text:
            return PinStatus(path, dict(pin.images), current=True)
        old, invalid = _parse_on_disk(on_disk, path)
        changes = tuple(explain_changes(project, diff_pins(old, pin), environ, recorded))
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
    elif status.overrides_only:
        return (f"updated {shown} (it differs only by RAYBAKE_* variables set in this environment):\n"
                f"{_entries(status)}\nstaging it pins what this environment builds; to keep the committed pin, "
                f"unset them and run `raybake pin` again (settings the whole team shares belong in "
                f"[tool.raybake] or images/*.yaml), else stage it: git add {shown}")
    else:
        why = "what decides its images changed"
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
    elif status.overrides_only:
        what = f"{shown} {was} stale only by RAYBAKE_* variables set in this environment"
    else:
        what = f"{shown} {was} stale: what decides its images changed"
    if status.overrides_only:
        return StaleError(f"{what}{'; rewrote it' if status.rewritten else ''}:\n{_entries(status)}",
                          fix="unset them (then `git checkout` the pin if it was rewritten) to check the "
                              "committed pin, or set them the same in CI and every developer's environment "
                              "(settings the whole team shares belong in [tool.raybake] or images/*.yaml)")
    if status.rewritten:
        return StaleError(f"{what}; rewrote it:\n{_entries(status)}",
                          fix=f"stage the rewritten pin: git add {shown}")
    where = _display_path(status.path.parent)
    run = "raybake pin" if where == "." else f"raybake pin -C {where}"
    return StaleError(f"{what}:\n{_entries(status)}", fix=f"run `{run}` and commit {shown}")


def require_present(images: Mapping[str, str], key: VerificationKey | None = None) -> None:
    """Raise ImageMissing unless every pinned reference exists: in its registry
    when its repository names a registry host (with a statement signed by
    ``key`` when one is configured), else in the local image store.

    An unreachable registry or daemon is an error (RegistryError, EngineError),
    never taken for "absent" or "present"."""
    from raybake.tools import docker
    from raybake.trust import VerificationRecords, foreign_image, registry_digest_reference, unverified_image

    missing = []
    for name in sorted(images):
        reference = images[name]
        want = tag_hash(reference)
        if Reference.parse(reference).registry:
            # A foreign image under the pinned tag is an error naming both hashes, never "present".
            if registry_digest_reference(reference, want, platform=None, key=key) is None:
                missing.append(f"{name}: {reference} is not in its registry")
            continue
        local = docker.local_image(reference)
        if local is None:
            missing.append(f"{name}: {reference} is not in the local image store")
        elif (problem := foreign_image(reference, local.input_hash, want)
                         or unverified_image(reference, local.image_id, VerificationRecords(), want)) is not None:
            missing.append(f"{name}: {problem}")
    if missing:
        raise ImageMissing("pinned images are missing:\n" + "\n".join(f"  {m}" for m in missing),
                           fix="build them with `raybake build --all` (with --push when the repository "
                               "names a registry)")


__all__ = ["PIN_FILE", "PIN_VERSION", "ImageMissing", "Pin", "PinChange", "PinStatus", "compute_pin",
           "diff_pins", "parse_pin", "pin_path", "pinned_reference", "read_pin", "render_pin",
           "require_present", "stale_error", "update_message", "update_pin"]

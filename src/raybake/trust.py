"""Is the image under a reference the plan's? Decided by its dev.raybake.input-hash
label, locally and in a registry: raybake never calls a foreign image up to
date, pushes past it or names its digest in a job config. Locally the label is
not enough (an image built FROM raybake's inherits it): the image must be the
very one raybake verified, by ID (VerificationRecords). In a registry the
digest must carry raybake's verification record or, with a verification key
configured, a verification statement signed by that key (raybake.signing)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from raybake import __version__
from raybake.contract import LABEL_INPUT_HASH, LABEL_VERIFICATION
from raybake.errors import RegistryError
from raybake.files import atomic_write
from raybake.paths import cache_dir, scratch_dir
from raybake.reference import Reference
from raybake.tools import docker

if TYPE_CHECKING:
    from raybake.signing import AttestationCheck, SigningKey, VerificationKey


class Engine(Protocol):
    """What decide() asks of the engine (raybake.tools.docker; a fake in unit tests)."""

    def local_image(self, reference: str) -> docker.LocalImage | None: ...

    def registry_image(self, reference: str, platform: str | None = None) -> docker.RegistryImage | None: ...

    def registry_label(self, reference: str, label: str) -> str | None: ...


# A verification record: what raybake verified (``subject``, an image ID here),
# for which plan. Canonical JSON (sorted keys, compact), so that a signature
# over its bytes can be attached later without changing the format.
RECORD_SCHEMA = "dev.raybake.verification/1"


def verification_record(subject: str, input_hash: str, spec: str) -> bytes:
    return json.dumps({"input_hash": input_hash, "raybake": __version__, "schema": RECORD_SCHEMA,
                       "spec": spec, "subject": subject}, sort_keys=True, separators=(",", ":")).encode()


class VerifiedImages(Protocol):
    """Which images raybake verified (VerificationRecords; a fake in unit tests)."""

    def input_hash(self, image_id: str) -> str | None: ...


class VerificationRecords:
    """The images raybake verified on this machine: one record per image ID
    under its cache (``verified/<hex>.json``), written when verification
    passed. An image ID is the digest of the image's config, which names
    every layer: another image cannot have it."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_dir() / "verified"

    def _path(self, image_id: str) -> Path | None:
        hex_id = image_id.removeprefix("sha256:")
        return self.root / f"{hex_id}.json" if re.fullmatch(r"[0-9a-f]{64}", hex_id) else None

    def add(self, image_id: str, input_hash: str, spec: str) -> None:
        path = self._path(image_id)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, verification_record(image_id, input_hash, spec))

    def input_hash(self, image_id: str) -> str | None:
        """The input hash the image was verified for; None when raybake did not verify it here."""
        path = self._path(image_id)
        try:
            record = json.loads(path.read_bytes()) if path is not None else None
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("subject") != image_id:
            return None
        return record.get("input_hash") if isinstance(record.get("input_hash"), str) else None


def unverified_image(reference: str, image_id: str, verified: VerifiedImages, want: str) -> str | None:
    """Why the image under ``reference`` (its label already the plan's) does not
    count: raybake did not verify that very image here. None when it did."""
    found = verified.input_hash(image_id)
    if found is not None and found.startswith(want):
        return None
    return (f"the image under {reference} carries this plan's {LABEL_INPUT_HASH} label, but raybake did not "
            f"verify that image ({image_id[:19]}) here (an image built FROM raybake's inherits the label)")


def foreign_image(reference: str, found: str | None, want: str) -> str | None:
    """Why the image under ``reference`` is not the one whose input hash is
    (or, for a tag's 16 digits, starts with) ``want``; None when it is."""
    if found is not None and found.startswith(want):
        return None
    return (f"the image under {reference} is not raybake's build of this lock and spec: its "
            f"{LABEL_INPUT_HASH} label is {found or '(none)'}, the plan's is {want}")


def registry_digest_reference(reference: str, want: str, *, platform: str | None,
                              engine: Engine = docker, key: VerificationKey | None = None) -> str | None:
    """``repository@sha256:...`` of ``reference`` in its registry after checking
    that its input-hash label is ``want``; None when the tag is absent.

    A tag there that names another image (pushed by hand, overwritten) is an
    error naming both hashes: raybake never calls it up to date, pushes past it
    or names its digest. With a verification ``key``, the digest counts only
    with a statement signed by it (check_signed); without one, with raybake's
    unsigned verification record."""
    found = engine.registry_image(reference, platform)
    if found is None:
        return None
    problem = foreign_image(reference, found.input_hash, want)
    if problem is not None:
        raise RegistryError(f"{problem} (registry digest {found.digest})",
                            fix="push this plan's image over it with `raybake build --push --force` "
                                "(or delete that tag in the registry)")
    if key is not None:
        check_signed(reference, found.digest, want, key)
        return str(Reference.parse(reference).with_digest(found.digest))
    attached = record_reference(reference, found.digest)
    if not record_matches(engine.registry_label(attached, LABEL_VERIFICATION), found.digest, want):
        raise RegistryError(
            f"the image under {reference} (registry digest {found.digest}) carries this plan's {LABEL_INPUT_HASH} "
            f"label, but no raybake verification record for that digest is in the registry ({attached}): "
            "raybake did not push it after verifying it (an image built FROM raybake's inherits the label; "
            "a tag moved after raybake's push names another digest)",
            fix="push this plan's verified image over it with `raybake build --push --force`")
    return str(Reference.parse(reference).with_digest(found.digest))


def record_reference(reference: str, digest: str) -> str:
    """Where the verification record of ``digest`` lives: a tag beside it
    (``sha256-HEX.raybake-verified``, named like cosign's attachments)."""
    return f"{Reference.parse(reference).repository}:{digest.replace(':', '-')}.raybake-verified"


def record_matches(record: str | None, digest: str, want: str) -> bool:
    """Whether ``record`` (a verification record's JSON) is of ``digest``, for input hash ``want``."""
    try:
        data = json.loads(record) if record else None
    except ValueError:
        return False
    return (isinstance(data, dict) and data.get("schema") == RECORD_SCHEMA and data.get("subject") == digest
            and isinstance(data.get("input_hash"), str) and data["input_hash"].startswith(want))


def attach_record(digest_reference: str, input_hash: str, spec: str) -> None:
    """Push the verification record of the image raybake verified and just
    pushed as ``digest_reference`` (repository@sha256:...) beside it. Unsigned:
    anyone who may push to the repository can push one too (README, Security
    notes); a signature over the record's bytes can be attached the same way."""
    parsed = Reference.parse(digest_reference)
    record = verification_record(parsed.digest or "", input_hash, spec)
    with scratch_dir("record-") as context:
        docker.push_labelled(record_reference(digest_reference, parsed.digest or ""),
                             {LABEL_VERIFICATION: record.decode()}, record, context)


def signed_attestations(reference: str, digest: str, want: str, key: VerificationKey) -> AttestationCheck:
    """The statements attached to ``digest`` (cosign's ``sha256-HEX.att`` beside
    it in the repository of ``reference``), checked against ``key`` and ``want``."""
    from raybake.tools import registry

    from raybake.signing import check_attestations

    image = str(Reference.parse(reference).with_digest(digest))
    return check_attestations(registry.attestations(image), key, digest, want)


def check_signed(reference: str, digest: str, want: str, key: VerificationKey) -> None:
    """Raise RegistryError unless a statement signed by ``key`` says raybake
    verified ``digest`` for the input hash ``want``: the label, and the
    unsigned record, are what anyone who may push can forge."""
    from raybake.tools.registry import attestation_tag

    found = signed_attestations(reference, digest, want, key)
    if not found.ok:
        where = f"{Reference.parse(reference).repository}:{attestation_tag(digest)}"
        raise RegistryError(
            f"the image under {reference} (registry digest {digest}) is not raybake's as far as {key.describe()} "
            f"can tell: no verification statement signed by that key for this digest and input hash is "
            f"attached ({where}: {'; '.join(found.problems)}); its {LABEL_INPUT_HASH} label and verification "
            "record prove nothing, anyone who may push can forge them",
            fix="push this plan's verified image over it, signed: `raybake build --push --force` with the "
                "private key of that public key in RAYBAKE_SIGNING_KEY (or --signing-key FILE)")


def attach_signed_statement(digest_reference: str, statement: dict[str, object], key: SigningKey) -> bool:
    """Attach ``statement``, signed with ``key``, to the pushed image
    ``digest_reference`` where cosign looks; False when the same statement
    signed by the same key is attached already (a signature is new each time)."""
    from raybake.signing import signed_statement
    from raybake.tools import registry

    public = key.verification_key()
    for envelope in registry.attestations(digest_reference):
        try:
            if signed_statement(envelope, public) == statement:
                return False
        except ValueError:
            continue
    registry.add_attestation(digest_reference, key.envelope(statement), str(statement["predicateType"]))
    return True

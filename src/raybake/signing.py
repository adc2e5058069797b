"""Signed verification: an in-toto statement that raybake verified an image,
in a DSSE envelope signed with an ECDSA P-256 key, as cosign signs and checks
attestations (`cosign verify-attestation --key`).

Pure, but for reading the key files the settings name: the statement, the
envelope (DSSE's pre-authentication encoding, PAE), signing and checking.
Where the envelope lives in a registry is raybake.tools.registry's business,
what counts as raybake's image raybake.trust's. The cryptography library is
imported only when a key is configured (an up-to-date `raybake build` starts fast)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raybake.errors import SettingError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from raybake.project import Project

PAYLOAD_TYPE = "application/vnd.in-toto+json"  # the only payloadType cosign accepts on an attestation
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://github.com/raybake/raybake/verification/v1"

SIGNING_KEY_VARIABLE = "RAYBAKE_SIGNING_KEY"  # the PEM itself (a CI secret)
SIGNING_KEY_FILE_VARIABLE = "RAYBAKE_SIGNING_KEY_FILE"  # `build --signing-key FILE`
VERIFICATION_KEY_VARIABLE = "RAYBAKE_VERIFICATION_KEY"  # a public key's PEM file; wins over [tool.raybake]
VERIFICATION_KEY_FIELD = "verification_key"
KEY_FIX = ("make an ECDSA P-256 key pair, as cosign uses: `openssl ecparam -name prime256v1 -genkey -noout | "
           "openssl pkcs8 -topk8 -nocrypt -out raybake.key` and `openssl ec -in raybake.key -pubout -out raybake.pub`")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1's pre-authentication encoding: what the signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def canonical(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def verification_statement(*, repository: str, digest: str, input_hash: str, lock_sha256: str, spec: str,
                           image_id: str, raybake_version: str) -> dict[str, Any]:
    """That raybake's verification of the image ``repository@digest`` (local ID
    ``image_id``) passed for the plan of ``input_hash``, from the uv.lock of
    ``lock_sha256``. Nothing in it changes between two signings of one image."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": repository, "digest": {"sha256": digest.removeprefix("sha256:")}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"result": "passed", "input_hash": input_hash, "lock_sha256": lock_sha256, "spec": spec,
                      "image_id": image_id, "raybake_version": raybake_version},
    }


def fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """sha256 of the key's SubjectPublicKeyInfo, to name a key in messages."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()[:16]


@dataclass(frozen=True)
class VerificationKey:
    """A public key whose signed statements raybake accepts; ``source`` says where it was configured."""

    public_key: ec.EllipticCurvePublicKey
    source: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def describe(self) -> str:
        return f"the key {self.fingerprint} ({self.source})"


@dataclass(frozen=True)
class SigningKey:
    private_key: ec.EllipticCurvePrivateKey
    source: str

    def verification_key(self) -> VerificationKey:
        return VerificationKey(self.private_key.public_key(), self.source)

    def envelope(self, statement: Mapping[str, Any]) -> bytes:
        """``statement`` signed in a DSSE envelope (keyid empty, as cosign writes it)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        payload = canonical(statement)
        signature = self.private_key.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
        return canonical({"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(),
                          "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}]})


def _p256(load: Callable[[bytes], object], pem: bytes, source: str, what: str) -> Any:
    """The key ``load`` reads from ``pem``, when it is an ECDSA P-256 ``what``."""
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = load(pem)
    except ValueError as exc:
        raise SettingError(f"{source} is not a PEM {what} ({exc})", fix=KEY_FIX) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) \
            or not isinstance(key.curve, ec.SECP256R1):
        raise SettingError(f"{source} is not an ECDSA P-256 {what} (the kind cosign uses)", fix=KEY_FIX)
    return key


def load_signing_key(pem: bytes, source: str) -> SigningKey:
    """An unencrypted PEM private key (PKCS#8 or SEC1) of curve P-256."""
    from cryptography.hazmat.primitives import serialization

    try:
        return SigningKey(_p256(lambda b: serialization.load_pem_private_key(b, password=None), pem, source,
                                "private key"), source)
    except TypeError:  # cryptography's answer to an encrypted key without a password
        raise SettingError(f"{source} is an encrypted private key; raybake reads unencrypted PEM only",
                           fix=f"decrypt it into a CI secret: `openssl pkcs8 -in KEY -topk8 -nocrypt`; {KEY_FIX}") from None


def load_verification_key(pem: bytes, source: str) -> VerificationKey:
    """A PEM public key (``-----BEGIN PUBLIC KEY-----``, as `cosign generate-key-pair` writes cosign.pub)."""
    from cryptography.hazmat.primitives import serialization

    return VerificationKey(_p256(serialization.load_pem_public_key, pem, source, "public key"), source)


def _read(path: Path, source: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SettingError(f"{source}: cannot read {path} ({exc.strerror})", fix=KEY_FIX) from None


def verification_key_file(path: Path, source: str) -> VerificationKey:
    return load_verification_key(_read(path, source), source)


def signing_key(path: Path | None, environ: Mapping[str, str] = os.environ) -> SigningKey | None:
    """The key `build --push` signs with: ``path`` (--signing-key, RAYBAKE_SIGNING_KEY_FILE),
    else the PEM in RAYBAKE_SIGNING_KEY; None when neither is set."""
    if path is not None:
        return load_signing_key(_read(path, f"--signing-key {path}"), f"--signing-key {path}")
    if pem := environ.get(SIGNING_KEY_VARIABLE, "").strip():
        return load_signing_key(pem.encode(), SIGNING_KEY_VARIABLE)
    return None


def verification_key(project: Project, environ: Mapping[str, str] = os.environ) -> VerificationKey | None:
    """The public key a registry image's signed statement must verify with:
    the file RAYBAKE_VERIFICATION_KEY names, else [tool.raybake]
    verification_key (relative to the project); None when neither is set."""
    if path := environ.get(VERIFICATION_KEY_VARIABLE, "").strip():
        source = f"{VERIFICATION_KEY_VARIABLE}={path}"
        return verification_key_file(Path(path), source)
    configured = project.tool_config.get(VERIFICATION_KEY_FIELD)
    if configured is None:
        return None
    source = f"pyproject.toml [tool.raybake] {VERIFICATION_KEY_FIELD} = {configured!r}"
    if not isinstance(configured, str) or not configured:
        raise SettingError(f"{source} is not a file name",
                           fix=f"set {VERIFICATION_KEY_FIELD} to the public key's PEM file, relative to the project")
    return verification_key_file(project.root / configured, source)


def key_pair_mismatch(signing: SigningKey | None, verifying: VerificationKey | None) -> str | None:
    """Why images signed with ``signing`` would not count under ``verifying``; None when they would."""
    if signing is None or verifying is None or signing.verification_key().fingerprint == verifying.fingerprint:
        return None
    return (f"the signing key ({signing.source}, public key {signing.verification_key().fingerprint}) is not "
            f"the pair of the verification key {verifying.fingerprint} ({verifying.source}): the images it "
            "signs would not count")


@dataclass(frozen=True)
class AttestationCheck:
    """What the signed statements attached to one image digest say, checked."""

    statement: dict[str, Any] | None  # the signed statement that matched; None when none did
    problems: tuple[str, ...]  # why each attached envelope did not count (empty when one did)

    @property
    def ok(self) -> bool:
        return self.statement is not None


def signed_statement(envelope: bytes, key: VerificationKey) -> dict[str, Any]:
    """The statement in ``envelope`` when its signature verifies with ``key``
    (cosign's rules: payloadType in-toto, any one signature); ValueError says why not."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        data = json.loads(envelope)
        payload_type, payload = data["payloadType"], base64.b64decode(data["payload"], validate=True)
        signatures = [base64.b64decode(s["sig"], validate=True) for s in data["signatures"]]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ValueError(f"not a DSSE envelope ({exc})") from None
    if payload_type != PAYLOAD_TYPE:
        raise ValueError(f"its payloadType is {payload_type!r}, not {PAYLOAD_TYPE}")
    message = pae(payload_type, payload)
    for signature in signatures:
        try:
            key.public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        statement = json.loads(payload)
        if not isinstance(statement, dict):
            raise ValueError("its payload is not an in-toto statement")
        return statement
    raise ValueError(f"no signature in it verifies with {key.describe()}")


def statement_problem(statement: Mapping[str, Any], digest: str, input_hash: str) -> str | None:
    """Why a signed ``statement`` does not say that raybake verified the image
    ``digest`` for the plan whose input hash is (or, for a tag's 16 digits,
    starts with) ``input_hash``; None when it does."""
    predicate = statement.get("predicate")
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") != PREDICATE_TYPE \
            or not isinstance(predicate, dict):
        return f"it is not raybake's verification statement (predicateType {statement.get('predicateType')!r})"
    subjects = statement.get("subject") if isinstance(statement.get("subject"), list) else []
    if not any(isinstance(s, dict) and f"sha256:{(s.get('digest') or {}).get('sha256')}" == digest
               for s in subjects):
        return f"it is about another image (its subject is not {digest})"
    if predicate.get("result") != "passed":
        return f"its verification result is {predicate.get('result')!r}"
    found = predicate.get("input_hash")
    if not isinstance(found, str) or not found.startswith(input_hash):
        return f"it was signed for the input hash {found}, the plan's is {input_hash}"
    return None


def check_attestations(envelopes: Sequence[bytes], key: VerificationKey, digest: str,
                       input_hash: str) -> AttestationCheck:
    """The first envelope whose signature verifies with ``key`` and whose
    statement names ``digest`` and ``input_hash``; else why none does."""
    problems = []
    for number, envelope in enumerate(envelopes, 1):
        try:
            statement = signed_statement(envelope, key)
        except ValueError as exc:
            problems.append(f"attestation {number}: {exc}")
            continue
        if (problem := statement_problem(statement, digest, input_hash)) is None:
            return AttestationCheck(statement, ())
        problems.append(f"attestation {number}: signed, but {problem}")
    return AttestationCheck(None, tuple(problems) or ("no attestation is attached",))

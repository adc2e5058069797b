"""CA bundles: PEM certificates and nothing else.

The proxy CA bundle (``ca_bundle``, else ``$SSL_CERT_FILE``) is bound into the
build for uv, where a dependency's build backend can read it and copy it into
the image. So it must hold public certificates only: never a private key, a
token or any other file a setting happens to name. Checked in pure Python
(``cryptography`` is not a dependency): a strict PEM parser, strict base64,
and a DER check that each block is shaped like an X.509 certificate."""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from raybake.errors import SpecError

MAX_BYTES = 16 * 2**20  # the system bundle is about 0.2 MiB
_BEGIN = "-----BEGIN CERTIFICATE-----"
_END = "-----END CERTIFICATE-----"
_ANY_BEGIN = re.compile(r"^-----BEGIN ([^-]*)-----$")
_BASE64_LINE = re.compile(r"^[A-Za-z0-9+/=]+$")
_SEQUENCE, _BIT_STRING, _INTEGER, _VERSION = 0x30, 0x03, 0x02, 0xA0


class NotABundle(ValueError):
    """Why a file is not a bundle of PEM certificates."""

    def __init__(self, problem: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {problem}" if line else problem)


@dataclass(frozen=True)
class Bundle:
    data: bytes
    certificates: int


def parse_bundle(data: bytes) -> int:
    """The number of certificates in ``data``; NotABundle unless it holds only
    ``CERTIFICATE`` PEM blocks (whitespace between them) and at least one."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise NotABundle(f"byte {exc.start} is not ASCII text") from None
    count = 0
    body: list[str] | None = None  # base64 lines of the block being read
    begun = 0
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if body is None:
            if line == _BEGIN:
                body, begun = [], number
            elif line:
                raise NotABundle(_outside(line), number)
        elif line == _END:
            _check_certificate("".join(body), begun)
            count += 1
            body = None
        elif _BASE64_LINE.match(line):
            body.append(line)
        elif not line:
            continue
        else:
            raise NotABundle("not base64 inside a certificate block", number)
    if body is not None:
        raise NotABundle(f"the certificate block begun here has no {_END} line", begun)
    if not count:
        raise NotABundle("it holds no certificate")
    return count


def _outside(line: str) -> str:
    m = _ANY_BEGIN.match(line)
    if m is None:
        return "text outside a certificate block (comments are not allowed either)"
    label = m.group(1)
    if "PRIVATE KEY" in label:
        return f"a private key ({label}): a CA bundle holds only public certificates"
    return f"a {label} block: a CA bundle holds only CERTIFICATE blocks"


def _check_certificate(encoded: str, line: int) -> None:
    try:
        der = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise NotABundle("the certificate block is not valid base64", line) from None
    if not _is_certificate(der):
        raise NotABundle("the block is not an X.509 certificate (DER SEQUENCE of "
                         "tbsCertificate, signatureAlgorithm, signatureValue)", line)


def _tlv(der: bytes, at: int) -> tuple[int, int, int] | None:
    """(tag, start of content, end of content) of the DER element at ``at``."""
    if at + 2 > len(der):
        return None
    tag, first = der[at], der[at + 1]
    at += 2
    if first < 0x80:
        length = first
    else:
        size = first & 0x7F
        if size == 0 or size > 4 or at + size > len(der):
            return None
        length = int.from_bytes(der[at:at + size], "big")
        at += size
    end = at + length
    return (tag, at, end) if end <= len(der) else None


def _is_certificate(der: bytes) -> bool:
    """Certificate ::= SEQUENCE { tbsCertificate SEQUENCE (starting with the
    [0] version or the serial INTEGER), signatureAlgorithm SEQUENCE,
    signatureValue BIT STRING }, spanning the whole block. Private keys
    (PKCS#1, PKCS#8, SEC1) start with an INTEGER and fail it."""
    outer = _tlv(der, 0)
    if outer is None or outer[0] != _SEQUENCE or outer[2] != len(der):
        return False
    tags = []
    at, end = outer[1], outer[2]
    first_of_tbs = None
    while at < end:
        element = _tlv(der, at)
        if element is None or element[2] > end:
            return False
        if not tags:
            inner = _tlv(der, element[1])
            first_of_tbs = inner[0] if inner is not None else None
        tags.append(element[0])
        at = element[2]
    return tags == [_SEQUENCE, _SEQUENCE, _BIT_STRING] and first_of_tbs in (_VERSION, _INTEGER)


def read_bundle(path: Path) -> Bundle:
    """The file's bytes when they are a certificate bundle; NotABundle or OSError otherwise."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would hang the read or never end
        raise NotABundle("it is not a regular file")
    return _read(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=8)
def _read(path: str, size: int, mtime_ns: int) -> Bundle:
    # Keyed by size and mtime: every spec of a project names the same bundle.
    if size > MAX_BYTES:
        raise NotABundle(f"it is {size} bytes, more than a CA bundle's {MAX_BYTES}")
    with open(path, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise NotABundle(f"it is more than a CA bundle's {MAX_BYTES} bytes")
    return Bundle(data, parse_bundle(data))


def bundle_for_build(path: Path) -> bytes:
    """The bytes the build gets, checked again as they are read: the file may
    have changed since the spec named it."""
    try:
        return read_bundle(path).data
    except (OSError, NotABundle) as exc:
        raise SpecError(f"the CA bundle {path} is no longer a bundle of PEM certificates: {exc}",
                        fix="point ca_bundle (or RAYBAKE_CA_BUNDLE) at a file holding only "
                            "-----BEGIN CERTIFICATE----- blocks") from None

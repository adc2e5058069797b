"""An OCI registry over HTTP (the distribution API): artifacts that refer to a
pushed image (OCI 1.1 referrers), which the docker CLI cannot push.

An artifact is an image manifest with an ``artifactType``, one layer holding
the document and a ``subject`` naming the image's manifest; the image itself is
untouched, so its digest stays the reproducible one. A registry without the
referrers API (distribution 2.x, Debian's docker-registry) gets the OCI
fallback too: an index under the tag ``sha256-<digest of the image>`` listing
the artifacts, which is where `oras discover` looks on such registries.

Credentials come from the docker CLI's config (``auths`` entries, as `docker
login` writes them without a credential helper). Registries on 127.0.0.1 and
localhost speak plain HTTP, as Docker allows them to."""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker_image import reference as grammar

from raybake.errors import RegistryError
from raybake.reference import Reference
from raybake.settings import REGISTRY_TIMEOUT

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"
_EMPTY_BLOB = b"{}"
_ACCEPT = ", ".join([MANIFEST, INDEX, "application/vnd.docker.distribution.manifest.v2+json",
                     "application/vnd.docker.distribution.manifest.list.v2+json"])
FIX = ("check that the registry is up and `docker login` to it (raybake reads the `auths` entries of "
       "~/.docker/config.json; a credential helper's are not read)")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Descriptor:
        return cls(data["mediaType"], data["digest"], int(data["size"]), data.get("artifactType"),
                   tuple(sorted((data.get("annotations") or {}).items())))


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Session:
    """Requests to one repository, answering the registry's auth challenge once."""

    def __init__(self, reference: Reference) -> None:
        if not reference.registry:
            raise RegistryError(f"{reference} names no registry", fix="use REGISTRY/REPOSITORY[:TAG]")
        host, self.path = grammar.Reference.split_docker_domain(reference.repository)
        host = "registry-1.docker.io" if host == "docker.io" else host
        local = host.split(":")[0] in ("127.0.0.1", "localhost", "::1")
        self.base = f"{'http' if local else 'https'}://{host}/v2/{self.path}"
        self.host = host
        self.scope = f"repository:{self.path}:pull,push"
        self.authorization: str | None = None

    def _credentials(self) -> str | None:
        config = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
        try:
            auths = json.loads(config.read_text()).get("auths", {})
        except (OSError, ValueError):
            return None
        for key, entry in auths.items():
            if re.sub(r"^https?://", "", key).split("/")[0] == self.host and entry.get("auth"):
                return entry["auth"]
        return None

    def _authorize(self, challenge: str) -> None:
        scheme, _, params = challenge.partition(" ")
        basic = self._credentials()
        if scheme.lower() == "basic" and basic:
            self.authorization = f"Basic {basic}"
            return
        if scheme.lower() != "bearer":
            raise RegistryError(f"the registry {self.host} asks for credentials raybake does not have", fix=FIX)
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        query = urllib.parse.urlencode({"service": fields.get("service", ""), "scope": self.scope})
        request = urllib.request.Request(f"{fields['realm']}?{query}")
        if basic:
            request.add_header("Authorization", f"Basic {basic}")
        with urllib.request.urlopen(request, timeout=REGISTRY_TIMEOUT.value()) as response:
            token = json.loads(response.read())
        self.authorization = f"Bearer {token.get('token') or token.get('access_token')}"

    def request(self, method: str, url: str, *, data: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body); 404 is an answer, any other failure a RegistryError."""
        for attempt in (1, 2):
            request = urllib.request.Request(url if url.startswith("http") else f"{self.base}{url}", data=data,
                                             method=method, headers=dict(headers or {}))
            if self.authorization:
                request.add_header("Authorization", self.authorization)
            try:
                with urllib.request.urlopen(request, timeout=REGISTRY_TIMEOUT.value()) as response:
                    return response.status, dict(response.headers), response.read()
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 1 and (challenge := exc.headers.get("WWW-Authenticate")):
                    self._authorize(challenge)
                    continue
                if exc.code == 404:
                    return 404, dict(exc.headers), b""
                raise RegistryError(f"the registry {self.host} answered {method} {url} with {exc.code}: "
                                    f"{exc.read()[:300].decode(errors='replace')}", fix=FIX) from None
            except OSError as exc:
                raise RegistryError(f"the registry {self.host} did not answer ({exc})", fix=FIX) from None
        raise RegistryError(f"the registry {self.host} refused raybake's credentials", fix=FIX)

    def put_blob(self, data: bytes) -> None:
        digest = _digest(data)
        if self.request("HEAD", f"/blobs/{digest}")[0] == 200:
            return
        _, headers, _ = self.request("POST", "/blobs/uploads/", data=b"")
        location = headers.get("Location", "")
        if location.startswith("/"):
            location = f"{self.base.split('/v2/')[0]}{location}"
        sep = "&" if "?" in location else "?"
        self.request("PUT", f"{location}{sep}digest={digest}", data=data,
                     headers={"Content-Type": "application/octet-stream"})

    def get_manifest(self, ref: str) -> tuple[str, bytes] | None:
        status, headers, body = self.request("GET", f"/manifests/{ref}", headers={"Accept": _ACCEPT})
        if status == 404:
            return None
        return headers.get("Content-Type", MANIFEST).split(";")[0], body

    def put_manifest(self, ref: str, media_type: str, body: bytes) -> dict[str, str]:
        return self.request("PUT", f"/manifests/{ref}", data=body, headers={"Content-Type": media_type})[1]


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def attach(image: str, artifact_type: str, content: bytes, *,
           annotations: dict[str, str] | None = None) -> str:
    """Push ``content`` as an artifact referring to ``image`` (REPOSITORY@sha256:...);
    return the artifact's manifest digest. The same content attached again is
    the same artifact (no time in it), listed once."""
    ref = Reference.parse(image)
    if not ref.digest:
        raise RegistryError(f"{image} names no digest", fix="attach to the pushed digest (raybake build --push)")
    session = _Session(ref)
    found = session.get_manifest(ref.digest)
    if found is None:
        raise RegistryError(f"{image} is not in its registry", fix="push it first (raybake build --push)")
    subject = Descriptor(found[0], ref.digest, len(found[1]))
    session.put_blob(_EMPTY_BLOB)
    session.put_blob(content)
    manifest = {
        "schemaVersion": 2, "mediaType": MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": EMPTY, "digest": _digest(_EMPTY_BLOB), "size": len(_EMPTY_BLOB)},
        "layers": [{"mediaType": artifact_type, "digest": _digest(content), "size": len(content)}],
        "subject": subject.to_json(),
        **({"annotations": annotations} if annotations else {}),
    }
    body = _canonical(manifest)
    digest = _digest(body)
    headers = session.put_manifest(digest, MANIFEST, body)
    if not any(k.lower() == "oci-subject" for k in headers):
        _add_to_fallback_index(session, ref.digest,
                               Descriptor(MANIFEST, digest, len(body), artifact_type,
                                          tuple(sorted((annotations or {}).items()))))
    return digest


def _fallback_tag(digest: str) -> str:
    return digest.replace(":", "-")


def _add_to_fallback_index(session: _Session, subject: str, artifact: Descriptor) -> None:
    found = session.get_manifest(_fallback_tag(subject))
    index = json.loads(found[1]) if found else {"schemaVersion": 2, "mediaType": INDEX, "manifests": []}
    if any(m.get("digest") == artifact.digest for m in index["manifests"]):
        return
    index["manifests"].append(artifact.to_json())
    session.put_manifest(_fallback_tag(subject), INDEX, _canonical(index))


def referrers(image: str, artifact_type: str | None = None) -> list[Descriptor]:
    """The artifacts referring to ``image`` (REPOSITORY@sha256:...): the
    referrers API where the registry has it, else the fallback tag's index."""
    ref = Reference.parse(image)
    session = _Session(ref)
    query = f"?artifactType={urllib.parse.quote(artifact_type)}" if artifact_type else ""
    status, headers, body = session.request("GET", f"/referrers/{ref.digest}{query}", headers={"Accept": INDEX})
    if status != 200 or INDEX not in headers.get("Content-Type", ""):
        found = session.get_manifest(_fallback_tag(ref.digest or ""))
        body = found[1] if found else b'{"manifests": []}'
    listed = [Descriptor.from_json(m) for m in json.loads(body).get("manifests", [])]
    return [d for d in listed if artifact_type is None or d.artifact_type == artifact_type]


def artifact_content(image: str, artifact: Descriptor) -> bytes:
    """The document an artifact referring to ``image`` holds (its one layer), checked against its digest."""
    ref = Reference.parse(image)
    session = _Session(ref)
    found = session.get_manifest(artifact.digest)
    if found is None:
        raise RegistryError(f"the artifact {artifact.digest} of {image} is gone from its registry",
                            fix="attach it again (raybake build --push --force)")
    (layer,) = json.loads(found[1])["layers"]
    return _blob(session, layer["digest"], image)


def _blob(session: _Session, digest: str, image: str) -> bytes:
    """A blob of ``image``'s repository, checked against its digest."""
    status, _, body = session.request("GET", f"/blobs/{digest}")
    if status != 200 or _digest(body) != digest:
        raise RegistryError(f"the registry's copy of {digest} ({image}) is missing or altered",
                            fix="attach it again (raybake build --push --force)")
    return body


# cosign's attestations of an image: an image manifest under the tag
# sha256-HEX.att beside it, one layer per DSSE envelope, which is where
# `cosign verify-attestation` looks (without a sigstore bundle, as referrers).
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"  # empty on attestations
MAX_ATTESTATIONS = 100  # more layers than that are not read (cosign's own limit is 1000)


def attestation_tag(digest: str) -> str:
    return f"{_fallback_tag(digest)}.att"


def _attestation_layers(session: _Session, digest: str) -> list[dict[str, Any]]:
    found = session.get_manifest(attestation_tag(digest))
    return [dict(layer) for layer in json.loads(found[1]).get("layers", [])] if found else []


def add_attestation(image: str, envelope: bytes, predicate_type: str) -> None:
    """Add the DSSE ``envelope`` to the attestations of ``image``
    (REPOSITORY@sha256:...) as cosign does: a layer appended to the image under
    ``sha256-HEX.att``, the others kept; an envelope already there is not added again."""
    ref = Reference.parse(image)
    session = _Session(ref)
    layers = _attestation_layers(session, ref.digest or "")
    if any(layer.get("digest") == _digest(envelope) for layer in layers):
        return
    session.put_blob(envelope)
    layers.append({"mediaType": DSSE_ENVELOPE, "digest": _digest(envelope), "size": len(envelope),
                   "annotations": {COSIGN_SIGNATURE_ANNOTATION: "", "predicateType": predicate_type}})
    # The config go-containerregistry gives an image of these layers (uncompressed: diff ID = digest).
    config = _canonical({"architecture": "", "os": "", "config": {},
                         "created": "0001-01-01T00:00:00Z",
                         "history": [{"created": "0001-01-01T00:00:00Z"} for _ in layers],
                         "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]}})
    session.put_blob(config)
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                           "size": len(config)},
                "layers": layers}
    session.put_manifest(attestation_tag(ref.digest or ""), MANIFEST, _canonical(manifest))


def attestations(image: str) -> list[bytes]:
    """The DSSE envelopes attached to ``image`` (REPOSITORY@sha256:...) under
    its ``sha256-HEX.att`` tag, each checked against its digest; [] when none."""
    ref = Reference.parse(image)
    session = _Session(ref)
    layers = [layer for layer in _attestation_layers(session, ref.digest or "")
              if layer.get("mediaType") == DSSE_ENVELOPE][:MAX_ATTESTATIONS]
    return [_blob(session, layer["digest"], image) for layer in layers]


def manifest_digest(reference: str) -> str | None:
    """The digest the registry serves for ``reference`` (a tag or digest), or None when absent."""
    ref = Reference.parse(reference)
    found = _Session(ref).get_manifest(ref.digest or ref.tag or "latest")
    return _digest(found[1]) if found else None

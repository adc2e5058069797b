"""The input hash: a digest of exactly what decides an image's environment.

Canonical bytes only: sorted, compact JSON of normalised fields, then the raw
uv.lock bytes. Never ``str()``/``repr()`` of objects, so the hash is stable
across processes, Python versions and field order."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from raybake.project import Project
from raybake.spec import ImageSpec

HASH_SCHEMA = 2  # bump when the set of hashed inputs changes

# Parts of pyproject.toml that decide the environment; everything else
# ([tool.ruff], description, scripts, ...) is left out on purpose.
_PROJECT_KEYS = ("name", "requires-python", "dependencies", "optional-dependencies")
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")


@dataclass(frozen=True)
class InputHash:
    hexdigest: str

    @property
    def short(self) -> str:
        return self.hexdigest[:16]


def strip_credentials(value: Any) -> Any:
    """Drop ``user:token@`` from every URL inside ``value``."""
    if isinstance(value, str):
        return _URL_CREDENTIALS.sub(r"\g<scheme>", value)
    if isinstance(value, list):
        return [strip_credentials(v) for v in value]
    if isinstance(value, dict):
        return {k: strip_credentials(v) for k, v in value.items()}
    return value


def dependency_view(pyproject: dict[str, Any]) -> dict[str, Any]:
    project = pyproject.get("project", {})
    return strip_credentials({
        "project": {k: project[k] for k in _PROJECT_KEYS if k in project},
        "dependency-groups": pyproject.get("dependency-groups", {}),
        "tool.uv": pyproject.get("tool", {}).get("uv", {}),
    })


def hash_document(project: Project, spec: ImageSpec, *, template_digest: str, base_digest: str | None) -> dict[str, Any]:
    """The normalised inputs, as hashed (the lock's bytes follow them)."""
    return {
        "schema": HASH_SCHEMA,
        "pyproject": dependency_view(project.pyproject),
        "members": {m.path: dependency_view(m.pyproject) for m in project.local_packages},
        "groups": sorted(spec.groups),
        "extras": sorted(spec.extras),
        "dev": spec.dev,
        "base_image": spec.base_image,
        "base_digest": base_digest,  # when known (the name's or the pin's): a moved recorded base is another image
        "python": spec.python,  # what is asked for; the base image (hashed) decides the rest
        "package": spec.package,
        "all_packages": spec.all_packages,
        "uv": spec.uv_version,  # the image's, never the host's
        "template": template_digest,
        "platform": spec.platform,
        "apt_packages": sorted(spec.apt_packages),
        "runtime_apt_packages": sorted(spec.runtime_apt_packages),
        "python_apt": list(spec.python_apt),  # `base` is hashed through the fields its preset sets
        "env": dict(sorted(spec.env)),
        # Layering does not change the environment but does change the image.
        "heavy_packages": sorted(spec.heavy_packages),
        # zstd layers are another image; gzip, the default, adds nothing so earlier tags stay.
        **({"compression": spec.compression} if spec.compression != "gzip" else {}),
        **({"compression_level": spec.compression_level} if spec.compression_level is not None else {}),
    }


def canonical_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def hash_inputs(project: Project, spec: ImageSpec, *, template_digest: str,
                base_digest: str | None) -> InputHash:
    doc = canonical_bytes(hash_document(project, spec, template_digest=template_digest, base_digest=base_digest))
    h = hashlib.sha256()
    h.update(len(doc).to_bytes(8, "big"))  # length prefix: no ambiguity at the seam
    h.update(doc)
    h.update(project.lock_bytes)
    return InputHash(h.hexdigest())

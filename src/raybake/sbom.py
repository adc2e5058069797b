"""What an image holds and how it was made, as documents that travel with it.

Pure: the facts are read elsewhere (raybake.attest). The SBOM is uv's own
CycloneDX export of the spec's selection, completed with what the lock does not
list but the image holds: the base's OS packages, the uv binary, and what the
verification probe found installed. The provenance is an in-toto statement.
Neither holds a time or a random serial: the same image gives the same
documents, so attaching them again adds nothing."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from packaging.utils import canonicalize_name

SBOM_TYPE = "application/vnd.cyclonedx+json"
PROVENANCE_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PROVENANCE_PREDICATE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://github.com/raybake/raybake/build/v1"


@dataclass(frozen=True)
class OsPackage:
    name: str
    version: str
    arch: str


@dataclass(frozen=True)
class ImageFacts:
    """Read from the image itself (not from the lock)."""

    os_id: str  # /etc/os-release ID: debian, ubuntu, alpine
    os_version: str  # VERSION_ID
    os_packages: tuple[OsPackage, ...]
    installed: Mapping[str, str]  # distribution -> version, as the verification probe found them ({} when not run)
    verified: bool  # the build's verification passed in this run


def parse_dpkg_status(text: str) -> tuple[OsPackage, ...]:
    """The installed packages of a dpkg status file (``/var/lib/dpkg/status``)."""
    found = []
    for paragraph in text.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): ?(.*)$", paragraph, re.M))
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            found.append(OsPackage(fields["Package"], fields.get("Version", ""), fields.get("Architecture", "")))
    return tuple(sorted(found, key=lambda p: (p.name, p.arch)))


def parse_apk_installed(text: str) -> tuple[OsPackage, ...]:
    """The packages of Alpine's ``/lib/apk/db/installed`` (P: name, V: version, A: arch)."""
    found = []
    for paragraph in text.split("\n\n"):
        fields = dict(line.split(":", 1) for line in paragraph.splitlines() if len(line) > 2 and line[1] == ":")
        if "P" in fields:
            found.append(OsPackage(fields["P"], fields.get("V", ""), fields.get("A", "")))
    return tuple(sorted(found, key=lambda p: (p.name, p.arch)))


def parse_os_release(text: str) -> tuple[str, str]:
    fields = dict(re.findall(r'^(\w+)="?([^"\n]*)"?$', text, re.M))
    return fields.get("ID", "linux"), fields.get("VERSION_ID", "")


def compose_sbom(uv_export: dict[str, Any], facts: ImageFacts, *, image: str, digest: str,
                 input_hash: str, uv_version: str, uv_sha256: str, raybake_version: str) -> dict[str, Any]:
    """uv's CycloneDX export completed with the image's own facts; ``image``
    is the repository, ``digest`` the pushed manifest's."""
    bom = dict(uv_export)
    bom.pop("serialNumber", None)
    bom["serialNumber"] = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{image}@{digest}')}"
    metadata = dict(bom.get("metadata", {}))
    metadata.pop("timestamp", None)  # reproducible: the same image gives the same SBOM
    metadata["tools"] = [*metadata.get("tools", []), {"vendor": "raybake", "name": "raybake",
                                                      "version": raybake_version}]
    project = metadata.pop("component", None)
    metadata["component"] = {
        "type": "container", "bom-ref": "image", "name": image, "version": digest,
        "purl": f"pkg:oci/{image.rsplit('/', 1)[-1]}@{digest.replace(':', '%3A')}"
                f"?repository_url={image}",
        "properties": [{"name": "raybake:input-hash", "value": input_hash}],
    }
    metadata["properties"] = [
        {"name": "raybake:verification", "value": "passed" if facts.verified else "not run in this build"},
    ]
    bom["metadata"] = metadata

    components = [dict(c) for c in bom.get("components", [])]
    if project:
        components.insert(0, project)
    listed = {canonicalize_name(c["name"]): c for c in components}
    for name, component in listed.items():
        if facts.installed.get(name) == component.get("version"):
            component["properties"] = [*component.get("properties", []),
                                       {"name": "raybake:verified-installed", "value": "true"}]
    for name, version in sorted(facts.installed.items()):
        if name not in listed:  # in the environment though the lock's selection does not list it
            components.append({"type": "library", "bom-ref": f"found:{name}@{version}", "name": name,
                               "version": version, "purl": f"pkg:pypi/{name}@{version}",
                               "properties": [{"name": "raybake:found-by", "value": "verification"}]})
    components.append({"type": "application", "bom-ref": f"uv@{uv_version}", "name": "uv", "version": uv_version,
                       "purl": f"pkg:pypi/uv@{uv_version}",
                       "hashes": [{"alg": "SHA-256", "content": uv_sha256}],
                       "properties": [{"name": "raybake:path", "value": "/usr/local/bin/uv"}]})
    distro = f"{facts.os_id}-{facts.os_version}" if facts.os_version else facts.os_id
    kind = "apk" if facts.os_id == "alpine" else "deb"
    for p in facts.os_packages:
        components.append({"type": "library", "bom-ref": f"{kind}:{p.name}@{p.version}?arch={p.arch}",
                           "name": p.name, "version": p.version,
                           "purl": f"pkg:{kind}/{facts.os_id}/{p.name}@{p.version}?arch={p.arch}&distro={distro}"})
    bom["components"] = components
    return bom


def provenance_statement(*, image: str, digest: str, spec: Mapping[str, Any], input_hash: str,
                         hash_inputs: Mapping[str, Any], lock_sha256: str, base_image: str, base_digest: str,
                         raybake_version: str, uv_version: str) -> dict[str, Any]:
    """An in-toto statement (SLSA provenance v1) of how the image was made."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": image, "digest": {"sha256": digest.removeprefix("sha256:")}}],
        "predicateType": PROVENANCE_PREDICATE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"spec": dict(spec), "input_hash": input_hash,
                                       "input_hash_inputs": dict(hash_inputs)},
                "internalParameters": {"raybake_version": raybake_version, "uv_version": uv_version},
                "resolvedDependencies": [
                    {"uri": "uv.lock", "digest": {"sha256": lock_sha256}},
                    {"uri": f"docker-image://{base_image}", "digest": {"sha256": base_digest.removeprefix("sha256:")}},
                ],
            },
            "runDetails": {"builder": {"id": f"https://github.com/raybake/raybake@{raybake_version}"}},
        },
    }

"""SBOM and provenance of a pushed image, attached to it in its registry as OCI
referrers (raybake.tools.registry), and read back by `raybake sbom` /
`raybake provenance`; the signed verification statement checked by
`raybake verify --attestation`.

BuildKit's own ``--attest type=provenance`` is not used: its statement holds
the build's start and end times, so every build gave another image digest
(measured with BuildKit 0.13: the same inputs, a new index digest each time),
which breaks raybake's reproducible tags. raybake's documents hold no time."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from raybake import __version__
from raybake.dockerfile import template_digest
from raybake.errors import RegistryError
from raybake.hashing import hash_document
from raybake.plan import BuildPlan
from raybake.project import Project
from raybake.reference import Reference
from raybake.sbom import (PROVENANCE_TYPE, SBOM_TYPE, ImageFacts, compose_sbom, parse_apk_installed,
                          parse_dpkg_status, parse_os_release, provenance_statement)
from raybake.tools import docker, registry
from raybake.tools.uv import export_cyclonedx, uv_bin_for
from raybake.verify import Report

if TYPE_CHECKING:
    from raybake.signing import VerificationKey

# Reads the OS package databases with the venv's Python (a base may lack cat).
_READ_OS = ("import json\n"
            "def read(p):\n"
            "    try:\n        return open(p, encoding='utf-8', errors='replace').read()\n"
            "    except OSError:\n        return ''\n"
            "print(json.dumps({p: read(p) for p in ('/etc/os-release', '/var/lib/dpkg/status', "
            "'/lib/apk/db/installed')}))")


def image_facts(image_id: str, installed: dict[str, str] | None) -> ImageFacts:
    """The OS packages of the built image, and what verification found in its environment."""
    from raybake import contract

    code, out, err = docker.run_container(image_id, [contract.VENV_PYTHON, "-I", "-c", _READ_OS])
    if code != 0:
        raise RegistryError(f"could not read the OS packages of {image_id} (exit {code}): {(err or out)[-400:]}",
                            fix="the image must be raybake's build (its venv Python reads them)")
    files = json.loads(out)
    os_id, os_version = parse_os_release(files["/etc/os-release"])
    packages = (parse_apk_installed(files["/lib/apk/db/installed"]) if os_id == "alpine"
                else parse_dpkg_status(files["/var/lib/dpkg/status"]))
    return ImageFacts(os_id, os_version, packages, dict(installed or {}), installed is not None)


def documents(project: Project, plan: BuildPlan, image_id: str, digest_reference: str,
              installed: dict[str, str] | None) -> dict[str, bytes]:
    """The SBOM and provenance of the image pushed as ``digest_reference``, by artifact type."""
    from raybake.plan import uv_selection_args
    from raybake.spec import host_platform

    ref = Reference.parse(digest_reference)
    digest = ref.digest or ""
    spec = plan.spec
    uv_path = uv_bin_for(spec.platform, spec.uv_version, host=host_platform())
    sbom = compose_sbom(json.loads(export_cyclonedx(project, uv_selection_args(project, spec))),
                        image_facts(image_id, installed), image=ref.repository, digest=digest,
                        input_hash=plan.input_hash.hexdigest, uv_version=spec.uv_version,
                        uv_sha256=hashlib.sha256(uv_path.read_bytes()).hexdigest(), raybake_version=__version__)
    base_digest = plan.identity.base_digest or docker.base_digest(spec.base_image)
    statement = provenance_statement(
        image=ref.repository, digest=digest, spec=_spec_json(spec), input_hash=plan.input_hash.hexdigest,
        hash_inputs=hash_document(project, spec, template_digest=template_digest(),
                                  base_digest=plan.identity.base_digest),
        lock_sha256=hashlib.sha256(project.lock_bytes).hexdigest(), base_image=spec.base_image,
        base_digest=base_digest, raybake_version=__version__, uv_version=spec.uv_version)
    return {SBOM_TYPE: _json(sbom), PROVENANCE_TYPE: _json(statement)}


def _spec_json(spec: Any) -> dict[str, Any]:
    data = asdict(spec)
    data.pop("ca_bundle", None)  # this machine's proxy CA path: not how the image was made
    return json.loads(json.dumps(data, default=str))


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2, sort_keys=True).encode()


def attach_documents(project: Project, plan: BuildPlan, image_id: str, digest_reference: str,
                     installed: dict[str, str] | None) -> list[str]:
    """Attach the SBOM and provenance to the pushed image; their artifact digests."""
    return [registry.attach(digest_reference, kind, content, annotations={"dev.raybake.document": kind})
            for kind, content in documents(project, plan, image_id, digest_reference, installed).items()]


def read_document(reference: str, artifact_type: str) -> bytes:
    """The document of ``artifact_type`` attached to the image under ``reference`` (a tag or digest)."""
    ref = Reference.parse(reference)
    digest = ref.digest or registry.manifest_digest(reference)
    if digest is None:
        raise RegistryError(f"{reference} is not in its registry", fix="push it with `raybake build --push`")
    image = str(ref.with_digest(digest))
    found = registry.referrers(image, artifact_type)
    if not found:
        raise RegistryError(f"{image} has no {artifact_type} attached",
                            fix="attach it: `raybake build --push --force` pushes the image with its SBOM and provenance")
    return registry.artifact_content(image, found[-1])


@dataclass(frozen=True)
class AttestationReport(Report):
    """`raybake verify --attestation`: does a statement signed by the key say
    raybake verified the registry image under ``reference`` for the current lock?"""

    reference: str
    digest: str
    key: str  # the verification key's fingerprint
    spec: str
    input_hash: str  # the current plan's
    findings: tuple[str, ...]  # why no attached statement counts (empty: one does)
    notes: tuple[str, ...] = ()
    statement: dict[str, Any] | None = None  # the signed statement that counts

    def render(self) -> str:
        lines = [f"{self.reference}@{self.digest}: {'OK' if self.ok else 'FAILED'} (statement signed by "
                 f"{self.key}, spec {self.spec}, input hash {self.input_hash})"]
        lines += [f"  FAIL  {f}" for f in self.findings]
        lines += [f"  note  {n}" for n in self.notes]
        return "\n".join(lines)


def verify_attestation(project: Project, reference: str, name: str | None, key: VerificationKey) -> AttestationReport:
    """Check the signed statements attached to the registry image under
    ``reference`` against ``key`` and the current plan of spec ``name`` (by
    default the one the signed statement names), reading only the registry:
    the image is not pulled."""
    from raybake.planner import identities_for
    from raybake.signing import check_attestations, signed_statement, statement_problem

    parsed = Reference.parse(reference)
    digest = parsed.digest or registry.manifest_digest(reference)
    if digest is None:
        raise RegistryError(f"{reference} is not in its registry", fix="push it with `raybake build --push`")
    envelopes = registry.attestations(str(parsed.with_digest(digest)))
    if name is None:  # the spec a statement signed by the key for this digest names
        for envelope in envelopes:
            try:
                statement = signed_statement(envelope, key)
            except ValueError:
                continue
            if statement_problem(statement, digest, "") is None:
                spec = statement["predicate"].get("spec")
                name = spec if isinstance(spec, str) else None
                break
    (identity,) = identities_for(project, (name,) if name else ())
    want = identity.input_hash.hexdigest
    found = check_attestations(envelopes, key, digest, want)
    notes = []
    lock = hashlib.sha256(project.lock_bytes).hexdigest()
    if found.statement is not None and found.statement["predicate"].get("lock_sha256") != lock:
        notes.append(f"signed for another uv.lock (sha256 {found.statement['predicate'].get('lock_sha256')}); "
                     f"this one (sha256 {lock}) gives spec {identity.spec.name} the same input hash")
    return AttestationReport(reference, digest, key.fingerprint, identity.spec.name, want, found.problems,
                             tuple(notes), found.statement)

"""Verifying a built image's environment against the lock, inside a container.

One container run of raybake.probe (no network) reports the environment; the
comparison with the lock happens here, on the host."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from typing import Any

from raybake.errors import VerificationFailed
from raybake.plan import BuildPlan, uv_selection_args
from raybake.project import Project, canonicalize_name
from raybake.spec import ImageSpec
from raybake.tools import docker
from raybake.tools.uv import export_requirements

# Set by Dockerfile.base; Ray workers depend on them.
REQUIRED_ENV = {
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    "UV_PROJECT_ENVIRONMENT": "/opt/venv",
    "VIRTUAL_ENV": "/opt/venv",
    "UV_LINK_MODE": "copy",
    "UV_COMPILE_BYTECODE": "1",
    "UV_PYTHON_DOWNLOADS": "never",
}
# Seeded into the venv by Dockerfile.base (Ray bootstraps with pip); allowed
# beside the lock unless the lock pins them, then their versions must match.
SEED_PACKAGES = frozenset({"pip", "setuptools", "wheel"})
IMPORT_TIMEOUT = 60
VENV_PYTHON = "/opt/venv/bin/python"
_MARK = "@@RAYBAKE@@"


@dataclass(frozen=True)
class Finding:
    check: str
    message: str


@dataclass(frozen=True)
class VerifyReport:
    image: str
    findings: tuple[Finding, ...]
    checks: tuple[str, ...]
    facts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ok": self.ok}, indent=2, sort_keys=True)

    def render(self) -> str:
        lines = [f"{self.image}: {'OK' if self.ok else 'FAILED'} "
                 f"({len(self.checks)} checks, {self.seconds:.1f} s)"]
        failed = {f.check for f in self.findings}
        for check in self.checks:
            lines.append(f"  {'FAIL' if check in failed else 'ok  '}  {check}")
            lines += [f"        {f.message}" for f in self.findings if f.check == check]
        return "\n".join(lines)


def locked_selection(requirements: str, markers: dict[str, str] | None) -> dict[str, str | None]:
    """{name: version} of the exported lock selection that applies to ``markers``
    (every line, when ``markers`` is None).

    A URL or path requirement has version None: only its presence is checked."""
    from packaging.requirements import Requirement

    selected: dict[str, str | None] = {}
    for raw in requirements.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "-")):
            continue
        req = Requirement(line)
        if markers is not None and req.marker is not None and not req.marker.evaluate(markers):
            continue
        pins = [s.version for s in req.specifier if s.operator == "=="]
        selected[canonicalize_name(req.name)] = pins[0] if pins else None
    return selected


def compare(project: Project, spec: ImageSpec, requirements: str, probe: dict[str, Any]) -> list[Finding]:
    """Every finding of one image against its lock selection. Pure."""
    findings: list[Finding] = []
    installed: dict[str, str] = probe["distributions"]
    expected = locked_selection(requirements, probe["markers"])

    for name in sorted(expected.keys() - installed.keys()):
        findings.append(Finding("lock", f"{name}=={expected[name]} is in the lock but not installed"))
    own = {project.name, *(m.name for m in project.members)}
    for name in sorted(installed.keys() - expected.keys() - SEED_PACKAGES - own):
        findings.append(Finding("lock", f"{name}=={installed[name]} is installed but not in the lock"))
    for name in sorted(expected.keys() & installed.keys()):
        if expected[name] is not None and expected[name] != installed[name]:
            findings.append(Finding("lock", f"{name} is {installed[name]}, the lock has {expected[name]}"))

    if probe["pip_check"]["code"] != 0:
        findings.append(Finding("uv pip check", probe["pip_check"]["output"].strip()))

    for name in sorted(own & installed.keys()):
        findings.append(Finding(
            "project absent",
            f"{name} {installed[name]} is installed in the image; it must come only through working_dir "
            "(Ray would fail with '.dist-info ... Directory not empty')"))

    py = probe["python"]
    if ".".join(py.split(".")[:2]) != spec.python:
        findings.append(Finding("python", f"the image has Python {py}, the spec asks for {spec.python}"))
    requires = project.pyproject.get("project", {}).get("requires-python")
    if requires:
        from packaging.specifiers import SpecifierSet

        if py not in SpecifierSet(requires):
            findings.append(Finding("python", f"Python {py} does not satisfy requires-python {requires}"))

    if not probe["pip_importable"]:
        findings.append(Finding("pip", "pip is not importable; Ray bootstraps per-task environments with it"))

    if "ray" in expected:
        if probe["ray_version"] is None:
            findings.append(Finding("ray", f"import ray failed: {probe['import_failures'].get('ray', 'unknown')}"))
        elif expected["ray"] and probe["ray_version"] != expected["ray"]:
            findings.append(Finding("ray", f"ray.__version__ is {probe['ray_version']}, the lock has {expected['ray']}"))

    for module, error in sorted(probe["import_failures"].items()):
        findings.append(Finding("imports", f"import {module}: {error}"))

    for key, want in REQUIRED_ENV.items():
        got = probe["env"].get(key)
        if got != want:
            findings.append(Finding("environment", f"{key} is {got!r}, expected {want!r}"))
    return findings


CHECKS = ("lock", "uv pip check", "project absent", "python", "pip", "ray", "imports", "environment")


def verify_image(image: str, project: Project, spec: ImageSpec) -> VerifyReport:
    start = time.monotonic()
    requirements = export_requirements(project, uv_selection_args(spec))
    # Markers are evaluated later, against the image: this is a superset.
    locked = sorted(locked_selection(requirements, None))
    args = {"locked": locked, "skip": list(spec.import_skip), "timeout": IMPORT_TIMEOUT, "env": sorted(REQUIRED_ENV),
            "ray": "ray" in locked}
    source = files("raybake").joinpath("probe.py").read_text(encoding="utf-8")
    code, out, err = docker.run_container(image, [VENV_PYTHON, "-c", source, json.dumps(args)])
    if _MARK not in out:
        raise VerificationFailed(
            f"could not inspect the environment of {image}: {VENV_PYTHON} failed (exit {code}):\n"
            f"{(err or out).strip()[-2000:]}",
            fix="the image must be built by raybake (Dockerfile.base puts the environment in /opt/venv)")
    probe = json.loads(out.rsplit(_MARK, 1)[1])
    findings = compare(project, spec, requirements, probe)
    facts = {"python": probe["python"], "distributions": len(probe["distributions"]),
             "modules_imported": probe["imported"], "probe_seconds": probe["seconds"]}
    checks = tuple(c for c in CHECKS if c != "ray" or args["ray"])
    return VerifyReport(image, tuple(findings), checks, facts, time.monotonic() - start)


def verify_or_raise(project: Project, plan: BuildPlan, image_id: str) -> None:
    """The build's gate: a failing image is never tagged."""
    report = verify_image(image_id, project, plan.spec)
    if not report.ok:
        raise VerificationFailed(
            f"the built image's environment does not match the lock; it was not tagged:\n{report.render()}",
            fix="fix what the findings name (the lock, the spec's groups/extras, import_skip for modules "
                "that cannot import without hardware), then build again")

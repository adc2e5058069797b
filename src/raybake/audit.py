"""Vulnerability audits of exactly what a spec installs: `raybake audit` and `raybake build --audit`.

uv's own `uv audit` matches the lock against an OSV-compatible service (versions,
aliases, fixed versions), told to leave out the groups and extras the spec does
not select; raybake keeps the findings in the spec's selection as its uv export
lists it (a workspace member's with `package:`, which uv audit cannot select)
and rates each one from the OSV records of its ID and aliases (their CVSS
vectors, else the database's own rating), which uv's report does not carry."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from packaging.utils import canonicalize_name

from raybake.errors import VulnerabilitiesFound
from raybake.project import Project
from raybake.spec import ImageSpec

OSV_SERVICE = "https://api.osv.dev/"  # uv's default too
SERVICE_VARIABLE = "RAYBAKE_AUDIT_SERVICE_URL"
_RANK = {"none": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
# GitHub's and other databases' own ratings (database_specific.severity).
_DATABASE_RATING = {"LOW": "low", "MODERATE": "medium", "MEDIUM": "medium", "HIGH": "high", "CRITICAL": "critical"}


def service_url(environ: Mapping[str, str] | None = None) -> str:
    return (os.environ if environ is None else environ).get(SERVICE_VARIABLE) or OSV_SERVICE


@dataclass(frozen=True)
class Finding:
    package: str
    version: str
    id: str
    aliases: tuple[str, ...]
    severity: str | None  # none, low, medium, high or critical; None: no record of it gives one
    score: float | None  # the highest CVSS base score among its records
    fixed_versions: tuple[str, ...]
    summary: str
    link: str | None

    def counts_at(self, threshold: str | None) -> bool:
        """Does it count at ``threshold`` (None: every finding)? One whose severity
        no record tells counts at every threshold: unknown is not "low"."""
        return threshold is None or self.severity is None or _RANK[self.severity] >= _RANK[threshold]

    def rating(self) -> str:
        if self.severity is None:
            return "severity unknown"
        return self.severity + (f" (CVSS {self.score:.1f})" if self.score is not None else "")

    def fix(self) -> str:
        if not self.fixed_versions:
            return f"no fixed release of {self.package} is known yet: drop it, or accept the risk"
        return (f"upgrade to {self.fixed_versions[0]} or later: `uv lock --upgrade-package {self.package}` "
                "(raise any upper bound on it in pyproject.toml first)")

    def headline(self) -> str:
        aliases = f" ({', '.join(self.aliases)})" if self.aliases else ""
        return f"{self.package} {self.version}: {self.id}{aliases}, {self.rating()}"

    def as_json(self) -> dict[str, Any]:
        return {"package": self.package, "version": self.version, "id": self.id, "aliases": list(self.aliases),
                "severity": self.severity, "score": self.score, "fixed_versions": list(self.fixed_versions),
                "summary": self.summary, "link": self.link}


@dataclass(frozen=True)
class AuditReport:
    spec: str
    service: str
    packages: int  # how many packages the spec's selection holds
    findings: tuple[Finding, ...]
    threshold: str | None  # the spec's audit_severity

    def blocking(self) -> tuple[Finding, ...]:
        """The findings at or above the spec's audit_severity: what `build --audit` refuses."""
        return tuple(f for f in self.findings if f.counts_at(self.threshold))

    def to_json(self) -> str:
        return json.dumps({"spec": self.spec, "service": self.service, "packages": self.packages,
                           "audit_severity": self.threshold,
                           "findings": [f.as_json() for f in self.findings]}, indent=2)

    def render(self) -> str:
        lines = [f"spec '{self.spec}': {counted(len(self.findings), 'known vulnerability', 'known vulnerabilities')} "
                 f"in the {counted(self.packages, 'package', 'packages')} it installs ({self.service})"]
        for f in self.findings:
            lines += [f.headline(), *([f"  {f.summary}"] if f.summary else []), f"  fix: {f.fix()}"]
        return "\n".join(lines)


def uv_audit_args(project: Project, spec: ImageSpec) -> tuple[str, ...]:
    """uv audit's flags that leave out every group and extra the spec does not
    select (uv audits all of them unless told not to)."""
    tables = [project.pyproject, *(p.pyproject for p in project.local_packages)]
    groups = {g for t in tables for g in t.get("dependency-groups", {})} | {"dev"}
    extras = {e for t in tables for e in t.get("project", {}).get("optional-dependencies", {})}
    chosen_groups = {canonicalize_name(g) for g in (*spec.groups, *(("dev",) if spec.dev else ()))}
    chosen_extras = {canonicalize_name(e) for e in spec.extras}
    args: list[str] = []
    for group in sorted(groups):
        if canonicalize_name(group) not in chosen_groups:
            args += ["--no-group", group]
    for extra in sorted(extras):
        if canonicalize_name(extra) not in chosen_extras:
            args += ["--no-extra", extra]
    return tuple(args)


def audit_spec(project: Project, spec: ImageSpec, *, service: str | None = None) -> AuditReport:
    """Audit what ``spec`` installs against the OSV-compatible service (default:
    RAYBAKE_AUDIT_SERVICE_URL, else api.osv.dev)."""
    from raybake.planner import spec_requirements
    from raybake.tools import osv, uv
    from raybake.verify import locked_selection

    service = service or service_url()
    selection = locked_selection(spec_requirements(project, spec), None)
    report = uv.audit(project, uv_audit_args(project, spec), service)
    findings = findings_in(report, selection, lambda vuln_id: osv.vulnerability(service, vuln_id))
    return AuditReport(spec.name, service, len(selection), findings, spec.audit_severity)


def findings_in(report: Mapping[str, Any], selection: Mapping[str, str | None],
                record: Callable[[str], Mapping[str, Any] | None]) -> tuple[Finding, ...]:
    """The findings of uv's JSON ``report`` in ``selection`` ({name: version}, None
    for a URL or path requirement), each rated from the records (``record(ID)``,
    None when the service has none) of its ID and aliases; most severe first."""
    found = []
    for vuln in report.get("vulnerabilities", ()):
        name, version = canonicalize_name(vuln["dependency"]["name"]), vuln["dependency"]["version"]
        if name not in selection or selection[name] not in (None, version):
            continue
        ids = [vuln["id"], *(a for a in vuln.get("aliases", ()) if a != vuln["id"])]
        records = [r for r in map(record, ids) if r]
        severity, score = rate(records)
        summary = vuln.get("summary") or next((r["summary"] for r in records if r.get("summary")), "") \
            or (vuln.get("description") or "").strip().split("\n", 1)[0][:200]
        found.append(Finding(package=name, version=version, id=vuln["id"], aliases=tuple(ids[1:]),
                             severity=severity, score=score, fixed_versions=tuple(vuln.get("fix_versions", ())),
                             summary=summary, link=vuln.get("link")))
    # Most severe first; an unknown severity above all, as it counts at every threshold.
    return tuple(sorted(found, key=lambda f: (-_RANK.get(f.severity or "", 5), f.package, f.id)))


def rate(records: Iterable[Mapping[str, Any]]) -> tuple[str | None, float | None]:
    """The highest severity the records give (their CVSS vectors' base scores, and
    their databases' own ratings), with the highest CVSS score; (None, None) when none gives one."""
    levels: list[str] = []
    scores: list[float] = []
    for record in records:
        entries = [*record.get("severity", ()), *(e for a in record.get("affected", ()) for e in a.get("severity", ()))]
        for entry in entries:
            score = cvss_score(entry.get("type", ""), entry.get("score", ""))
            if score is not None:
                scores.append(score)
                levels.append(cvss_rating(score))
        own = _DATABASE_RATING.get(str(record.get("database_specific", {}).get("severity", "")).upper())
        if own:
            levels.append(own)
    severity = max(levels, key=_RANK.__getitem__) if levels else None
    return severity, max(scores) if scores else None


def cvss_score(kind: str, vector: str) -> float | None:
    """The base score of an OSV severity entry's CVSS vector; None for another kind or a vector cvss refuses."""
    import cvss

    calculator = {"CVSS_V2": cvss.CVSS2, "CVSS_V3": cvss.CVSS3, "CVSS_V4": cvss.CVSS4}.get(kind)
    if calculator is None:
        return None
    try:
        return float(calculator(vector).base_score)
    except cvss.CVSSError:
        return None


def cvss_rating(score: float) -> str:
    """CVSS's qualitative rating of a base score (the same bands in v3 and v4)."""
    for floor, level in ((9.0, "critical"), (7.0, "high"), (4.0, "medium"), (0.1, "low")):
        if score >= floor:
            return level
    return "none"


def gate(project: Project, spec: ImageSpec, *, warn: Callable[[str], None]) -> AuditReport:
    """`build --audit`: refuse (VulnerabilitiesFound) when the spec's selection has
    findings at or above its audit_severity; findings below it are warnings."""
    report = audit_spec(project, spec)
    blocking = report.blocking()
    for finding in report.findings:
        if finding not in blocking:
            warn(f"{finding.headline()}, below audit_severity {report.threshold}; fix: {finding.fix()}")
    if blocking:
        threshold = f"at or above audit_severity {report.threshold} ({spec.source})" if report.threshold else \
            "(no audit_severity is set, so every finding counts)"
        raise VulnerabilitiesFound(
            f"the image of spec '{spec.name}' would install "
            f"{counted(len(blocking), 'known vulnerability', 'known vulnerabilities')} {threshold}; "
            "nothing was built or tagged:\n"
            + "\n".join(f"  {f.headline()}; fix: {f.fix()}" for f in blocking),
            fix="upgrade those packages as each line says, then build again (`raybake audit "
                f"{spec.name}` lists every finding); or set audit_severity in {spec.source} to the lowest severity "
                "that must stop a build (low, medium, high or critical)")
    return report


def counted(n: int, one: str, many: str) -> str:
    return f"{n or 'no'} {one if n == 1 else many}"

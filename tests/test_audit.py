"""`raybake audit` and `raybake build --audit`: uv's real `uv audit` against a local
OSV-compatible service (tests/helpers.OSVServer) serving real OSV records
(tests/data/osv) for the packages tests/fixtures/audit locks.

The fixture's specs: `clean` (six alone), `http` (the extra with requests 2.31.0,
GHSA-9wx4-h78v-vm56, medium, and certifi 2023.5.7, GHSA-xqr8-7jwr-rhp7 with its
alias PYSEC-2023-135, high; audit_severity: high) and `templates` (the group with
jinja2 3.1.2, GHSA-h5c8-rqwp-cp95, medium; audit_severity: high)."""

from __future__ import annotations

import json
import os
import socket

import pytest
from helpers import OSVServer, local_images_of, raybake

from raybake.errors import SpecError, ToolError, VulnerabilitiesFound


@pytest.fixture(scope="module")
def osv():
    with OSVServer() as server:
        yield server


@pytest.fixture
def audited(copy_fixture, osv, monkeypatch):
    """The fixture project, with the local service as raybake's (for in-process calls too)."""
    monkeypatch.setenv("RAYBAKE_AUDIT_SERVICE_URL", osv.url)
    return copy_fixture("audit")


def env(service: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "RAYBAKE_AUDIT_SERVICE_URL": service, **extra}


def test_audit_reports_the_selections_advisories_with_severity_and_fix(audited, osv):
    osv.queries.clear()
    proc = raybake("audit", "http", "--json", cwd=audited, env=env(osv.url), check=False)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["spec"] == "http" and report["audit_severity"] == "high"
    assert report["findings"] == [
        {"package": "certifi", "version": "2023.5.7", "id": "GHSA-xqr8-7jwr-rhp7",
         "aliases": ["CVE-2023-37920", "PYSEC-2023-135"], "severity": "high", "score": 7.5,
         "fixed_versions": ["2023.7.22"], "summary": "Removal of e-Tugra root certificate",
         "link": "https://nvd.nist.gov/vuln/detail/CVE-2023-37920"},
        {"package": "requests", "version": "2.31.0", "id": "GHSA-9wx4-h78v-vm56", "aliases": ["CVE-2024-35195"],
         "severity": "medium", "score": 5.6, "fixed_versions": ["2.32.2"],
         "summary": "Requests `Session` object does not verify requests after making first request with "
                    "verify=False",
         "link": "https://nvd.nist.gov/vuln/detail/CVE-2024-35195"},
    ]
    # The group the spec does not select is not even asked about.
    assert {name for name, _ in osv.queries} == {"certifi", "charset-normalizer", "idna", "requests", "six",
                                                 "urllib3"}

    text = raybake("audit", "http", cwd=audited, env=env(osv.url), check=False)
    assert text.returncode == 1
    assert "certifi 2023.5.7: GHSA-xqr8-7jwr-rhp7 (CVE-2023-37920, PYSEC-2023-135), high (CVSS 7.5)" in text.stdout
    assert "fix: upgrade to 2.32.2 or later: `uv lock --upgrade-package requests`" in text.stdout
    assert "2 known vulnerabilities in the packages of spec 'http'" in text.stderr


def test_a_clean_selection_exits_0(audited, osv):
    proc = raybake("audit", "clean", cwd=audited, env=env(osv.url))
    assert "spec 'clean': no known vulnerabilities in the 1 package it installs" in proc.stdout
    assert json.loads(raybake("audit", "clean", "--json", cwd=audited, env=env(osv.url)).stdout)["findings"] == []


def test_a_selected_group_is_audited(audited, osv):
    proc = raybake("audit", "templates", "--json", cwd=audited, env=env(osv.url), check=False)
    assert proc.returncode == 1
    assert [(f["package"], f["id"], f["severity"]) for f in json.loads(proc.stdout)["findings"]] == [
        ("jinja2", "GHSA-h5c8-rqwp-cp95", "medium")]


def test_build_audit_gates_on_the_specs_severity(audited):
    """Below audit_severity: warnings, the build may go on; at or above: refused, before anything is built."""
    from raybake.audit import gate
    from raybake.planner import specs_for
    from raybake.project import load_project

    project = load_project(audited)
    templates, http = (specs_for(project, (name,))[0] for name in ("templates", "http"))
    warnings: list[str] = []
    assert len(gate(project, templates, warn=warnings.append).findings) == 1
    assert warnings and "jinja2 3.1.2: GHSA-h5c8-rqwp-cp95" in warnings[0] and "below audit_severity high" in warnings[0]
    with pytest.raises(VulnerabilitiesFound) as refused:
        gate(project, http, warn=warnings.append)
    assert "1 known vulnerability at or above audit_severity high (images/http.yaml)" in refused.value.message
    assert "certifi 2023.5.7: GHSA-xqr8-7jwr-rhp7" in refused.value.message
    assert "requests" not in refused.value.message  # medium: a warning
    assert "nothing was built or tagged" in refused.value.message


@pytest.mark.engine
def test_build_audit_refuses_before_building_and_tags_nothing(engine, audited, osv, unique_repo):
    proc = raybake("build", "http", "--audit", cwd=audited,
                   env=engine.env(RAYBAKE_REPOSITORY=unique_repo, RAYBAKE_AUDIT_SERVICE_URL=osv.url), check=False)
    assert proc.returncode == 1, proc.stderr
    assert "the image of spec 'http' would install 1 known vulnerability at or above audit_severity high" in proc.stderr
    assert "`uv lock --upgrade-package certifi`" in proc.stderr
    assert "building " not in proc.stderr
    assert local_images_of(unique_repo) == []


def test_an_unreachable_service_is_an_error_with_the_fix(audited):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/"
    proc = raybake("audit", "http", cwd=audited, env=env(closed, UV_HTTP_RETRIES="0"), check=False)
    assert proc.returncode == 2
    assert f"the vulnerability service {closed} could not be reached" in proc.stderr
    assert "fix: check network access and proxy settings" in proc.stderr and "RAYBAKE_AUDIT_SERVICE_URL" in proc.stderr


def test_a_service_that_is_not_osv_is_named(audited, osv):
    proc = raybake("audit", "http", cwd=audited, env=env(osv.url + "not-osv/", UV_HTTP_RETRIES="0"), check=False)
    assert proc.returncode == 2
    assert f"{osv.url}not-osv/ did not answer as an OSV vulnerability service" in proc.stderr
    assert "404 Not Found" in proc.stderr


def test_a_uv_without_audit_is_named_with_the_fix(audited, monkeypatch):
    """A real uv release from before `uv audit` (0.9.0, from PyPI) as the uv raybake runs."""
    from raybake.audit import audit_spec
    from raybake.planner import specs_for
    from raybake.project import load_project
    from raybake.tools import uv

    project = load_project(audited)
    (spec,) = specs_for(project, ("http",))
    old = uv.uv_bin_for("linux/amd64", "0.9.0", host="linux/amd64")
    monkeypatch.setattr(uv, "uv_bin", lambda: old)
    with pytest.raises(ToolError) as error:
        audit_spec(project, spec)
    assert f"the uv raybake runs ({old}) has no `uv audit` command" in error.value.message
    assert "unrecognized subcommand 'audit'" in error.value.message
    assert "uv tool install --reinstall raybake" in error.value.fix


def test_audit_severity_takes_cvss_ratings_only(copy_fixture):
    from raybake.planner import specs_for
    from raybake.project import load_project

    root = copy_fixture("audit")
    (root / "images/http.yaml").write_text("extras: [http]\naudit_severity: severe\n")
    with pytest.raises(SpecError, match="audit_severity must be one of low, medium, high, critical"):
        specs_for(load_project(root), ("http",))


# ---- pure: selection flags, filtering, rating ------------------------------------------------------

def test_uv_audit_leaves_out_what_the_spec_does_not_select(copy_fixture):
    from raybake.audit import uv_audit_args
    from raybake.planner import specs_for
    from raybake.project import load_project

    project = load_project(copy_fixture("audit"))
    args = {name: uv_audit_args(project, specs_for(project, (name,))[0]) for name in ("clean", "http", "templates")}
    assert args == {
        "clean": ("--no-group", "dev", "--no-group", "templates", "--no-extra", "http"),
        "http": ("--no-group", "dev", "--no-group", "templates"),
        "templates": ("--no-group", "dev", "--no-extra", "http"),
    }


def test_findings_outside_the_selection_are_dropped():
    """uv audits a whole workspace; a spec with `package:` installs one member's packages."""
    from raybake.audit import findings_in

    def vuln(name, version, vuln_id):
        return {"dependency": {"name": name, "version": version}, "id": vuln_id, "aliases": [],
                "fix_versions": [], "summary": "s", "link": None}

    report = {"vulnerabilities": [vuln("Jinja2", "3.1.2", "A"), vuln("requests", "2.31.0", "B"),
                                  vuln("certifi", "2023.5.7", "C"), vuln("mine", "1.0", "D")]}
    found = findings_in(report, {"jinja2": "3.1.2", "certifi": "2024.1.1", "mine": None}, lambda vuln_id: None)
    assert [(f.package, f.id, f.severity) for f in found] == [("jinja2", "A", None), ("mine", "D", None)]
    assert found[0].fix().startswith("no fixed release of jinja2 is known yet")


@pytest.mark.parametrize(("records", "rated"), [
    ([{"severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:H/I:H/A:N"}],
       "database_specific": {"severity": "MODERATE"}}], ("medium", 5.6)),
    ([{"database_specific": {"severity": "HIGH"}}], ("high", None)),  # no vector: the database's own rating
    ([{"affected": [{"severity": [{"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/"
                                                             "SC:N/SI:N/SA:N"}]}]}], ("critical", 9.3)),
    ([{"id": "PYSEC-2023-135"}, {"database_specific": {"severity": "LOW"}}], ("low", None)),  # the aliases' best
    ([{"severity": [{"type": "CVSS_V3", "score": "not a vector"}]}, {"id": "x"}], (None, None)),
])
def test_severity_comes_from_cvss_vectors_else_the_database(records, rated):
    from raybake.audit import rate

    assert rate(records) == rated


def test_a_finding_of_unknown_severity_counts_at_every_threshold():
    from raybake.audit import Finding

    def finding(severity):
        return Finding("p", "1", "X", (), severity, None, (), "", None)

    assert finding(None).counts_at("critical") and finding("critical").counts_at("critical")
    assert not finding("high").counts_at("critical") and finding("low").counts_at(None)

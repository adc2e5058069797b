"""The SBOM and provenance documents, pure: what they add to uv's export."""

import json

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from raybake.sbom import ImageFacts, OsPackage, compose_sbom, parse_dpkg_status, parse_os_release

STATUS = """Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u10

Package: removed-one
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: python3
Status: install ok installed
Architecture: amd64
Version: 3.11.2-1+b1
"""

UV_EXPORT = {"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "serialNumber": "urn:uuid:random",
             "metadata": {"timestamp": "2026-12-05T00:00:00Z", "component": {"type": "library", "name": "app"}},
             "components": [{"type": "library", "bom-ref": "six-1", "name": "six", "version": "1.17.0",
                             "purl": "pkg:pypi/six@1.17.0"}]}


def test_dpkg_status_lists_installed_packages_only():
    assert parse_dpkg_status(STATUS) == (OsPackage("libc6", "2.36-9+deb12u10", "amd64"),
                                         OsPackage("python3", "3.11.2-1+b1", "amd64"))
    assert parse_os_release('PRETTY_NAME="Debian"\nID=debian\nVERSION_ID="12"\n') == ("debian", "12")


def compose(installed):
    facts = ImageFacts("debian", "12", parse_dpkg_status(STATUS), installed, bool(installed))
    return compose_sbom(UV_EXPORT, facts, image="127.0.0.1:5000/app", digest="sha256:" + "a" * 64,
                        input_hash="f" * 64, uv_version="0.13.9", uv_sha256="0" * 64, raybake_version="0.1.0")


def test_sbom_is_valid_reproducible_and_adds_what_the_lock_does_not_list():
    bom = compose({"six": "1.17.0", "pip": "25.1"})
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(json.dumps(bom)) is None
    assert "timestamp" not in bom["metadata"] and bom == compose({"six": "1.17.0", "pip": "25.1"})
    by_name = {c["name"]: c for c in bom["components"]}
    assert {"name": "raybake:found-by", "value": "verification"} in by_name["pip"]["properties"]
    assert {"name": "raybake:verified-installed", "value": "true"} in by_name["six"]["properties"]
    assert by_name["libc6"]["purl"] == "pkg:deb/debian/libc6@2.36-9+deb12u10?arch=amd64&distro=debian-12"
    assert "removed-one" not in by_name and by_name["app"]["type"] == "library"
    assert by_name["uv"]["type"] == "application"

"""What a build is handed (raybake.build._build_request), pure: its context is made
on disk, no engine is asked."""

from pathlib import Path

import pytest
from test_dockerfile import recipe

from raybake.build import _build_request
from raybake.buildcache import CacheOptions
from raybake.errors import SpecError
from raybake.plan import CA_CONTEXT, CA_FILE
from raybake.project import load_project
from raybake.spec import load_specs

SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def test_the_ca_bundle_is_checked_again_as_the_build_reads_it(copy_fixture, tmp_path):
    bundle = tmp_path / "proxy.pem"
    bundle.write_bytes(SYSTEM_CA.read_bytes())
    project = load_project(copy_fixture("small"))
    (spec,) = load_specs(project, {"RAYBAKE_CA_BUNDLE": str(bundle)})  # checked: a bundle
    plan = recipe(project, spec)
    with _build_request(project, plan, no_cache=False, cache=CacheOptions()) as request:
        assert (request.build_contexts[CA_CONTEXT] / CA_FILE).read_bytes() == SYSTEM_CA.read_bytes()
    # Swapped for a private key after the spec named it: the build does not get it.
    bundle.write_text("-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----\n")
    with pytest.raises(SpecError, match=f"the CA bundle {bundle} is no longer a bundle of PEM certificates: "
                                        "line 1: a private key") as info:
        with _build_request(project, plan, no_cache=False, cache=CacheOptions()):
            pass
    assert "ca_bundle" in info.value.fix

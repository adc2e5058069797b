"""SBOM and provenance attached to a pushed image, on the real engine and registry,
read back with `raybake sbom` and as `oras discover` finds them (the fallback tag)."""

import hashlib
import json
import re
import urllib.request

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from helpers import docker, raybake

pytestmark = [pytest.mark.engine, pytest.mark.registry]


@pytest.fixture(scope="module")
def pushed_small(engine, repositories, tmp_path_factory):
    """The small fixture built, verified and pushed once for this module: (root, env, tag reference, digest ref)."""
    import shutil

    from conftest import FIXTURES

    root = tmp_path_factory.mktemp("attest") / "small"
    shutil.copytree(FIXTURES / "small", root, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    repo = f"{engine.registry}/{repositories('attest')}"
    env = engine.env(RAYBAKE_REPOSITORY=repo)
    out = raybake("build", "--push", "-C", str(root), env=env).stdout
    reference = out.split()[0]
    digest_ref = re.search(rf"{re.escape(repo)}@sha256:[0-9a-f]{{64}}", out).group(0)
    return root, env, reference, digest_ref


def test_sbom_lists_the_lock_the_os_packages_and_uv(pushed_small):
    root, env, reference, digest_ref = pushed_small
    text = raybake("sbom", reference, env=env).stdout
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(text) is None
    bom = json.loads(text)
    assert bom["metadata"]["component"]["version"] == digest_ref.split("@")[1]
    assert {"name": "raybake:verification", "value": "passed"} in bom["metadata"]["properties"]
    by_name = {c["name"]: c for c in bom["components"]}
    six = by_name["six"]  # from uv's export, with the lock's hashes, and found installed by verification
    assert six["version"] == "1.17.0" and six["purl"] == "pkg:pypi/six@1.17.0"
    assert any(h["content"] for ref in six["externalReferences"] for h in ref["hashes"])
    assert {"name": "raybake:verified-installed", "value": "true"} in six["properties"]
    assert "iniconfig" not in by_name  # the dev group is not in the default spec's selection
    assert by_name["libc6"]["purl"].startswith("pkg:deb/debian/libc6@")  # the base's dpkg status
    assert by_name["python3"]["type"] == "library"
    assert by_name["uv"]["version"] and len(by_name["uv"]["hashes"][0]["content"]) == 64
    # By digest too, and the same document: nothing in it changes from one read to the next.
    assert raybake("sbom", digest_ref, env=env).stdout == text


def test_provenance_records_how_it_was_made(pushed_small):
    root, env, reference, digest_ref = pushed_small
    statement = json.loads(raybake("sbom", "--provenance", reference, env=env).stdout)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"][0]["digest"]["sha256"] == digest_ref.split(":")[-1]
    definition = statement["predicate"]["buildDefinition"]
    label = docker("buildx", "imagetools", "inspect", "--format", '{{json .Image}}', reference).stdout
    assert definition["externalParameters"]["input_hash"] == json.loads(label)["config"]["Labels"][
        "dev.raybake.input-hash"]
    assert definition["externalParameters"]["input_hash_inputs"]["pyproject"]["project"]["name"] == "small"
    assert definition["externalParameters"]["spec"]["name"] == "default"
    lock = {d["uri"]: d["digest"]["sha256"] for d in definition["resolvedDependencies"]}
    assert lock["uv.lock"] == hashlib.sha256((root / "uv.lock").read_bytes()).hexdigest()
    assert any(uri.startswith("docker-image://") for uri in lock)
    assert set(definition["internalParameters"]) == {"raybake_version", "uv_version"}


def test_attached_as_oci_referrers_the_image_digest_unchanged(pushed_small, engine):
    """The fallback tag `oras discover` reads on a registry without the referrers
    API lists both artifacts, each with its subject; the tag still names the image."""
    root, env, reference, digest_ref = pushed_small
    repo, digest = digest_ref.split("@")
    path = repo.split("/", 1)[1]

    def get(what: str, accept: str) -> dict:
        request = urllib.request.Request(f"http://{engine.registry}/v2/{path}/manifests/{what}",
                                         headers={"Accept": accept})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    index = get(digest.replace(":", "-"), "application/vnd.oci.image.index.v1+json")
    kinds = {m["artifactType"] for m in index["manifests"]}
    assert kinds == {"application/vnd.cyclonedx+json", "application/vnd.in-toto+json"}
    for m in index["manifests"]:
        assert get(m["digest"], m["mediaType"])["subject"]["digest"] == digest
    assert docker("buildx", "imagetools", "inspect", "--format", "{{json .Manifest.Digest}}",
                  reference).stdout.strip().strip('"') == digest

"""Image references: one parser (Docker's grammar, through docker-image-py) for every name raybake reads."""

import pytest
from test_decide import FakeEngine, remote

from raybake.build import decide
from raybake.errors import InvalidReference, SpecError
from raybake.plan import identify
from raybake.project import load_project
from raybake.reference import Reference
from raybake.spec import load_specs

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("text", "parts", "registry"), [
    ("ray-app:default-0123", ("ray-app", "default-0123", None), None),  # one component: a local name
    ("myorg/app:v1", ("myorg/app", "v1", None), "docker.io"),  # Docker Hub, like any registry
    ("docker.io/library/python:3.11", ("docker.io/library/python", "3.11", None), "docker.io"),
    ("index.docker.io/myorg/app", ("index.docker.io/myorg/app", None, None), "docker.io"),
    ("127.0.0.1:5000/team/app:t", ("127.0.0.1:5000/team/app", "t", None), "127.0.0.1:5000"),
    ("localhost/app", ("localhost/app", None, None), "localhost"),
    (f"ghcr.io/org/app:t@{DIGEST}", ("ghcr.io/org/app", "t", DIGEST), "ghcr.io"),
    (f"python:3.11-slim@{DIGEST}", ("python", "3.11-slim", DIGEST), None),
])
def test_parse_splits_as_docker_does(text, parts, registry):
    reference = Reference.parse(text)
    assert (reference.repository, reference.tag, reference.digest) == parts
    assert reference.registry == registry
    assert str(reference) == text


@pytest.mark.parametrize("text", [
    "app:tag:extra",  # one tag at most
    "myorg/App", "app/Name:1", "App",  # the uppercase rule: paths are lowercase (a host may not be)
    "app@sha256:12",  # a digest of the wrong length
    "-app", "app:-t", "app:" + "t" * 129,
])
def test_parse_refuses_what_docker_refuses(text):
    with pytest.raises(InvalidReference) as info:
        Reference.parse(text)
    assert info.value.fix


def test_a_host_may_have_capitals():
    assert Reference.parse("Registry.Example.com/app").registry == "Registry.Example.com"


@pytest.mark.parametrize("repository", ["app:tag", "app:tag:extra", "My-App", f"app@{DIGEST}"])
def test_a_spec_repository_is_a_name_without_tag(copy_fixture, repository):
    project = load_project(copy_fixture("small"))
    with pytest.raises(SpecError, match="is not a valid image repository"):
        load_specs(project, {"RAYBAKE_REPOSITORY": repository})


def test_a_docker_hub_repository_is_looked_up_in_its_registry(copy_fixture):
    """`myorg/app` lives on docker.io: absent locally, the registry's own image is up to date."""
    project = load_project(copy_fixture("small"))
    (spec,) = load_specs(project, {"RAYBAKE_REPOSITORY": "myorg/small"})
    plan = identify(project, spec, base_digest=None, template_digest="0" * 64)
    decision = decide(plan, push=False, force=False, engine=FakeEngine(remote=remote(plan)))
    assert decision.action == "skip" and decision.digest_reference == f"myorg/small@{remote(plan).digest}"

"""build.decide against a fake engine: what a build must do, without a daemon.
(The real-engine cases stay in test_build.py.)"""

from dataclasses import dataclass

import pytest
from helpers import BASE_DIGEST

from raybake.build import decide as build_decide
from raybake.errors import RegistryError
from raybake.plan import identify
from raybake.project import load_project
from raybake.spec import load_specs
from raybake.tools.docker import LocalImage, RegistryImage
from raybake.trust import verification_record


@dataclass
class FakeEngine:
    local: LocalImage | None = None
    remote: RegistryImage | None = None
    unrecorded: bool = False

    def local_image(self, reference):
        return self.local

    def registry_image(self, reference, platform=None):
        return self.remote

    def registry_label(self, reference, label):
        """The verification record raybake pushes beside an image it verified (unless ``unrecorded``)."""
        if self.remote is None or self.unrecorded or not reference.endswith(".raybake-verified"):
            return None
        return verification_record(self.remote.digest, self.remote.input_hash, "default").decode()


@dataclass
class Verified:
    """Image IDs raybake verified, with the input hash each was verified for."""

    records: dict[str, str]

    def input_hash(self, image_id):
        return self.records.get(image_id)


def verified(plan):
    return Verified({image(plan).image_id: plan.input_hash.hexdigest})


def decide(plan, **options):
    """build.decide, where raybake verified the local image (unless ``verified`` says otherwise)."""
    options.setdefault("verified", verified(plan))
    return build_decide(plan, **options)


@pytest.fixture(params=["local", "registry"])
def plan(request, copy_fixture):
    project = load_project(copy_fixture("small"))
    repository = "small" if request.param == "local" else "registry.example.com/team/small"
    (spec,) = load_specs(project, {"RAYBAKE_REPOSITORY": repository})
    return identify(project, spec, base_digest=BASE_DIGEST, template_digest="0" * 64)


def image(plan, hash_=None):
    return LocalImage("sha256:" + "1" * 64, 1, {"dev.raybake.input-hash": hash_ or plan.input_hash.hexdigest})


def remote(plan, hash_=None):
    return RegistryImage("sha256:" + "2" * 64, hash_ or plan.input_hash.hexdigest)


def test_nothing_anywhere_is_built(plan):
    assert decide(plan, push=False, force=False, engine=FakeEngine()).action == "build"


def test_the_plans_own_image_is_up_to_date(plan):
    decision = decide(plan, push=False, force=False, engine=FakeEngine(local=image(plan)))
    # The checked image by ID: what runs next, whatever the tag points to by then.
    assert decision.action == "skip" and decision.image_id == image(plan).image_id


def test_force_always_builds(plan):
    assert decide(plan, push=False, force=True, engine=FakeEngine(local=image(plan))).action == "build"


def test_a_foreign_local_image_under_the_tag_is_built_over(plan):
    decision = decide(plan, push=False, force=False, engine=FakeEngine(local=image(plan, "f" * 64)))
    assert decision.action == "build" and "f" * 64 in decision.note


def test_push_skips_what_the_registry_has_and_names_its_digest(plan):
    decision = decide(plan, push=True, force=False, engine=FakeEngine(local=image(plan), remote=remote(plan)))
    assert decision.action == "skip" and decision.digest_reference.endswith("@sha256:" + "2" * 64)
    assert ":default-" not in decision.digest_reference  # by digest, not by tag


def test_push_of_an_image_built_here_only_pushes(plan):
    assert decide(plan, push=True, force=False, engine=FakeEngine(local=image(plan))).action == "push"


def test_a_foreign_image_in_the_registry_is_an_error_naming_both_hashes(plan):
    with pytest.raises(RegistryError) as info:
        decide(plan, push=True, force=False, engine=FakeEngine(remote=remote(plan, "e" * 64)))
    assert "e" * 64 in info.value.message and plan.input_hash.hexdigest in info.value.message


def test_without_push_a_registry_repository_asks_the_registry(plan):
    decision = decide(plan, push=False, force=False, engine=FakeEngine(remote=remote(plan)))
    named_registry = plan.spec.repository.startswith("registry.")
    assert decision.action == ("skip" if named_registry else "build")


def test_an_image_with_the_right_label_that_raybake_did_not_verify_is_built_over(plan):
    """An image built FROM raybake's image inherits its input-hash label: the
    label alone never makes it up to date, pushed or trusted."""
    for push in (False, True):
        decision = decide(plan, push=push, force=False, engine=FakeEngine(local=image(plan)),
                          verified=Verified({}))
        assert decision.action == "build" and "did not verify that image" in decision.note
    # Verified for another plan is not verified for this one.
    decision = decide(plan, push=False, force=False, engine=FakeEngine(local=image(plan)),
                      verified=Verified({image(plan).image_id: "e" * 64}))
    assert decision.action == "build"


def test_a_registry_image_without_raybakes_record_for_its_digest_is_an_error(plan):
    """Pushed over the tag (FROM raybake's image: the same label), or the tag moved
    after raybake's push: no verification record names that digest."""
    for push in (True, False):
        engine = FakeEngine(remote=remote(plan), unrecorded=True)
        if not push and not plan.spec.repository.startswith("registry."):
            continue  # a local repository never asks the registry
        with pytest.raises(RegistryError) as info:
            decide(plan, push=push, force=False, engine=engine)
        assert "no raybake verification record for that digest" in info.value.message
        assert "raybake build --push --force" in info.value.fix

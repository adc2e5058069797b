"""Where a build's BuildKit cache comes from and goes to (raybake.buildcache)."""

import pytest

from raybake.buildcache import cache_options, default_cache_ref, normalize
from raybake.errors import SpecError
from raybake.spec import ImageSpec


def spec(repository: str = "127.0.0.1:5000/team/app", **fields) -> ImageSpec:
    return ImageSpec(name="cpu", source="test", repository=repository, base_image="python:3.11-slim",
                     python=None, **fields)


def test_default_cache_lives_next_to_the_image_in_its_registry():
    assert default_cache_ref(spec()) == "127.0.0.1:5000/team/app:buildcache-cpu"
    assert default_cache_ref(spec("ghcr.io/org/app")) == "ghcr.io/org/app:buildcache-cpu"
    assert default_cache_ref(spec("team/app")) is None  # no registry: no shared cache


def test_default_imports_always_and_exports_only_with_push():
    ref = "127.0.0.1:5000/team/app:buildcache-cpu"
    assert cache_options(spec(), push=False).cache_from == (f"type=registry,ref={ref}",)
    assert cache_options(spec(), push=False).cache_to == ()
    assert cache_options(spec(), push=True).cache_to == (f"type=registry,ref={ref},ignore-error=true,mode=max",)
    local = cache_options(spec("app"), push=True)
    assert local.cache_from == () and local.cache_to == ()


def test_spec_and_cli_values_replace_the_default():
    own = spec(cache_from=("reg.example/cache:main",), cache_to=("type=inline",))
    options = cache_options(own, push=True)
    assert options.cache_from == ("type=registry,ref=reg.example/cache:main",)
    assert options.cache_to == ("type=inline",)
    assert cache_options(spec(cache_from=(), cache_to=()), push=True) == cache_options(spec("app"), push=True)
    cli = cache_options(own, push=False, cache_to=("type=registry,ref=r.io/c:x,mode=min",))
    assert cli.cache_to == ("type=registry,ref=r.io/c:x,mode=min",)  # an explicit mode is kept


def test_zstd_images_export_a_zstd_cache():
    options = cache_options(spec(compression="zstd"), push=True)
    assert options.cache_to[0].endswith("mode=max,compression=zstd,oci-mediatypes=true")


@pytest.mark.parametrize("value", ["type=nonsense,ref=x", "type="])
def test_unknown_cache_types_are_refused_with_the_forms_that_work(value):
    with pytest.raises(SpecError) as err:
        normalize(value, export=False)
    assert "type=registry,ref=" in err.value.fix

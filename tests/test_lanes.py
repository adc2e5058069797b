"""Lanes: which specs build at the same time on one engine (pure planning, no engine)."""

import threading

import pytest

from raybake.build import _side_by_side, lanes
from raybake.project import load_project
from raybake.spec import load_specs


def matrix_specs(copy_fixture, **bases: str):
    """The small fixture's specs, each on the base given."""
    root = copy_fixture("small")
    (root / "images").mkdir()
    for name, base in bases.items():
        (root / f"images/{name}.yaml").write_text(f"base_image: {base}\n")
    return load_specs(load_project(root), {})


def test_specs_on_one_base_share_a_lane_others_build_beside_them(copy_fixture):
    specs = matrix_specs(copy_fixture, a="bookworm:1", b="trixie:1", c="bookworm:1")
    assert [[s.name for s in lane] for lane in lanes(specs)] == [["a", "c"], ["b"]]


def test_lanes_build_at_the_same_time_and_outcomes_keep_their_order(copy_fixture):
    a, b = matrix_specs(copy_fixture, a="bookworm:1", b="trixie:1")
    together = threading.Barrier(2, timeout=30)  # broken, and so failing, unless both wait at once

    def build_one(spec):
        together.wait()
        return spec.name.upper()

    assert _side_by_side([[a], [b]], build_one, jobs=4) == {"a": "A", "b": "B"}
    order: list[str] = []
    _side_by_side([[a], [b]], lambda spec: order.append(spec.name), jobs=1)
    assert order == ["a", "b"]  # RAYBAKE_BUILD_JOBS=1: one after another, here


def test_one_base_on_two_platforms_is_two_lanes(copy_fixture):
    """Builds for different platforms share no step, whatever their base."""
    root = copy_fixture("small")
    (root / "images").mkdir()
    for name, platform in (("amd", "linux/amd64"), ("arm", "linux/arm64"), ("amd2", "linux/amd64")):
        (root / f"images/{name}.yaml").write_text(f"base_image: bookworm:1\nplatform: {platform}\n")
    specs = load_specs(load_project(root), {})
    assert sorted(sorted(s.name for s in lane) for lane in lanes(specs)) == [["amd", "amd2"], ["arm"]]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_raybake_build_jobs_bounds_the_lanes_built_at_once(copy_fixture, monkeypatch, jobs):
    """`build --all` over two lanes: RAYBAKE_BUILD_JOBS=2 builds both at once (each
    build waits for the other), =1 builds them one after the other, here."""
    from raybake import build as build_module

    root = copy_fixture("small")
    (root / "images").mkdir()
    for name, base in (("a", "bookworm:1"), ("b", "trixie:1")):
        (root / f"images/{name}.yaml").write_text(f"base_image: {base}\n")
    monkeypatch.setenv("RAYBAKE_BUILD_JOBS", jobs)
    together = threading.Barrier(2, timeout=60)  # broken, and so failing, unless both wait at once
    threads: list[threading.Thread] = []

    def ensure_image(project, plan, **kwargs):
        threads.append(threading.current_thread())
        if jobs == "2":
            together.wait()
        return plan.spec.name

    monkeypatch.setattr(build_module, "ensure_image", ensure_image)
    monkeypatch.setattr(build_module, "check_lock", lambda project: True)
    assert build_module.build(root, all_specs=True) == ["a", "b"]
    if jobs == "1":
        assert threads == [threading.main_thread()] * 2
    else:
        assert threading.main_thread() not in threads

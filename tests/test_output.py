"""What CI reads: progress modes, JSON results, settings in --help, and no
false ERROR line for a registry cache that does not exist yet."""

import io
import json
import re

import pytest
from conftest import EXAMPLE
from helpers import docker, raybake
from rich.console import Console

from raybake.console import LiveReporter
from raybake.progress import Labelled
from raybake.tools.docker import MissingCacheLines

# BuildKit's plain log of a first build to a registry repository (abridged).
FIRST_REGISTRY_BUILD = """\
#6 importing cache manifest from 127.0.0.1:5000/app:buildcache-default
#6 ERROR: failed to configure registry cache importer: 127.0.0.1:5000/app:buildcache-default: not found
#7 [stage-0 1/4] FROM docker.io/library/base:1
#7 DONE 0.0s
------
 > importing cache manifest from 127.0.0.1:5000/app:buildcache-default:
------
------
 > [stage-0 4/4] RUN uv sync:
#13 0.51 error: something real
------"""


def test_a_missing_registry_cache_is_no_error_line_but_a_failing_step_still_is():
    lines = MissingCacheLines()
    shown = [s for line in FIRST_REGISTRY_BUILD.splitlines() for s in lines.filter(line)] + lines.flush()
    assert not any("ERROR" in s for s in shown), shown
    assert "#6 no build cache at 127.0.0.1:5000/app:buildcache-default yet" in "\n".join(shown)
    assert " > importing cache manifest from 127.0.0.1:5000/app:buildcache-default:" not in shown
    assert shown[-4:] == ["------", " > [stage-0 4/4] RUN uv sync:", "#13 0.51 error: something real", "------"]


def test_the_terminal_view_shows_one_line_per_running_step_not_the_log():
    screen = io.StringIO()
    reporter = LiveReporter(Console(file=screen, force_terminal=True, color_system=None, highlight=False, width=200))
    try:
        spec = Labelled(reporter, "py313")
        spec.build_line('#0 building with "default" instance using docker driver')  # buildx's, never ends
        spec.build_line("#5 [stage-0 2/4] RUN python3 -m venv /opt/venv")
        spec.build_line("#5 0.412 created virtual environment")
        spec.build_line("#6 [stage-0 3/4] RUN uv pip install numpy")
        spec.build_line("#6 1.200 Downloading numpy")
        spec.build_line("#6 2.100 Installed 1 package")
        spec.build_line("#5 DONE 0.8s")
        view = Console(file=io.StringIO(), width=200)
        view.print(reporter._render())
        text = view.file.getvalue()
        assert text.count("\n") == 1 and "[py313] #6 [stage-0 3/4] RUN uv pip install numpy" in text
        assert "Installed 1 package" in text and "Downloading" not in text  # the latest output only
        spec.step("verifying")  # the build is over: no step of it is left running
        assert not reporter._render().renderables
    finally:
        reporter.stop()
    assert "raybake: [py313] verifying" in screen.getvalue()
    assert "created virtual environment" not in screen.getvalue()  # no log lines left on the screen


def test_settings_appear_in_help_beside_their_option_and_flags_act_as_the_variables(copy_fixture):
    out = raybake("build", "--help").stdout
    for option, variable in (("--repository", "RAYBAKE_REPOSITORY"), ("--base-image", "RAYBAKE_BASE_IMAGE"),
                             ("--network", "RAYBAKE_NETWORK"), ("--ca-bundle", "RAYBAKE_CA_BUNDLE"),
                             ("--jobs", "RAYBAKE_BUILD_JOBS"), ("--progress", "BUILDKIT_PROGRESS")):
        section = re.search(rf"^  (-\w, )?{option} .*?(?=^  -|\Z)", out, re.M | re.S).group()
        assert f"env var: {variable}" in re.sub(r"\s+", " ", section), option
    assert "RAYBAKE_BUILD_TIMEOUT" in out
    root = copy_fixture("small")
    by_flag = raybake("tag", "-C", str(root), "--repository", "registry.example.com/team/small").stdout
    by_variable = raybake("tag", "-C", str(root), env={"PATH": "/usr/bin:/bin",
                                                      "RAYBAKE_REPOSITORY": "registry.example.com/team/small"})
    assert by_flag.startswith("registry.example.com/team/small:default-") and by_flag == by_variable.stdout


def test_tag_pin_and_job_config_as_json(copy_fixture):
    root = copy_fixture("small")
    (tag,) = json.loads(raybake("tag", "-C", str(root), "--json").stdout)["images"]
    assert tag["reference"] == raybake("tag", "-C", str(root)).stdout.strip()
    assert tag["spec"] == "default" and tag["reference"].endswith(tag["input_hash"][:16]) and tag["uv_version"]
    stale = raybake("pin", "--check", "--json", "-C", str(root), check=False)
    assert stale.returncode == 1
    report = json.loads(stale.stdout)
    assert report["current"] is False and report["missing"] is True and report["images"] == {"default": tag["reference"]}
    assert report["changes"] == [{"entry": "default", "old": None, "new": tag["reference"], "why": None}]
    raybake("pin", "-C", str(root))
    assert json.loads(raybake("pin", "--check", "--json", "-C", str(root)).stdout)["current"] is True
    example = copy_fixture(EXAMPLE)
    reference = raybake("tag", "-C", str(example)).stdout.strip()
    job = json.loads(raybake("job-config", "-C", str(example), "--entrypoint", "python main.py", "--json").stdout)
    assert job["reference"] == reference and job["format"] == "ray"
    assert job["config"]["entrypoint"].endswith("python main.py")


@pytest.mark.engine
@pytest.mark.registry
def test_a_first_registry_build_reports_json_and_no_error_line(engine, copy_fixture, unique_repo, tmp_path):
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_REPOSITORY=f"{engine.registry}/{unique_repo}")
    reference = raybake("tag", "-C", str(root), env=env).stdout.strip()
    try:
        first = raybake("build", "-C", str(root), "--progress", "plain", "--json", "--metadata-file",
                        str(tmp_path / "build.json"), env=env)
        assert not re.search(r"^(#\d+ )?ERROR", first.stderr, re.M), first.stderr
        assert "no build cache at" in first.stderr
        (built,) = json.loads(first.stdout)["images"]
        assert built["reference"] == reference and built["status"] == "built"
        assert built["image_id"] == docker("image", "inspect", "--format", "{{.Id}}", reference).stdout.strip()
        assert (tmp_path / "build.json").read_text() == first.stdout
        quiet = raybake("build", "-C", str(root), "--json", env={**env, "BUILDKIT_PROGRESS": "quiet"})
        assert quiet.stderr == "" and json.loads(quiet.stdout)["images"][0]["status"] == "up to date"
        plain = raybake("build", "-C", str(root), "-q", env=env)
        assert plain.stderr == "" and plain.stdout.startswith(f"{reference}  up to date")
    finally:
        docker("image", "rm", reference, check=False)

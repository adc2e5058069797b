"""Anyscale's image requirements: the judgement of a probe's report (pure), the
probe itself run here over this machine, and on the engine the check that
`raybake job-config --format anyscale` makes of a real image."""

import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import EXAMPLE
from helpers import docker, input_hash, raybake

from raybake import anyscale_image as ai
from raybake.contract import ANYSCALE_PROBE_SCRIPT, LABEL_INPUT_HASH, in_image_source
from raybake.trust import attach_record

ALL_TOOLS = {c: f"/usr/bin/{c}" for c in ai.COMMANDS}
MEETS = {"user": {"uid": 1000, "gid": 100, "home": "/home/ray", "shell": "/bin/bash"},
         "sudo": {"ok": True, "output": ""}, "dir_access": {"exists": True, "writable": True},
         "tools": ALL_TOOLS, "os": {"ID": "ubuntu", "VERSION_ID": "22.04", "PRETTY_NAME": "Ubuntu 22.04.5 LTS"}}
# What raybake's default image (python-slim base) reports.
DEFAULT = {"user": None, "sudo": None, "dir_access": None,
           "tools": {**{c: None for c in ai.COMMANDS}, "bash": "/usr/bin/bash", "python": "/opt/venv/bin/python"},
           "os": {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}}


def facts(probe=MEETS, workdir="/home/ray", env=("PATH=/opt/venv/bin:/usr/bin",), arch="amd64"):
    return ai.ImageFacts(workdir, tuple(env), arch, probe)


def test_an_image_meeting_the_requirements_passes_without_warnings():
    judgement = ai.judge(facts())
    assert judgement.ok and judgement.soft == ()
    assert ai.warning("default", judgement) is None


def test_the_default_image_misses_the_user_sudo_home_workdir_and_tools():
    judgement = ai.judge(facts(DEFAULT, workdir="/opt/project"))
    assert [s.requirement for s in judgement.missing] == [
        "user `ray` with uid 1000 and gid 100", "`ray` runs sudo without a password", "HOME /home/ray",
        "WORKDIR /home/ray, which `ray` reads and writes",
        "the system packages sudo, python, bash, openssh-server, openssh-client, rsync, zip, unzip, git, gdb, curl"]
    message, fix = ai.refusal("default", "reg/app@sha256:abc", judgement)
    assert message.startswith("the image of spec 'default' (reg/app@sha256:abc) does not meet Anyscale's image "
                              "requirements")
    assert "  - user `ray` with uid 1000 and gid 100: the image has no user `ray`" in message
    assert "the image's WORKDIR is /opt/project" in message
    assert "not on PATH: sudo, openssh-server (`sshd`), openssh-client (`ssh`), rsync, zip, unzip, git, gdb, curl" \
        in message
    assert fix.startswith("`base: anyscale` in the spec")
    assert "useradd --uid 1000 --gid 100 --create-home --home-dir /home/ray --shell /bin/bash ray" in fix
    assert "NOPASSWD:ALL" in fix and "`USER ray` and `WORKDIR /home/ray`" in fix
    assert fix.count("useradd") == 1  # the user's fix is given once, though it fixes HOME too
    assert ("`runtime_apt_packages: [sudo, openssh-server, openssh-client, rsync, zip, unzip, git, gdb, curl]`"
            in fix)
    assert [s.requirement for s in judgement.soft] == ["base image ubuntu:22.04"]


@pytest.mark.parametrize(("change", "requirement", "found"), [
    ({"user": {"uid": 1001, "gid": 1001, "home": "/home/ray", "shell": "/bin/bash"}},
     "user `ray` with uid 1000 and gid 100", "`ray` has uid 1001 and gid 1001"),
    ({"sudo": {"ok": False, "output": "sudo: a password is required\n"}},
     "`ray` runs sudo without a password", "`sudo -n true` as `ray` failed: sudo: a password is required"),
    ({"sudo": None, "tools": {**ALL_TOOLS, "sudo": None}},
     "`ray` runs sudo without a password", "sudo is not installed"),
    ({"user": {"uid": 1000, "gid": 100, "home": "/home/other", "shell": "/bin/bash"}},
     "HOME /home/ray", "`ray`'s home is /home/other"),
    ({"dir_access": {"exists": True, "writable": False}},
     "WORKDIR /home/ray, which `ray` reads and writes", "/home/ray is not readable and writable by `ray`"),
    ({"dir_access": {"exists": False, "writable": False}},
     "WORKDIR /home/ray, which `ray` reads and writes", "/home/ray does not exist"),
    ({"tools": {**ALL_TOOLS, "gdb": None}}, "the system packages sudo, python, bash, openssh-server, "
     "openssh-client, rsync, zip, unzip, git, gdb, curl", "not on PATH: gdb"),
])
def test_each_hard_requirement_is_named_with_what_the_image_has(change, requirement, found):
    missing = [(s.requirement, s.found) for s in ai.judge(facts({**MEETS, **change})).missing]
    assert (requirement, found) in missing
    assert len(missing) == (2 if "tools" in change and "sudo" in change else 1)  # no sudo: a package missing too


def test_home_set_in_the_image_env_must_be_home_ray():
    judgement = ai.judge(facts(env=("HOME=/root",)))
    assert [(s.requirement, s.found) for s in judgement.missing] == [
        ("HOME /home/ray", "the image's env sets HOME /root")]
    assert ai.judge(facts(env=("HOME=/home/ray/",))).ok


def test_the_os_and_the_platform_are_soft():
    judgement = ai.judge(facts({**MEETS, "os": {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian 12"}},
                               arch="arm64"))
    assert judgement.ok
    text = ai.warning("default", judgement)
    assert "base image ubuntu:22.04: the image is Debian 12" in text
    assert "platform linux/amd64: the image is for arm64 (fix: `platform: linux/amd64` in the spec)" in text


def test_python_packages_the_lock_lacks_and_a_ray_older_than_2_7():
    assert ai.missing_python_packages({"ray": "2.60.0", "packaging": "24"}) == [
        "anyscale", "boto3", "google-cloud-storage", "jupyterlab"]
    locked = {p: "1" for p in ai.PYTHON_PACKAGES}
    assert ai.missing_python_packages({**locked, "ray": "2.6.3"}) == ["ray>=2.7"]
    assert ai.missing_python_packages({**locked, "ray": None}) == []  # a URL source: its version is unknown


def test_the_probe_reports_this_machine(tmp_path):
    """The probe as raybake runs it, over this machine (as the user running the tests)."""
    args = {"user": "root", "dir": str(tmp_path), "commands": ["sh", "no-such-command-here"]}
    out = subprocess.run([sys.executable, "-I", "-S", "-c", in_image_source(ANYSCALE_PROBE_SCRIPT),
                          json.dumps(args)], capture_output=True, text=True, check=True).stdout
    report = ai.parse_probe(out)
    assert report["tools"]["sh"] and report["tools"]["no-such-command-here"] is None
    assert report["user"]["uid"] == 0 and report["os"]["ID"]
    assert ai.parse_probe("Traceback ...") is None


def test_no_image_check_goes_with_the_anyscale_format_only(copy_fixture):
    proc = raybake("job-config", "-C", str(copy_fixture(EXAMPLE)), "--entrypoint", "python main.py",
                   "--no-image-check", check=False)
    assert proc.returncode == 2 and "--no-image-check go with --format anyscale only" in proc.stderr, proc.stderr


# ---- on the engine ----

# What Anyscale's requirements ask of a base, on the test's Debian base (no
# registry is reachable, so not Anyscale's own images): the tools from apt,
# the user, its passwordless sudo, its home as working directory.
READY_BASE = """FROM {base}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      sudo openssh-server openssh-client rsync zip unzip git gdb curl \\
 && rm -rf /var/lib/apt/lists/* \\
 && useradd --uid 1000 --gid 100 --create-home --home-dir /home/ray --shell /bin/bash ray \\
 && echo 'ray ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/ray
USER ray
WORKDIR /home/ray
"""
# What raybake's Dockerfile.base adds to a base and the check reads (/opt/venv
# on PATH), ending as the base's user in its directory, with the plan's label.
STAND_IN = """FROM {base}
USER root
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
USER {user}
WORKDIR {workdir}
LABEL {label}="{input_hash}"
"""


@pytest.fixture(scope="module")
def ready_base(engine, repositories, tmp_path_factory) -> str:
    name = f"{repositories('anyscale-base')}:1"
    context = tmp_path_factory.mktemp("ready-base")
    (context / "Dockerfile").write_text(READY_BASE.format(base=engine.base_image))
    docker("buildx", "build", "--network", "host", "--load", "-t", name, str(context))
    return name


def pushed_stand_in(engine, repository, base, tmp_path, *, user, workdir, keep_local):
    """A copy of the example whose image in the test registry is a stand-in on
    ``base`` (labelled, with raybake's verification record): (root, env, by digest)."""
    root = tmp_path / "ray-app"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    env = engine.env(RAYBAKE_REPOSITORY=f"{engine.registry}/{repository}", RAYBAKE_BASE_IMAGE=base)
    env.pop("RAY_ADDRESS", None)
    reference = raybake("tag", "-C", str(root), env=env).stdout.strip()
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(STAND_IN.format(
        base=base, user=user, workdir=workdir, label=LABEL_INPUT_HASH, input_hash=input_hash(root, env)))
    docker("buildx", "build", "--network", "host", "--load", "-t", reference, str(tmp_path / "ctx"))
    pushed = re.search(r"digest: (sha256:[0-9a-f]{64})", docker("push", reference).stdout).group(1)
    if not keep_local:  # job-config pulls it
        docker("image", "rm", reference)
    by_digest = f"{reference.rsplit(':', 1)[0]}@{pushed}"
    attach_record(by_digest, input_hash(root, env), "default")
    return root, env, by_digest


@pytest.mark.engine
@pytest.mark.registry
def test_job_config_refuses_an_image_on_a_plain_debian_base_naming_what_it_lacks(engine, unique_repo, tmp_path):
    # The check pulls the pushed image (not in the local store), as where it was built elsewhere.
    root, env, by_digest = pushed_stand_in(engine, unique_repo, engine.base_image, tmp_path, user="root",
                                           workdir="/opt/project", keep_local=False)
    try:
        proc = raybake("job-config", "-C", str(root), "--format", "anyscale", "--entrypoint", "python main.py",
                       "--stage-dir", str(tmp_path / "wd"), env=env, check=False)
    finally:
        docker("image", "rm", by_digest, check=False)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert "does not meet Anyscale's image requirements" in proc.stderr
    for line in ("user `ray` with uid 1000 and gid 100: the image has no user `ray`",
                 "WORKDIR /home/ray, which `ray` reads and writes: the image's WORKDIR is /opt/project",
                 "not on PATH: sudo, openssh-server (`sshd`), openssh-client (`ssh`), rsync, zip, unzip, git, gdb, "
                 "curl"):
        assert line in proc.stderr, proc.stderr
    assert "fix: `base: anyscale` in the spec" in proc.stderr and "runtime_apt_packages: [sudo, " in proc.stderr
    # The check can be left out.
    proc = raybake("job-config", "-C", str(root), "--format", "anyscale", "--entrypoint", "python main.py",
                   "--stage-dir", str(tmp_path / "wd"), "--no-image-check", env=env)
    assert yaml.safe_load(proc.stdout)["image_uri"] == by_digest


@pytest.mark.engine
@pytest.mark.registry
def test_job_config_passes_an_image_that_meets_the_requirements(engine, ready_base, unique_repo, tmp_path):
    root, env, by_digest = pushed_stand_in(engine, unique_repo, ready_base, tmp_path, user="ray",
                                           workdir="/home/ray", keep_local=True)
    proc = raybake("job-config", "-C", str(root), "--format", "anyscale", "--entrypoint", "python main.py",
                   "--stage-dir", str(tmp_path / "wd"), env=env)
    assert yaml.safe_load(proc.stdout)["image_uri"] == by_digest
    assert "Image requirements" not in proc.stderr.replace("image requirements list", "")
    # Debian, not Anyscale's ubuntu:22.04: a warning only.
    assert "base image ubuntu:22.04: the image is Debian GNU/Linux 12 (bookworm)" in proc.stderr, proc.stderr


@pytest.mark.engine
def test_the_default_image_is_refused(small_image):
    """raybake's real default image (python-slim's stand-in base), checked as job-config checks it."""
    from raybake.errors import JobConfigError
    from raybake.jobs import check_anyscale_image

    with pytest.raises(JobConfigError) as caught:
        check_anyscale_image(small_image.reference, "default")
    assert "the image has no user `ray`" in caught.value.message
    assert "the image's WORKDIR is /opt/project" in caught.value.message
    assert "openssh-server (`sshd`)" in caught.value.message

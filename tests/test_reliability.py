"""Concurrency and interruption, with real processes on the real engine."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import docker, raybake

pytestmark = pytest.mark.engine
RAYBAKE = str(Path(sys.executable).parent / "raybake")


def start(root: Path, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([RAYBAKE, "build", "-C", str(root), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def test_two_builds_of_one_spec_build_once(engine, copy_fixture, unique_repo, tmp_path):
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo, RAYBAKE_CACHE_DIR=str(tmp_path / "cache"))
    # --no-cache keeps the build long enough (cached layers take a second) for the
    # second process to find the first one at work.
    procs = [start(root, env, "--no-cache"), start(root, env, "--no-cache")]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    statuses = sorted(out.split()[1] for out, _ in outs)
    assert statuses == ["built", "up"], outs  # one built, the other found it up to date
    waiter_err = next(err for out, err in outs if " up to date" in out)
    assert "waiting for another raybake" in waiter_err
    assert sum("raybake: building " in err for _, err in outs) == 1


def test_different_specs_build_in_parallel(engine, copy_fixture, unique_repo, tmp_path):
    root = copy_fixture("small")
    (root / "images").mkdir()
    (root / "images/a.yaml").write_text("extras: [table]\n")
    (root / "images/b.yaml").write_text("dev: true\n")
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo, RAYBAKE_CACHE_DIR=str(tmp_path / "cache"))
    procs = [start(root, env, "a"), start(root, env, "b")]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all(" built " in out for out, _ in outs)
    assert not any("waiting for another" in err for _, err in outs)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_build_leaves_nothing_behind(engine, copy_fixture, unique_repo, tmp_path, sig):
    root = copy_fixture("small")
    cache = tmp_path / "cache"
    env = engine.env(RAYBAKE_REPOSITORY=f"{engine.registry}/{unique_repo}", RAYBAKE_CACHE_DIR=str(cache))
    ref = raybake("tag", "-C", str(root), env=env).stdout.strip()
    # --no-cache: the build is still running when the signal arrives.
    proc = start(root, env, "--push", "--no-cache")
    deadline = time.monotonic() + 120
    while not any((cache / "tmp").glob("build-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert docker("image", "inspect", ref, check=False).returncode != 0
    assert "not found" in docker("buildx", "imagetools", "inspect", ref, check=False).stderr
    assert list((cache / "tmp").iterdir()) == []  # no temporary context left on disk
    # The lock was released with the process: the next build goes through.
    again = raybake("build", "--push", "-C", str(root), env=env, timeout=600)
    assert " built and pushed " in again.stdout

"""Concurrency and interruption, with real processes on the real engine."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from helpers import docker, processes_mentioning, raybake

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


def wait_for_line(proc: subprocess.Popen, *patterns: str, timeout: float = 300) -> list[str]:
    """Read the process's stderr until a line has matched each pattern; return the lines read.
    The rest of its output keeps draining in the background (no pipe fills up)."""
    lines: list[str] = []
    missing = list(patterns)
    found = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            missing[:] = [p for p in missing if not re.search(p, line)]
            if not missing:
                found.set()

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout), f"no line matching {missing!r}:\n{''.join(lines)}"
    return lines


@pytest.mark.registry
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_build_leaves_nothing_behind(engine, copy_fixture, unique_repo, tmp_path, sig):
    root = copy_fixture("small")
    cache = tmp_path / "cache"
    env = engine.env(RAYBAKE_REPOSITORY=f"{engine.registry}/{unique_repo}", RAYBAKE_CACHE_DIR=str(cache))
    ref = raybake("tag", "-C", str(root), env=env).stdout.strip()
    # --no-cache: the build is still running when the signal arrives.
    proc = start(root, env, "--push", "--no-cache")
    wait_for_line(proc, r"^#\d+ \[")  # BuildKit is running a step
    assert [p for p in processes_mentioning(str(cache)) if "buildx" in p]  # the build raybake started
    os.kill(proc.pid, sig)
    assert proc.wait(timeout=120) == 130
    # No buildx client is left building on its own, and nothing else of raybake's.
    assert processes_mentioning(str(cache)) == []
    assert docker("image", "inspect", ref, check=False).returncode != 0
    assert "not found" in docker("buildx", "imagetools", "inspect", ref, check=False).stderr
    assert list((cache / "tmp").iterdir()) == []  # no temporary context left on disk
    # The lock was released with the process: the next build goes through.
    again = raybake("build", "--push", "-C", str(root), env=env, timeout=600)
    assert " built and pushed " in again.stdout


@pytest.mark.registry
def test_sigterm_stops_every_build_of_a_concurrent_build_all(engine, copy_fixture, unique_repo, tmp_path,
                                                             monkeypatch):
    """Two specs on two bases build side by side in threads; SIGTERM reaches only the main
    thread, which stops both buildx children: nothing is tagged or pushed, nothing left."""
    from raybake import locks

    root = copy_fixture("small")
    (root / "images").mkdir()
    (root / "images/a.yaml").write_text(f"base_image: {engine.base_image}\n")
    (root / "images/b.yaml").write_text(f'base_image: {engine.trixie_base_image}\npython: "3.13"\n')
    cache = tmp_path / "cache"
    env = engine.env(RAYBAKE_REPOSITORY=f"{engine.registry}/{unique_repo}", RAYBAKE_CACHE_DIR=str(cache))
    env.pop("RAYBAKE_BASE_IMAGE")
    refs = raybake("tag", "--all", "-C", str(root), env=env).stdout.split()
    proc = start(root, env, "--all", "--push", "--no-cache")
    err = wait_for_line(proc, r"^\[a\] #\d+ \[", r"^\[b\] #\d+ \[")  # BuildKit runs a step of each
    builds = {re.search(r"/tmp/(build-\w+)/", p).group(1) for p in processes_mentioning(str(cache)) if "buildx" in p}
    assert len(builds) == 2, builds  # one build context per spec, both building
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=120) == 130
    out = proc.stdout.read()
    assert processes_mentioning(str(cache)) == []
    for ref in refs:
        assert docker("image", "inspect", ref, check=False).returncode != 0
        assert "not found" in docker("buildx", "imagetools", "inspect", ref, check=False).stderr
    assert list((cache / "tmp").iterdir()) == []
    deadline = time.monotonic() + 10
    while not any(line.startswith("interrupted") for line in err) and time.monotonic() < deadline:
        time.sleep(0.1)  # the reader drains the rest of stderr
    text = "".join(err)
    assert "\ninterrupted\n" in text and "Traceback" not in text, text
    assert "going on with the other images" not in text and "FAILED" not in out  # interrupted, not failed
    monkeypatch.setenv("RAYBAKE_CACHE_DIR", str(cache))
    for ref in refs:  # both locks went with the process
        with locks.build_lock(ref, timeout=1):
            pass


def test_ctrl_c_during_verification_removes_the_probe_container_and_the_image(engine, copy_fixture,
                                                                              unique_repo, tmp_path):
    from raybake.planner import identities_for
    from raybake.project import load_project

    root = copy_fixture("small")
    # A variable of its own makes this image's input hash (its label) this test's alone.
    with (root / "pyproject.toml").open("a") as f:
        f.write(f'\n[tool.raybake]\nenv = {{ RAYBAKE_TEST_RUN = "{uuid.uuid4().hex}" }}\n')
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo, RAYBAKE_CACHE_DIR=str(tmp_path / "cache"))
    (identity,) = identities_for(load_project(root), environ=env)
    label = f"label=dev.raybake.input-hash={identity.input_hash.hexdigest}"
    events = subprocess.Popen(["docker", "events", "--filter", "type=container", "--filter", "event=start",
                               "--filter", label, "--format", "{{.Actor.ID}}"], stdout=subprocess.PIPE, text=True)
    try:
        proc = start(root, env)
        container = events.stdout.readline().strip()  # the verification probe started
        docker("pause", container)  # and stays there, whatever the timing
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals raybake's process group
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        assert docker("ps", "-a", "-q", "--filter", label).stdout.strip() == ""
        assert docker("image", "ls", "-a", "-q", "--filter", label).stdout.strip() == ""
    finally:
        events.terminate()
        for leftover in docker("ps", "-a", "-q", "--filter", label).stdout.split():
            docker("rm", "-f", leftover, check=False)


def test_scratch_directories_of_killed_runs_are_removed_by_the_next_build(engine, copy_fixture, unique_repo,
                                                                           tmp_path):
    cache = tmp_path / "cache"
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo, RAYBAKE_CACHE_DIR=str(cache))
    hold = ("import sys, time; from raybake.paths import scratch_dir\n"
            "with scratch_dir('build-') as d:\n    print(d, flush=True); time.sleep(600)")

    def holder() -> tuple[subprocess.Popen, Path]:
        p = subprocess.Popen([sys.executable, "-c", hold], env=env, stdout=subprocess.PIPE, text=True)
        return p, Path(p.stdout.readline().strip())

    live, live_dir = holder()
    killed, dead_dir = holder()
    killed.kill()  # SIGKILL: no cleanup ran, the directory stays
    killed.wait()
    try:
        assert dead_dir.is_dir() and live_dir.is_dir()
        raybake("build", "--force", "-C", str(copy_fixture("small")), env=env)
        assert not dead_dir.exists()
        assert live_dir.is_dir()  # a running raybake's directory is left alone
    finally:
        live.terminate()
        live.wait()


def test_containers_of_a_killed_raybake_are_removed_by_the_next_run(engine):
    """SIGKILL runs no cleanup: a `raybake submit`'s Ray head (detached) and its job client (a
    streaming `docker run`) keep running. They carry their owner's identity, and the next
    run removes those whose owner has ended, and no other."""
    from raybake.contract import LABEL_OWNER
    from raybake.tools import docker as engine_docker

    script = (
        "import uuid\n"
        "from raybake.tools import docker\n"
        f"docker.run_detached({engine.base_image!r}, ['sleep', '600'], network='none',"
        " name='raybake-test-head-' + uuid.uuid4().hex[:8])\n"
        f"docker.run_streaming({engine.base_image!r}, ['sh', '-c', 'echo started; sleep 600'], network='none',"
        " on_line=lambda line: print(line, flush=True))\n")

    def containers_of(pid: int) -> list[str]:
        out = docker("ps", "--all", "--filter", f"label={LABEL_OWNER}", "--format",
                     f'{{{{.ID}}}} {{{{.Label "{LABEL_OWNER}"}}}}').stdout
        return [cid for cid, owner in (line.split() for line in out.splitlines()) if owner.split(":")[1] == str(pid)]

    killed = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    mine = engine_docker.run_detached(engine.base_image, ["sleep", "600"], network="none",
                                      name=f"raybake-test-live-{uuid.uuid4().hex[:8]}")
    try:
        assert killed.stdout.readline().strip() == "started"  # the job client runs, the head before it
        killed.kill()
        killed.wait()
        left = containers_of(killed.pid)
        assert len(left) == 2  # head and client outlived their raybake
        removed = engine_docker.remove_orphaned_containers()
        assert {r[:12] for r in removed} >= set(left)
        assert containers_of(killed.pid) == []
        assert engine_docker.container_running(mine)  # a live raybake's container stays
    finally:
        killed.kill()
        killed.wait()
        for cid in [*containers_of(killed.pid), mine]:
            docker("rm", "-f", cid, check=False)

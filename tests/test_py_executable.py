"""`raybake py-executable`: the wrapper script run as real processes.

A fake `uv` (RAYBAKE_UV) records each sync, and "installs" by linking this
interpreter as the venv's python; no Ray, no network."""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import raybake

from raybake.project import load_project
from raybake.py_executable import MARKER, env_key, render_wrapper, wrapper_sync_args, write_wrapper
from raybake.spec import load_specs, select

# Records its invocation. `venv` makes an empty environment (only a
# relocatable one: the wrapper renames it into place) and refuses an existing
# path; `sync` "installs" into it after FAKE_UV_SLEEP seconds (or fails with
# FAKE_UV_FAIL), refusing an environment that is not the fresh one.
FAKE_UV = """#!/bin/sh
echo "$$ $*" >>"$FAKE_UV_RECORD"
if [ "$1" = venv ]; then
    for path; do :; done
    case " $* " in *" --relocatable "*) ;; *) echo "fake uv: not relocatable" >&2; exit 5 ;; esac
    if [ -e "$path" ]; then
        echo "fake uv: $path exists" >&2
        exit 3
    fi
    mkdir -p "$path/bin" || exit 4
    exit 0
fi
if [ ! -d "$UV_PROJECT_ENVIRONMENT/bin" ] || [ -e "$UV_PROJECT_ENVIRONMENT/bin/python" ]; then
    echo "fake uv: $UV_PROJECT_ENVIRONMENT is not a fresh environment" >&2
    exit 3
fi
sleep "${FAKE_UV_SLEEP:-0}"
if [ -n "$FAKE_UV_FAIL" ]; then
    echo "fake uv: no solution found for the lock" >&2
    exit 1
fi
printf 'home = %s\\n' "$FAKE_UV_HOME" >"$UV_PROJECT_ENVIRONMENT/pyvenv.cfg"
ln -s "$FAKE_UV_PYTHON" "$UV_PROJECT_ENVIRONMENT/bin/python"
echo "fake uv: installed"
"""

PRINT_PREFIX = ("-c", "import sys; print(sys.prefix)")


def _unable(message: str) -> None:
    """A case this machine cannot run: under CI a failure (never a silent skip), else a skip."""
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module", autouse=True)
def _needs_flock():
    if shutil.which("flock") is None:
        _unable("flock (util-linux) is not installed")


class Node:
    """A project with a rendered wrapper, an env root and a fake uv."""

    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root
        self.envs = tmp / "envs"
        self.record = tmp / "uv-calls"
        self.uv = tmp / "fake-uv"
        self.uv.write_text(FAKE_UV)
        self.uv.chmod(0o755)
        self.wrapper = root / ".raybake" / "py-executable"
        self.render()

    def render(self) -> None:
        self.project = load_project(self.root)
        (self.spec,) = select(load_specs(self.project, {}), ())
        self.key = env_key(self.project, self.spec)
        write_wrapper(render_wrapper(self.project, self.spec), self.wrapper)

    @property
    def venv(self) -> Path:
        return self.envs / self.key / "venv"

    @property
    def marker(self) -> Path:
        return self.envs / self.key / MARKER

    def syncs(self) -> list[str]:
        lines = self.record.read_text().splitlines() if self.record.exists() else []
        return [line for line in lines if line.split()[1] == "sync"]

    def env(self, **extra: str | None) -> dict[str, str]:
        """The node's environment; an ``extra`` value of None unsets that variable."""
        python = os.path.realpath(sys.executable)
        env = {**os.environ, "RAYBAKE_ENV_ROOT": str(self.envs), "RAYBAKE_UV": str(self.uv),
               "FAKE_UV_RECORD": str(self.record), "FAKE_UV_PYTHON": python,
               "FAKE_UV_HOME": os.path.dirname(python), **extra}
        return {k: v for k, v in env.items() if v is not None}

    def start(self, *args: str, **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen([str(self.wrapper), *(args or PRINT_PREFIX)], cwd=self.root,
                                env=self.env(**extra), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.wrapper), *(args or PRINT_PREFIX)], cwd=self.root,
                              env=self.env(**extra), capture_output=True, text=True, timeout=30)


@pytest.fixture
def node(copy_fixture, tmp_path) -> Node:
    return Node(copy_fixture("small"), tmp_path)


def test_concurrent_workers_sync_once(node):
    procs = [node.start(FAKE_UV_SLEEP="1") for _ in range(8)]
    results = [(p.wait(timeout=30), *p.communicate()) for p in procs]
    for rc, out, err in results:
        assert rc == 0, err
    # stdout is the worker's alone: only what python printed.
    assert {out for _, out, _ in results} == {f"{node.venv}\n"}
    assert len(node.syncs()) == 1
    assert node.marker.read_text() == f"{node.key}\n"
    assert all(line.startswith("raybake py-executable: ") or line.startswith("fake uv: ")
               for _, _, err in results for line in err.splitlines())

    again = node.run("-c", "import sys; print(sys.argv[1:])", "a b", "$HOME", "")
    assert again.returncode == 0 and again.stdout == "['a b', '$HOME', '']\n"
    assert again.stderr == ""  # the fast path says nothing
    assert len(node.syncs()) == 1


def test_killed_installer_is_retried(node):
    installer = node.start(FAKE_UV_SLEEP="60")
    while not node.syncs():  # pytest-timeout ends a wrapper that never starts uv
        assert installer.poll() is None, installer.communicate()
        time.sleep(0.02)
    os.killpg(installer.pid, signal.SIGKILL)
    installer.wait(timeout=10)
    # The partial environment is in a temporary directory, never under the key.
    assert not (node.envs / node.key).exists()
    assert len(list(node.envs.glob(f".{node.key}.tmp.*"))) == 1

    proc = node.run()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{node.venv}\n"
    assert len(node.syncs()) == 2
    assert node.marker.read_text() == f"{node.key}\n"
    assert list(node.envs.glob(f".{node.key}.tmp.*")) == []  # the leftover was removed


def test_timeout_waiting_for_the_lock(node):
    node.envs.mkdir()
    lock = node.envs / f"{node.key}.lock"
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        started = time.monotonic()
        proc = node.run(RAYBAKE_ENV_TIMEOUT="1")
        elapsed = time.monotonic() - started
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "timed out after 1s" in proc.stderr
    assert "RAYBAKE_ENV_TIMEOUT" in proc.stderr and str(lock) in proc.stderr
    assert elapsed > 0.9  # it waited for the lock before giving up
    assert node.syncs() == [] and not node.marker.exists()


def test_failed_sync_leaves_no_marker(node):
    proc = node.run(FAKE_UV_FAIL="1")
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "fake uv: no solution found for the lock" in proc.stderr
    assert "raybake py-executable: uv failed (exit 1)" in proc.stderr
    assert not node.marker.exists() and not (node.envs / node.key).exists()

    proc = node.run()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{node.venv}\n"
    assert len(node.syncs()) == 2 and node.marker.exists()


def test_new_lock_syncs_a_new_environment(node):
    assert node.run().returncode == 0
    old_venv, old_marker = node.venv, node.marker
    with open(node.root / "uv.lock", "ab") as f:
        f.write(b"\n# relocked\n")

    stale = node.run()  # the wrapper is still the old lock's
    assert stale.returncode == 1 and stale.stdout == ""
    assert "uv.lock is not the lock this wrapper was generated from" in stale.stderr
    assert "raybake py-executable" in stale.stderr

    node.render()
    assert node.venv != old_venv
    proc = node.run()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{node.venv}\n"
    assert len(node.syncs()) == 2
    assert old_marker.exists() and (old_venv / "bin" / "python").exists()  # left alone


def test_missing_tools_and_project_are_reported(node, tmp_path):
    proc = node.run(RAYBAKE_UV=str(tmp_path / "no-such-uv"))
    assert proc.returncode == 1 and "uv not found" in proc.stderr and "RAYBAKE_UV" in proc.stderr
    proc = node.run(RAYBAKE_PROJECT_DIR=str(tmp_path))
    assert proc.returncode == 1 and "no uv.lock in" in proc.stderr
    assert node.syncs() == []


def test_render_is_deterministic(node, copy_fixture):
    text = render_wrapper(node.project, node.spec)
    assert text == render_wrapper(load_project(node.root), node.spec)
    assert text.startswith("#!/bin/sh\n")
    assert "@" + "KEY@" not in text and f"KEY={node.key}\n" in text
    assert f"exec \"$UV\" sync {shlex.join(wrapper_sync_args(node.project, node.spec))})" in text
    assert "--no-install-project" in text
    assert render_wrapper(node.project, node.spec, env_root="/var/envs") != text
    assert "RAYBAKE_ENV_ROOT:-/var/envs}" in render_wrapper(node.project, node.spec,
                                                             env_root="/var/envs")
    subprocess.run(["sh", "-n", str(node.wrapper)], check=True)

    ws = load_project(copy_fixture("workspace"))
    (ws_spec,) = select(load_specs(ws, {}), ())
    assert "--no-install-workspace" in render_wrapper(ws, ws_spec)


def test_cli_writes_an_executable_wrapper(copy_fixture, tmp_path):
    root = copy_fixture("small")
    proc = raybake("py-executable", "-C", str(root), timeout=120)
    path = root / ".raybake" / "py-executable"
    assert proc.stdout == f"{path}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    project = load_project(root)
    (spec,) = select(load_specs(project, {}), ())
    assert path.read_text() == render_wrapper(project, spec)
    assert '"py_executable": "./.raybake/py-executable"' in proc.stderr

    out = tmp_path / "elsewhere" / "wrapper"
    proc = raybake("py-executable", "default", "-C", str(root), "--out", str(out), timeout=120)
    assert proc.stdout == f"{out}\n" and out.read_text() == path.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert "outside the project" in proc.stderr

    (root / ".gitignore").write_text(".raybake/\n")
    proc = raybake("py-executable", "-C", str(root), timeout=120)
    assert "warning:" in proc.stderr and ".gitignore" in proc.stderr


def test_default_root_is_the_users_own_cache(node, tmp_path):
    text = render_wrapper(node.project, node.spec)
    assert "/tmp/raybake-envs" not in text
    xdg = tmp_path / "xdg"
    proc = node.run(RAYBAKE_ENV_ROOT=None, XDG_CACHE_HOME=str(xdg))
    assert proc.returncode == 0, proc.stderr
    root = xdg / "raybake-envs"
    assert proc.stdout == f"{root / node.key / 'venv'}\n"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    proc = node.run(RAYBAKE_ENV_ROOT=None, XDG_CACHE_HOME=None, HOME=str(home))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{home / '.cache' / 'raybake-envs' / node.key / 'venv'}\n"
    assert stat.S_IMODE((home / ".cache").stat().st_mode) == 0o700


OTHER_UID = 65534  # nobody

# A planted environment under the key, complete with its done marker: its
# python leaves a file behind when it runs.
PLANTED = """#!/bin/sh
touch "{ran}"
exec "{python}" "$@"
"""


def plant(node: Node, ran: Path) -> None:
    env_dir = node.envs / node.key
    (env_dir / "venv" / "bin").mkdir(parents=True)
    python = env_dir / "venv" / "bin" / "python"
    python.write_text(PLANTED.format(ran=ran, python=os.path.realpath(sys.executable)))
    python.chmod(0o755)
    node.marker.write_text(f"{node.key}\n")
    node.marker.chmod(0o644)


def _chown(path: Path) -> None:
    if os.geteuid() != 0:
        _unable("making a file another user's needs root")
    os.chown(path, OTHER_UID, OTHER_UID)


UNSAFE = {
    "world-writable root": lambda node: node.envs.chmod(0o777),
    "group-writable root": lambda node: node.envs.chmod(0o775),
    "root of another user": lambda node: _chown(node.envs),
    "environment of another user": lambda node: _chown(node.envs / node.key),
    "world-writable environment": lambda node: (node.envs / node.key).chmod(0o777),
    "marker of another user": lambda node: _chown(node.marker),
    "group-writable marker": lambda node: node.marker.chmod(0o664),
    "parent writable by others": lambda node: node.envs.parent.chmod(0o777),
    "parent of another user": lambda node: _chown(node.envs.parent),  # who may rename the root away
    "venv of another user": lambda node: _chown(node.venv),
    "bin directory writable by others": lambda node: (node.venv / "bin").chmod(0o777),
    "interpreter in a directory others may write": lambda node: _interpreter_in_shared_dir(node),
}


def _interpreter_in_shared_dir(node: Node) -> None:
    """The venv's python a link to an interpreter where other users may write."""
    shared = node.envs.parent / "shared-bin"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    python = node.venv / "bin" / "python"
    (shared / "python").write_bytes(python.read_bytes())
    (shared / "python").chmod(0o755)
    python.unlink()
    python.symlink_to(shared / "python")


@pytest.mark.parametrize("case", UNSAFE)
def test_a_planted_interpreter_is_never_run(node, tmp_path, case):
    ran = tmp_path / "planted-python-ran"
    node.envs = tmp_path / "shared" / "envs"
    node.envs.mkdir(parents=True, mode=0o700)
    plant(node, ran)
    UNSAFE[case](node)
    proc = node.run()
    assert proc.returncode == 1 and proc.stdout == ""
    assert "raybake py-executable: refusing to use" in proc.stderr and "fix:" in proc.stderr
    assert not ran.exists()
    assert node.syncs() == []


def test_a_safe_root_runs_its_environment_and_a_sticky_parent_is_fine(node, tmp_path):
    # The control for the test above: the same planted environment in a root of
    # this user's own does run (so the refusals above are what kept it out).
    ran = tmp_path / "planted-python-ran"
    shared = tmp_path / "shared"
    node.envs = shared / "envs"
    node.envs.mkdir(parents=True, mode=0o700)
    shared.chmod(0o1777)  # like /tmp
    plant(node, ran)
    proc = node.run()
    assert proc.returncode == 0, proc.stderr
    assert ran.exists() and node.syncs() == []


def test_a_half_made_environment_is_never_used(node, tmp_path):
    ran = tmp_path / "planted-python-ran"
    node.envs.mkdir(mode=0o700)
    plant(node, ran)
    node.marker.unlink()  # an installer died before marking it done
    proc = node.run()
    assert proc.returncode == 0, proc.stderr
    assert not ran.exists() and len(node.syncs()) == 1
    assert proc.stdout == f"{node.venv}\n"


def test_the_wrapper_never_replaces_what_is_not_a_regular_file(copy_fixture, tmp_path):
    root = copy_fixture("small")
    pipe = tmp_path / "wrapper"
    os.mkfifo(pipe)  # as a device node would be: `--out /dev/null` as root must not replace it
    proc = raybake("py-executable", "-C", str(root), "--out", str(pipe), check=False, timeout=120)
    assert proc.returncode == 2 and "is a named pipe" in proc.stderr and "fix:" in proc.stderr, proc.stderr
    assert stat.S_ISFIFO(pipe.lstat().st_mode)


# Stands in for coreutils' stat on PATH: after the real one answers the wrapper's
# SWAP_AT-th question, it makes the attacker's move at once, so the move lands
# between that check and whatever the wrapper does next. Repeating it after each
# question in turn covers every point between two checks, and the exec, without
# waiting for a race to be won by chance.
STAT_SHIM = """#!/bin/sh
/usr/bin/stat "$@"
rc=$?
n=$(($(cat "$SHIM_COUNT") + 1))
echo "$n" >"$SHIM_COUNT"
if [ "$n" -eq "$SWAP_AT" ]; then
    mv "$SWAP_FROM" "$SWAP_FROM.old" && mv "$SWAP_WITH" "$SWAP_FROM"
fi
exit $rc
"""


def _stat_questions(node: Node, shim_dir: Path, count: Path, **extra: str) -> int:
    count.write_text("0\n")
    node.run(PATH=f"{shim_dir}:{os.environ['PATH']}", SHIM_COUNT=str(count), SWAP_AT="0", **extra)
    return int(count.read_text())


def test_a_root_through_a_symlink_is_checked_where_it_leads_and_no_swap_runs_a_planted_python(
        node, tmp_path):
    # Another user (nobody) owns a directory that the root's symlink leads
    # into: that user may rename the environment root there and put a planted
    # one in its place at any moment, e.g. right after the wrapper's last check.
    if os.geteuid() != 0:
        _unable("making a directory another user's needs root")
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    (shim_dir / "stat").write_text(STAT_SHIM)
    (shim_dir / "stat").chmod(0o755)
    count = tmp_path / "stat-count"
    link = tmp_path / "home" / "envs"
    link.parent.mkdir()

    def setup() -> tuple[Path, Path]:
        attacker = tmp_path / "attacker"
        shutil.rmtree(attacker, ignore_errors=True)
        attacker.mkdir(mode=0o755)
        real = attacker / "envs"
        real.mkdir(mode=0o700)
        node.envs = real
        plant(node, tmp_path / "own-python-ran")  # this user's real environment
        node.envs = attacker / "planted"
        node.envs.mkdir(mode=0o700)
        planted_ran = tmp_path / "planted-python-ran"
        planted_ran.unlink(missing_ok=True)
        plant(node, planted_ran)
        for path in (attacker, *node.envs.rglob("*"), node.envs):
            os.chown(path, OTHER_UID, OTHER_UID, follow_symlinks=False)
        node.envs = link
        link.unlink(missing_ok=True)
        link.symlink_to(real)
        return real, planted_ran

    real, _ = setup()
    swap = {"SWAP_FROM": str(real), "SWAP_WITH": str(tmp_path / "attacker" / "planted")}
    questions = _stat_questions(node, shim_dir, count, **swap)
    assert questions >= 2
    for at in range(1, questions + 1):
        _, planted_ran = setup()
        count.write_text("0\n")
        proc = node.run(PATH=f"{shim_dir}:{os.environ['PATH']}", SHIM_COUNT=str(count), SWAP_AT=str(at), **swap)
        assert not planted_ran.exists(), f"a planted python ran after the swap at question {at}"
        assert proc.returncode == 1 and "refusing to use" in proc.stderr, (at, proc.stderr)
    assert node.syncs() == []

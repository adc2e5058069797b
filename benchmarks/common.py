"""What every benchmark module shares: paths, logging, running commands
(through raybake.tools.run: each in its own process group, stopped with the
benchmark), the engine's facts, raybake itself, and the workload's edits."""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

from raybake.errors import ToolTimeout
from raybake.tools.run import run, stream

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
EXAMPLE = REPO / "examples" / "ray-app"
BASELINES = BENCH / "baselines"
WORK = BENCH / "work"
RESULTS = BENCH / "results"
LOGS = WORK / "logs"
ENGINE_STATE = Path(os.environ.get("RAYBAKE_ENGINE_STATE", "/var/tmp/raybake-engine")) / "engine.env"
CA_BUNDLE = Path(os.environ.get("RAYBAKE_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
                 or "/etc/ssl/certs/ca-certificates.crt")
CONTAINER_CA = "/etc/ssl/certs/ca-certificates.crt"
BUILD_TIMEOUT = 1800
SMALL_DEP = "tabulate"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for subprocesses: without the VIRTUAL_ENV of the outer
    `uv run --with matplotlib` (a nested `uv run` would warn about it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_RUN_RECURSION_DEPTH")}
    env.update(extra)
    return env


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Ends a daemon a benchmark started: asked to, then killed past ``timeout``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_logged(cmd: list[str], logfile: Path, *, env: dict[str, str] | None = None,
               timeout: float = BUILD_TIMEOUT) -> tuple[int, float]:
    """Run ``cmd`` with its output going to ``logfile``; (exit code, wall seconds), -9 on a timeout."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("w") as out:
        out.write(f"$ {shlex.join(cmd)}\n")
        out.flush()
        start = time.perf_counter()
        try:
            # raybake.tools.run adds ``env`` to os.environ; the wrapper drops what clean_env drops.
            argv = ["env", "-u", "VIRTUAL_ENV", "-u", "UV_RUN_RECURSION_DEPTH",
                    *(f"{k}={v}" for k, v in (env or {}).items()), *cmd]
            code = stream(argv, lambda line: out.write(line + "\n"), timeout=timeout)
        except ToolTimeout:
            code = -9
            out.write(f"\n[bench] timed out after {timeout:.0f} s\n")
        return code, time.perf_counter() - start


def capture(cmd: list[str], *, check: bool = True, timeout: float = 300) -> str:
    proc = run(cmd, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout.strip()


def error_summary(path: Path) -> str:
    """The most telling line of a failed command's log, else its last lines."""
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    for pattern in ("error:", "ERROR", "Error", "failed"):
        hits = [line.strip() for line in text if pattern in line]
        if hits:
            return hits[-1][:400]
    return " | ".join(text[-3:])[:400]


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def engine_facts() -> dict[str, str]:
    if not ENGINE_STATE.exists():
        return {}
    return dict(line.split("=", 1) for line in ENGINE_STATE.read_text().split() if "=" in line)


def uv_binary() -> str:
    import uv

    return uv.find_uv_bin()


def wait_for_quiet_machine(skip: bool) -> None:
    """Heavy work waits while a test-suite run (pytest) is going on: 2 cores."""
    if skip:
        return
    waited = 0
    while True:
        proc = run(["pgrep", "-f", "pytest"], check=False, timeout=30)
        pids = [p for p in proc.stdout.split() if int(p) not in (os.getpid(), os.getppid())]
        if not pids:
            if waited:
                log(f"the pytest run ended after {waited} s of waiting")
            return
        if waited % 60 == 0:
            log(f"a pytest run is going on (pids {' '.join(pids)}): waiting for it to end")
        time.sleep(10)
        waited += 10


def wait_for_idle_builder(max_wait: float = 300) -> bool:
    """Wait until no other `docker buildx build` runs; False when it still did after ``max_wait``.

    BuildKit merges a step that several builds share (the same FROM and venv
    step in every raybake image) into one; when another build resolves it, the
    cache chain above it can be lost: seen here, a warm raybake build rebuilt
    its cached dependency layers (31 s instead of 7 to 11 s) while the test
    suites of other sessions built, and a fresh-runner build missed the
    registry cache. A CI runner builds alone."""
    waited = 0
    while True:
        proc = run(["pgrep", "-f", "buildx build"], check=False, timeout=30)
        if not proc.stdout.split():
            if waited:
                log(f"  the other builds ended after {waited} s of waiting")
            return True
        if waited >= max_wait:
            log(f"  other builds still run after {waited} s: measuring anyway")
            return False
        if waited % 60 == 0:
            log("  another `docker buildx build` is running on this engine: waiting for it to end")
        time.sleep(5)
        waited += 5


# --------------------------------------------------------------------------- raybake

def raybake_env(base_image: str, repository: str, **extra: str) -> dict[str, str]:
    return {"RAYBAKE_BASE_IMAGE": base_image, "RAYBAKE_NETWORK": "host", "RAYBAKE_REPOSITORY": repository,
            "RAYBAKE_CA_BUNDLE": str(CA_BUNDLE), **extra}


def raybake_build(project: Path, env: dict[str, str], logfile: Path, *args: str) -> tuple[int, float, str | None]:
    """`raybake build ARGS -C project`, timed; (exit code, seconds, the reference built or None)."""
    argv = [uv_binary(), "run", "--frozen", "--project", str(REPO), "raybake", "build", *args, "-C", str(project)]
    code, seconds = run_logged(argv, logfile, env=env)
    if code != 0 and _lost_dangling_race(logfile):
        # Docker's containerd store names an untagged image moby-dangling@DIGEST; two builds of
        # the same (reproducible) image at once, here and in someone's test run, collide on it.
        log(f"  {logfile.name}: another build of the same image finished at the same moment; building again")
        logfile.rename(logfile.with_suffix(".race.log"))
        code, seconds = run_logged(argv, logfile, env=env)
    if code != 0:
        return code, seconds, None
    return code, seconds, raybake_tag(project, env)


def _lost_dangling_race(logfile: Path) -> bool:
    text = logfile.read_text(errors="replace")
    return "moby-dangling@" in text and "already exists" in text


def raybake_tag(project: Path, env: dict[str, str]) -> str:
    proc = run([uv_binary(), "run", "--frozen", "--project", str(REPO), "raybake", "tag", "-C", str(project)],
               env={**clean_env(), **env}, timeout=120)
    return proc.stdout.strip().splitlines()[-1].strip()


# --------------------------------------------------------------------------- the workload

def fresh_copy(dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".venv", "__pycache__", "*.egg-info", "dist"))
    return dest


def uv_lock(project: Path, logfile: Path) -> None:
    code, _ = run_logged([uv_binary(), "lock", "--directory", str(project)], logfile, timeout=600)
    if code != 0:
        raise RuntimeError(f"uv lock failed in {project}: {error_summary(logfile)}")


def edit_source(project: Path, n: int) -> None:
    stats = project / "src" / "ray_app" / "stats.py"
    stats.write_text(stats.read_text() + f"\n\nBENCHMARK_EDIT = {n}  # source-only change\n")


def add_dependency(project: Path, requirement: str, logfile: Path) -> None:
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    new = re.sub(r'(dependencies = \[\n(?:    "[^"]*",\n)*)', lambda m: m.group(1) + f'    "{requirement}",\n',
                 text, count=1)
    if new == text:
        raise RuntimeError("could not add a dependency to pyproject.toml")
    pyproject.write_text(new)
    uv_lock(project, logfile)


def pin_dependency(project: Path, name: str, version: str, logfile: Path) -> None:
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    new = re.sub(rf'"{name}[<>=!~][^"]*"', f'"{name}=={version}"', text, count=1)
    if new == text:
        raise RuntimeError(f"could not pin {name} in pyproject.toml")
    pyproject.write_text(new)
    uv_lock(project, logfile)


def locked_version(project: Path, name: str) -> str:
    from raybake.lockfile import parse_lock

    package = parse_lock((project / "uv.lock").read_bytes()).package(name)
    version = package.version if package else None
    if not version:
        raise RuntimeError(f"{name} is not in {project}/uv.lock")
    return version


def previous_release(name: str, current: str) -> str:
    """The newest final release of ``name`` before ``current`` with a CPython 3.11
    wheel for this machine (PyPI's JSON simple API, one request)."""
    from packaging.version import Version

    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}[platform.machine().lower()]
    req = urllib.request.Request(f"https://pypi.org/simple/{name}/",
                                 headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        data = json.load(resp)
    with_wheel = {f["filename"].split("-")[1] for f in data.get("files", [])
                  if f["filename"].endswith(".whl") and "-cp311-" in f["filename"] and "manylinux" in f["filename"]
                  and arch in f["filename"] and not f.get("yanked")}
    cur = Version(current)
    for v in sorted((Version(v) for v in with_wheel), reverse=True):
        if v < cur and not v.is_prerelease and not v.is_devrelease:
            return str(v)
    raise RuntimeError(f"no release of {name} before {current} with a cp311 {arch} wheel")

"""How long the pre-commit hooks take on the example project (not a test).

Times `raybake pin --check` (the pin hook on a current pin) and
`raybake pin --lock-only` (the raybake-lock hook) on a copy of examples/ray-app,
10 runs each, and prints a Markdown table. The first run of each starts with an
empty raybake cache, so it pays for `uv lock --check`; later runs find the
passing check remembered.

    uv run --frozen python benchmarks/hooks.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "ray-app"
RAYBAKE = Path(sys.executable).parent / "raybake"


def run(args: list[str], env: dict[str, str], expect: int = 0) -> float:
    start = time.perf_counter()
    proc = subprocess.run([str(RAYBAKE), *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != expect:
        sys.exit(f"raybake {' '.join(args)} exited {proc.returncode} (expected {expect}):\n{proc.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="raybake-bench-hooks-") as tmp:
        project = Path(tmp) / "ray-app"
        shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
        # Hooks never contact the daemon or the network: make sure of it.
        base = {**os.environ, "DOCKER_HOST": "unix:///nonexistent", "HTTPS_PROXY": "http://127.0.0.1:9",
                "HTTP_PROXY": "http://127.0.0.1:9"}
        run(["pin", "-C", str(project)], {**base, "RAYBAKE_CACHE_DIR": f"{tmp}/setup-cache"}, expect=0)
        rows = []
        for label, args in (("`raybake pin --check` (raybake-pin hook, current pin)", ["pin", "--check"]),
                            ("`raybake pin --lock-only` (raybake-lock hook)", ["pin", "--lock-only"])):
            env = {**base, "RAYBAKE_CACHE_DIR": f"{tmp}/cache-{args[-1].lstrip('-')}"}
            times = [run([*args, "-C", str(project)], env) for _ in range(opts.runs)]
            rows.append((label, len(times), times[0], statistics.median(times), max(times)))
    print(f"examples/ray-app ({(EXAMPLE / 'uv.lock').stat().st_size // 1000} kB uv.lock), "
          f"{os.cpu_count()} CPUs\n")
    print("| command | runs | first (cold cache) s | median s | max s |")
    print("|---|---:|---:|---:|---:|")
    for label, n, first, median, worst in rows:
        print(f"| {label} | {n} | {first:.3f} | {median:.3f} | {worst:.3f} |")


if __name__ == "__main__":
    main()

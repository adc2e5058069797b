"""How long `raybake verify` takes on the example image (not a test).

Builds examples/ray-app if needed (offline base image, host network), then
times `raybake verify REF` N times and prints a Markdown table: the whole
command, and the probe inside the container (imports of every locked module).

    uv run --frozen python benchmarks/verify.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "ray-app"
RAYBAKE = Path(sys.executable).parent / "raybake"
ENGINE_ENV = Path(os.environ.get("RAYBAKE_ENGINE_STATE", "/var/tmp/raybake-engine")) / "engine.env"


def raybake(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(RAYBAKE), *args, "-C", str(EXAMPLE)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"raybake {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    engine = dict(line.split("=", 1) for line in ENGINE_ENV.read_text().split())
    env = {**os.environ, "RAYBAKE_BASE_IMAGE": engine["RAYBAKE_TEST_BASE_IMAGE"], "RAYBAKE_NETWORK": "host"}
    ref = raybake("build", env=env).stdout.split()[0]
    whole, probe = [], []
    for _ in range(runs):
        start = time.perf_counter()
        report = json.loads(raybake("verify", ref, "--json", env=env).stdout)
        whole.append(time.perf_counter() - start)
        probe.append(report["facts"]["probe_seconds"])
    facts = report["facts"]
    print(f"`raybake verify {ref}`: {facts['distributions']} distributions, "
          f"{facts['modules_imported']} modules imported, {runs} runs\n")
    print("| measure | median s | max s |\n|---|---:|---:|")
    print(f"| whole command | {statistics.median(whole):.2f} | {max(whole):.2f} |")
    print(f"| probe in the container | {statistics.median(probe):.2f} | {max(probe):.2f} |")


if __name__ == "__main__":
    main()

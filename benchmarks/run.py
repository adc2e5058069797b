"""raybake benchmarks (not a test): image builds against two plain Dockerfiles,
a fresh CI runner with a registry build cache, `build --all` of a matrix of
Pythons against one spec, what a node pulls, and Ray start-up on one node and
on several.

    make bench                                   # = uv run --frozen --with matplotlib python benchmarks/run.py
    uv run --frozen --with matplotlib python benchmarks/run.py --quick --only build

Modules: builds.py (warm machine and fresh runner), matrix.py (--all against
one spec), pulls.py (node pulls),
raystart.py (Ray start-up), report.py (tables, targets, chart); common.py and
images.py are what they share. Writes benchmarks/results/results.{md,json,png}
and prints the Markdown. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from typing import Any

from builds import BuildBench, FreshRunnerBench
from common import CA_BUNDLE, EXAMPLE, LOGS, RESULTS, WORK, capture, engine_facts
from matrix import MatrixBench
from pulls import PullBench
from raystart import NODE_MODES, RAY_MODES, RayBench
from report import (
    chart,
    markdown,
    summarize_builds,
    summarize_fresh,
    summarize_matrix,
    summarize_pulls,
    summarize_ray,
    targets,
)

from images import image_id

PARTS = ("build", "fresh", "matrix", "pull", "ray", "nodes")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions of every measurement (default 3)")
    parser.add_argument("--quick", action="store_true", help="one run of everything (same as --runs 1)")
    parser.add_argument("--only", choices=PARTS, action="append",
                        help="run only these parts (repeatable); the others' previous results in results.json "
                             "are kept")
    parser.add_argument("--pull-runs", type=int, help="repetitions of the node pulls (default: --runs); "
                        "they are cheap and noisy")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a running pytest to end")
    parser.add_argument("--keep-images", action="store_true", help="keep the images the build benchmarks made")
    opts = parser.parse_args()
    if opts.quick:
        opts.runs = 1
    if opts.runs < 1:
        parser.error("--runs must be at least 1")
    parts = tuple(opts.only or PARTS)
    opts.pull_runs = opts.pull_runs or opts.runs

    facts = engine_facts()
    base = os.environ.get("RAYBAKE_BASE_IMAGE") or facts.get("RAYBAKE_TEST_BASE_IMAGE") or \
        "raybake-test/bookworm-python:3.11"
    registry = os.environ.get("RAYBAKE_BENCH_REGISTRY") or facts.get("RAYBAKE_TEST_REGISTRY")
    if image_id(base) is None:
        sys.exit(f"error: the base image {base} is not in the local store\nfix: bash buildkit/engine-up")
    if not CA_BUNDLE.is_file():
        sys.exit(f"error: the CA bundle {CA_BUNDLE} does not exist\nfix: set SSL_CERT_FILE to the proxy's CA bundle")
    if registry is None and {"fresh", "pull"} & set(parts):
        sys.exit("error: the fresh-runner and node-pull benchmarks need a registry\n"
                 "fix: bash buildkit/engine-up (or set RAYBAKE_BENCH_REGISTRY=host:port)")
    for d in (WORK, LOGS, RESULTS):
        d.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results: dict[str, Any] = {}
    previous_json = RESULTS / "results.json"
    partial = WORK / f"results-{stamp}.partial.json"
    if opts.only and previous_json.exists():
        try:
            results = json.loads(previous_json.read_text())
        except ValueError:
            results = {}
    results["meta"] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpus": os.cpu_count(),
        "docker": capture(["docker", "version", "--format", "{{.Server.Version}}"], check=False),
        "base_image": base, "packages": (EXAMPLE / "uv.lock").read_text().count("\n[[package]]"),
        "command": f"uv run --frozen --with matplotlib python benchmarks/run.py {' '.join(sys.argv[1:])}".strip(),
        "machine": platform.machine(),
    }

    def record(part: str, rows: list[Any], summary: Any) -> None:
        dict_rows = [asdict(r) for r in rows]
        results[part] = {"runs": opts.pull_runs if part == "pull" else opts.runs, "date": results["meta"]["date"],
                         "command": results["meta"]["command"], "rows": dict_rows, "summary": summary(dict_rows)}
        # Each part as it ends: a later part that fails does not lose the earlier ones.
        partial.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")

    started = time.perf_counter()
    pushed: dict[str, tuple[str, str]] = {}
    if "build" in parts:
        bench = BuildBench(opts, base, stamp, registry)
        record("build", bench.run(), summarize_builds)
        pushed.update(bench.pushed)
    if "fresh" in parts:
        fresh = FreshRunnerBench(opts, base, stamp, registry)
        record("fresh", fresh.run(), summarize_fresh)
        for tool, pair in fresh.pushed.items():
            pushed.setdefault(tool, pair)
    if "matrix" in parts:
        trixie = os.environ.get("RAYBAKE_BASE_IMAGE_PY313") or facts.get("RAYBAKE_TEST_TRIXIE_BASE_IMAGE") or \
            "raybake-test/trixie-python:3.13"
        if image_id(trixie) is None:
            sys.exit(f"error: the base image {trixie} is not in the local store\nfix: bash buildkit/engine-up")
        record("matrix", MatrixBench(opts, base, trixie, stamp).run(), summarize_matrix)
    if "pull" in parts:
        record("pull", PullBench(opts, base, stamp, registry, pushed).run(), summarize_pulls)
    if "ray" in parts:
        record("ray", RayBench(opts, base, stamp, nodes=False).run(), lambda rows: summarize_ray(rows, RAY_MODES))
    if "nodes" in parts:
        record("nodes", RayBench(opts, base, stamp, nodes=True).run(), lambda rows: summarize_ray(rows, NODE_MODES))
    results["meta"]["total_s"] = time.perf_counter() - started
    results["targets"] = targets(results)
    previous_json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    text = markdown(results)
    (RESULTS / "results.md").write_text(text)
    problem = chart(results, RESULTS / "results.png")
    print()
    print(text)
    print(f"written: {RESULTS / 'results.md'}, {previous_json}"
          + ("" if problem else f", {RESULTS / 'results.png'}") + f"  ({results['meta']['total_s'] / 60:.1f} min)")
    if problem:
        print(f"no chart: {problem}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)

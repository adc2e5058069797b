"""Medians, ratios, targets, the Markdown report and the chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from builds import FRESH_TOOLS, SCENARIO_LABELS, SCENARIOS, TOOL_LABELS, TOOLS
from common import median
from matrix import MATRIX_LABELS, MATRIX_SCENARIOS
from pulls import KIND_LABELS, KINDS, VARIANT_LABELS, VARIANTS
from raystart import (
    ACTORS_PER_NODE,
    NODE_MODES,
    RAY_ACTORS,
    RAY_MODE_LABELS,
    RAY_MODE_NOTES,
    RAY_MODES,
    REGISTER_TIMEOUT_S,
    WORKER_NODES,
)


def _cell(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    ok = [r for r in rows if r["ok"]]
    return {**{k: median([r[k] for r in ok]) for k in keys}, "ok_runs": len(ok), "runs": len(rows),
            "errors": sorted({r["error"] for r in rows if not r["ok"] and r["error"]})}


def _ratios(rows: list[dict[str, Any]], key: str, num: Any, den: Any, by: str) -> dict[str, Any]:
    """Median over runs of num[key] / den[key], rows matched by run; ``by`` names the column telling them apart."""
    runs = sorted({r["run"] for r in rows})
    pick = {(r["run"], r[by]): r for r in rows}
    values = [pick[(n, num)][key] / pick[(n, den)][key] for n in runs
              if (n, num) in pick and (n, den) in pick and pick[(n, num)]["ok"] and pick[(n, den)]["ok"]
              and pick[(n, den)][key]]
    return {"time": median(values), "pairs": len(values)}


def summarize_builds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per (tool, scenario) and medians of per-run ratios raybake/baseline."""
    out: dict[str, Any] = {"cells": {}, "ratios": {}}
    for tool in TOOLS:
        for sc in SCENARIOS:
            out["cells"][f"{tool}/{sc}"] = _cell([r for r in rows if r["tool"] == tool and r["scenario"] == sc],
                                                 ("seconds", "changed_bytes", "image_size", "unpacked_size"))
    for base in ("pip", "uv"):
        for sc in SCENARIOS:
            scoped = [r for r in rows if r["scenario"] == sc]
            out["ratios"][f"{base}/{sc}"] = {**_ratios(scoped, "seconds", "raybake", base, "tool"),
                                             "size": _ratios(scoped, "image_size", "raybake", base, "tool")["time"]}
    return out


def summarize_fresh(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"cells": {tool: _cell([r for r in rows if r["tool"] == tool], ("seconds", "cached_steps"))
                      for tool in FRESH_TOOLS},
            "ratios": {"uv": _ratios(rows, "seconds", "raybake", "uv", "tool"),
                       "zstd/uv": _ratios(rows, "seconds", "raybake_zstd", "uv", "tool")}}


def summarize_pulls(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"cells": {}}
    for variant in VARIANTS:
        for kind in KINDS:
            scoped = [r for r in rows if r["variant"] == variant and r["kind"] == kind]
            cell = _cell(scoped, ("seconds", "bytes", "decompress_s"))
            cell["media_types"] = next((r["media_types"] for r in scoped if r["media_types"]), None)
            out["cells"][f"{variant}/{kind}"] = cell
    return out


def summarize_matrix(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per scenario; per run, the two single builds' sum and --all against it, then medians."""
    cells = {sc: _cell([r for r in rows if r["scenario"] == sc], ("seconds",)) for sc in MATRIX_SCENARIOS}
    pick = {(r["run"], r["scenario"]): r for r in rows if r["ok"]}
    runs = sorted({r["run"] for r in rows})
    sums = [pick[(n, "default")]["seconds"] + pick[(n, "py313")]["seconds"] for n in runs
            if (n, "default") in pick and (n, "py313") in pick]
    per_run = [(pick[(n, "all")]["seconds"], pick[(n, "default")]["seconds"] + pick[(n, "py313")]["seconds"],
                pick[(n, "default")]["seconds"]) for n in runs
               if all((n, sc) in pick for sc in MATRIX_SCENARIOS)]
    return {"cells": cells, "sum": median(sums),
            "all/sum": median([a / s for a, s, _ in per_run]), "all/one": median([a / o for a, _, o in per_run])}


def summarize_ray(rows: list[dict[str, Any]], modes: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"cells": {}, "ratios": {}}
    for mode in modes:
        scoped = [r for r in rows if r["mode"] == mode]
        cell = _cell(scoped, ("actors_ready_s", "job_s", "head_start_s"))
        cell["runtime_env"] = next((r["runtime_env"] for r in scoped), None)
        cell["register_timeouts"] = median([r.get("register_timeouts") for r in scoped])
        out["cells"][mode] = cell
        if mode != "prebuilt":
            out["ratios"][mode] = _ratios(rows, "actors_ready_s", "prebuilt", mode, "mode")
    return out


def targets(results: dict[str, Any]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []

    def add(name: str, value: float | None, limit: float, shown: str, strict: bool = False) -> None:
        if value is None:
            rows.append({"target": name, "measured": "not measured (failed)", "result": "MISS"})
            return
        ok = value < limit if strict else value <= limit
        miss = "" if ok else f" (missed by {(value / limit - 1) * 100:.0f}%)"
        rows.append({"target": name, "measured": shown + miss, "result": "PASS" if ok else "MISS"})

    builds = results.get("build", {}).get("summary")
    if builds:
        cells, ratios = builds["cells"], builds["ratios"]
        for sc in ("noop", "source"):
            s = cells[f"raybake/{sc}"]["seconds"]
            add(f"raybake {SCENARIO_LABELS[sc]} < 0.5 s", s, 0.5, f"{s:.2f} s" if s is not None else "", strict=True)
        for base, limit, text in (("uv", 0.25, "1/4 of (b)"), ("pip", 0.10, "1/10 of (a)")):
            r = ratios[f"{base}/small_dep"]["time"]
            add(f"raybake small dependency ≤ {text}", r, limit, f"{r:.3f} × ({'b' if base == 'uv' else 'a'})"
                if r is not None else "")
        r = ratios["uv/cold"]["time"]
        add("raybake cold ≤ 1.1 × (b)", r, 1.10, f"{r:.2f} × (b)" if r is not None else "")
        r = ratios["pip/cold"]["size"]
        add("raybake image size ≤ (a)", r, 1.0, f"{r:.2f} × (a)" if r is not None else "")
    fresh = results.get("fresh", {}).get("summary")
    if fresh:
        s = fresh["cells"]["raybake"]["seconds"]
        warm = builds["cells"]["raybake/small_dep"]["seconds"] if builds else None
        r = s / warm if s is not None and warm else None
        add("fresh runner ≤ 1.5 × the warm small-dependency build", r, 1.5,
            f"{s:.1f} s = {r:.2f} × {warm:.1f} s" if r is not None else "")
        r = fresh["ratios"]["uv"]["time"]
        add("fresh runner ≤ 1/4 of (b) on the same fresh runner", r, 0.25, f"{r:.3f} × (b)" if r is not None else "")
        s = fresh["cells"].get("raybake_zstd", {}).get("seconds")
        r = s / warm if s is not None and warm else None
        add("fresh runner with `compression: zstd` ≤ 1.5 × the warm small-dependency build", r, 1.5,
            f"{s:.1f} s = {r:.2f} × {warm:.1f} s" if r is not None else "")
    for key, modes in (("ray", RAY_MODES), ("nodes", NODE_MODES)):
        ray = results.get(key, {}).get("summary")
        if not ray:
            continue
        where = "one node" if key == "ray" else f"{WORKER_NODES + 1} nodes"
        for mode in modes[1:]:
            r = ray["ratios"][mode]["time"]
            add(f"Ray ({where}) prebuilt faster than {RAY_MODE_LABELS[mode]}", r, 1.0,
                f"{r:.2f} × (prebuilt / mode)" if r is not None else "", strict=True)
    return rows


def fmt_s(v: float | None) -> str:
    return "failed" if v is None else f"{v:.2f}"


def fmt_mb(v: float | None) -> str:
    return "failed" if v is None else f"{v / 1e6:,.0f}"


def fmt_ratio(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _build_tables(b: dict[str, Any]) -> list[str]:
    s, out = b["summary"], []
    c = s["cells"]
    out.append("## Image builds: wall time of the whole command (s)\n")
    out.append("| scenario | raybake | (a) COPY + pip | (b) uv single layer | raybake / (a) | raybake / (b) |")
    out.append("|---|---:|---:|---:|---:|---:|")
    for sc in SCENARIOS:
        out.append(f"| {SCENARIO_LABELS[sc]} | {fmt_s(c[f'raybake/{sc}']['seconds'])} | "
                   f"{fmt_s(c[f'pip/{sc}']['seconds'])} | {fmt_s(c[f'uv/{sc}']['seconds'])} | "
                   f"{fmt_ratio(s['ratios'][f'pip/{sc}']['time'])} | {fmt_ratio(s['ratios'][f'uv/{sc}']['time'])} |")
    out.append("\n## Layers rebuilt: bytes of layers whose diff ID is new vs the previous image (MB, uncompressed)\n")
    out.append("Cold builds are compared with the base image.\n")
    out.append("| scenario | raybake | (a) COPY + pip | (b) uv single layer |")
    out.append("|---|---:|---:|---:|")
    for sc in SCENARIOS:
        out.append(f"| {SCENARIO_LABELS[sc]} | " + " | ".join(fmt_mb(c[f"{t}/{sc}"]["changed_bytes"]) for t in TOOLS)
                   + " |")
    out.append("\n## Final image size after the cold build (MB)\n")
    out.append("`docker image inspect .Size` (this containerd store reports the compressed content) and the "
               "sum of the layers' unpacked sizes from `docker history`.\n")
    out.append("| | raybake | (a) COPY + pip | (b) uv single layer |")
    out.append("|---|---:|---:|---:|")
    out.append("| image size | " + " | ".join(fmt_mb(c[f"{t}/cold"]["image_size"]) for t in TOOLS) + " |")
    out.append("| unpacked layers | " + " | ".join(fmt_mb(c[f"{t}/cold"]["unpacked_size"]) for t in TOOLS) + " |")
    return out


def _fresh_table(f: dict[str, Any], warm: float | None) -> list[str]:
    empty = {"seconds": None, "cached_steps": None}
    c = {t: f["summary"]["cells"].get(t, empty) for t in FRESH_TOOLS}
    ratios = {k: f["summary"]["ratios"].get(k, {"time": None}) for k in ("uv", "zstd/uv")}
    out = ["\n## Fresh CI runner: one small dependency added, the registry's build cache only (s)\n",
           "Every local image of the series and all of BuildKit's cache removed (the base image stays: it "
           "cannot be pulled here); the registry holds the previous lock's image and its build cache "
           "(raybake: `raybake build --push` exported it to `REPOSITORY:buildcache-default`, `mode=max`; "
           "(b): `--cache-to type=registry,mode=max`). Timed: `raybake build` (cache imported by default "
           "from the registry named in the repository) and (b)'s `docker buildx build --load --cache-from "
           "type=registry,...`.\n",
           "| | raybake | raybake, `compression: zstd` | (b) uv single layer | raybake / (b) | zstd / (b) "
           "| warm small-dependency build (raybake) |",
           "|---|---:|---:|---:|---:|---:|---:|",
           f"| wall time | {fmt_s(c['raybake']['seconds'])} | {fmt_s(c['raybake_zstd']['seconds'])} | "
           f"{fmt_s(c['uv']['seconds'])} | {fmt_ratio(ratios['uv']['time'])} | "
           f"{fmt_ratio(ratios['zstd/uv']['time'])} | {fmt_s(warm)} |",
           "| build steps from the cache | " + " | ".join(
               "–" if c[t]["cached_steps"] is None else f"{c[t]['cached_steps']:.0f}" for t in FRESH_TOOLS)
           + " | | | |"]
    return out


def _pull_table(p: dict[str, Any]) -> list[str]:
    c = p["summary"]["cells"]
    out = ["\n## What a node pulls: bytes and `ctr images pull` time (fetch + unpack) onto an empty containerd\n",
           "A containerd of its own with an empty root per measurement (nothing shared with the machine's "
           "Docker store), pulling from the local registry over loopback. Update: the node holds the previous "
           "image; the new one adds `tabulate`.\n",
           "`decompress` is the CPU part alone: the same blobs decompressed with `gzip -dc`/`zstd -dc` to "
           "/dev/null one after another (fetched first, not timed).\n",
           "| image | cold: MB to pull | cold: pull + unpack (s) | cold: decompress (s) | update: MB to pull "
           "| update: pull + unpack (s) | layer media type |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for v in VARIANTS:
        cold, upd = c[f"{v}/cold"], c[f"{v}/update"]
        types = ", ".join(f"`{t.rsplit('.', 1)[-1] if '+' not in t else t.rsplit('+', 1)[-1]}`"
                          for t in (cold["media_types"] or []))
        out.append(f"| {VARIANT_LABELS[v]} | {fmt_mb(cold['bytes'])} | {fmt_s(cold['seconds'])} | "
                   f"{fmt_s(cold['decompress_s'])} | {fmt_mb(upd['bytes'])} | {fmt_s(upd['seconds'])} | {types} |")
    return out


def _matrix_table(m: dict[str, Any]) -> list[str]:
    s = m["summary"]
    out = ["\n## `raybake build --all`: a matrix of two Pythons against one spec (s)\n",
           "`examples/ray-app`'s specs `default` (Python 3.11 on the bookworm base) and `py313` (3.13 on the "
           "trixie base): each alone, then both in one `--all`, which builds them at the same time (different "
           "bases). Wall time of the whole command, verification included. Every measurement's dependency "
           "layers are its own (a variable unique to it in `[tool.raybake] env`): none comes from BuildKit's "
           "cache, and nothing is pruned; uv's download cache and the venv step below the variable stay warm.\n",
           "| build | wall time |", "|---|---:|"]
    out += [f"| {MATRIX_LABELS[sc]} | {fmt_s(s['cells'][sc]['seconds'])} |" for sc in ("default", "py313")]
    out.append(f"| the two alone, one after another (sum) | {fmt_s(s['sum'])} |")
    out.append(f"| {MATRIX_LABELS['all']} | {fmt_s(s['cells']['all']['seconds'])} |")
    out.append(f"| `--all` / the sum | {fmt_ratio(s['all/sum'])} |")
    out.append(f"| `--all` / `default` alone | {fmt_ratio(s['all/one'])} |")
    return out


def _ray_table(r: dict[str, Any], modes: tuple[str, ...], nodes: bool) -> list[str]:
    s = r["summary"]
    if nodes:
        out = [f"\n## Ray start-up on {WORKER_NODES + 1} nodes: {ACTORS_PER_NODE} actors per node importing "
               "pandas and pyarrow (s)\n",
               f"A head and {WORKER_NODES} worker containers of the same image (raybake.localcluster: host network, "
               "every port chosen, a `node_<i>` resource per node that pins the actors), 2 logical CPUs per node, "
               f"`RAY_worker_register_timeout_seconds={REGISTER_TIMEOUT_S}` on every node (Ray's default: 60). "
               "`registration timeouts`: workers Ray gave up waiting for (raylet.out, summed over the nodes); Ray kills "
               "such a worker and starts another, and after repeated failures gives the actor up "
               "(`ActorUnschedulableError`).\n",
               "| dependencies | actors ready | job | cluster start | registration timeouts | prebuilt / mode |",
               "|---|---:|---:|---:|---:|---:|"]
    else:
        out = [f"\n## Ray start-up: {RAY_ACTORS} actors importing pandas and pyarrow (s)\n",
               "Fresh one-node Ray head container per measurement (empty per-node caches). "
               "`actors ready` is timed inside the job's driver, from the first actor creation to all "
               "actors answering; `job` is submit to finish, seen from the client.\n",
               "| dependencies | actors ready | job | head start | prebuilt / mode | runtime_env |",
               "|---|---:|---:|---:|---:|---|"]
    for mode in modes:
        c = s["cells"][mode]
        ratio = "–" if mode == "prebuilt" else fmt_ratio(s["ratios"][mode]["time"])
        if nodes:
            timeouts = "–" if c["register_timeouts"] is None else f"{c['register_timeouts']:.0f}"
            out.append(f"| {RAY_MODE_LABELS[mode]} | {fmt_s(c['actors_ready_s'])} | {fmt_s(c['job_s'])} | "
                       f"{fmt_s(c['head_start_s'])} | {timeouts} | {ratio} |")
        else:
            env = json.dumps(c["runtime_env"]) if c["runtime_env"] else "none"
            out.append(f"| {RAY_MODE_LABELS[mode]} | {fmt_s(c['actors_ready_s'])} | {fmt_s(c['job_s'])} | "
                       f"{fmt_s(c['head_start_s'])} | {ratio} | `{env}` |")
    return out


PARTS = ("build", "fresh", "matrix", "pull", "ray", "nodes")


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    runs = ", ".join(f"{k}: {results[k]['runs']}" for k in PARTS if k in results)
    out = ["# raybake benchmark results\n",
           f"{meta['date']}, {meta['cpus']} CPUs, Docker {meta['docker']}, base image `{meta['base_image']}`, "
           f"workload `examples/ray-app` ({meta['packages']} locked packages). Runs ({runs}); "
           "medians, ratios are raybake / baseline computed per run then the median. "
           f"Command: `{meta['command']}`.\n"]
    earlier = [f"{k} ({results[k]['date']}, `{results[k].get('command', '?')}`)" for k in PARTS
               if k in results and results[k].get("date") != meta["date"]]
    if earlier:
        out.append(f"Kept from earlier runs: {'; '.join(earlier)}.\n")
    b = results.get("build")
    if b:
        out += _build_tables(b)
    if results.get("fresh"):
        warm = b["summary"]["cells"]["raybake/small_dep"]["seconds"] if b else None
        out += _fresh_table(results["fresh"], warm)
    if results.get("matrix"):
        out += _matrix_table(results["matrix"])
    if results.get("pull"):
        out += _pull_table(results["pull"])
    if results.get("ray"):
        out += _ray_table(results["ray"], RAY_MODES, nodes=False)
    if results.get("nodes"):
        out += _ray_table(results["nodes"], NODE_MODES, nodes=True)
    if results.get("targets"):
        out += ["\n## Targets\n", "| target | measured | result |", "|---|---|---|"]
        out += [f"| {t['target']} | {t['measured']} | {t['result']} |" for t in results["targets"]]
    notes = _failures(results)
    if notes:
        out += ["\n## Failures and notes\n", *notes]
    return "\n".join(out) + "\n"


def _failures(results: dict[str, Any]) -> list[str]:
    out = []
    if b := results.get("build"):
        for key, c in b["summary"]["cells"].items():
            tool, sc = key.split("/")
            out += [f"- build {TOOL_LABELS[tool]}, {SCENARIO_LABELS[sc]} ({c['runs'] - c['ok_runs']}/{c['runs']} "
                    f"runs): {e}" for e in c["errors"]]
        out += [f"- note, run {row['run']} {TOOL_LABELS[row['tool']]} {row['scenario']}: {note}"
                for row in b["rows"] for note in row.get("notes", [])]
    if f := results.get("fresh"):
        for tool, c in f["summary"]["cells"].items():
            out += [f"- fresh runner {TOOL_LABELS[tool]}: {e}" for e in c["errors"]]
        out += [f"- note, run {row['run']} fresh runner {TOOL_LABELS[row['tool']]}: {note}"
                for row in f["rows"] for note in row.get("notes", [])]
    if m := results.get("matrix"):
        for sc, c in m["summary"]["cells"].items():
            out += [f"- matrix, {MATRIX_LABELS[sc]}: {e}" for e in c["errors"]]
        out += [f"- note, run {row['run']} matrix, {MATRIX_LABELS[row['scenario']]}: {note}"
                for row in m["rows"] for note in row.get("notes", [])]
    if p := results.get("pull"):
        for key, c in p["summary"]["cells"].items():
            variant, kind = key.split("/")
            out += [f"- pull {VARIANT_LABELS[variant]}, {KIND_LABELS[kind]}: {e}" for e in c["errors"]]
    for key, modes in (("ray", RAY_MODES), ("nodes", NODE_MODES)):
        if r := results.get(key):
            where = "one node" if key == "ray" else f"{WORKER_NODES + 1} nodes"
            for mode, c in r["summary"]["cells"].items():
                out += [f"- Ray ({where}) {RAY_MODE_LABELS[mode]} ({c['runs'] - c['ok_runs']}/{c['runs']} runs): {e}"
                        for e in c["errors"]]
            out += [f"- note, Ray ({where}) {RAY_MODE_LABELS[m]}: {RAY_MODE_NOTES[m]}" for m in modes
                    if m in RAY_MODE_NOTES and r["summary"]["cells"][m]["ok_runs"]]
    return out


def chart(results: dict[str, Any], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: run through `make bench` (uv run --with matplotlib)"
    panels = (["time", "bytes"] if results.get("build") else []) + (["pull"] if results.get("pull") else []) \
        + [k for k in ("ray", "nodes") if results.get(k)]
    if not panels:
        return "nothing to plot"
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.2), squeeze=False)
    colors = {"raybake": "#2b8cbe", "raybake_zstd": "#08519c", "pip": "#e34a33", "uv": "#fdbb84"}
    for ax, panel in zip(axes[0], panels):
        if panel in ("time", "bytes"):
            _bars(ax, results["build"]["summary"]["cells"], TOOLS, SCENARIOS,
                  "seconds" if panel == "time" else "changed_bytes", 1 if panel == "time" else 1e9, colors,
                  {t: TOOL_LABELS[t] for t in TOOLS}, ["cold", "no-op", "source", "small dep", "heavy dep"],
                  log=panel == "time")
            ax.set_ylabel("wall time (s, log scale)" if panel == "time" else "layers rebuilt (GB)")
            ax.set_title("image builds: " + ("wall time" if panel == "time" else "bytes of new layers"))
        elif panel == "pull":
            _bars(ax, results["pull"]["summary"]["cells"], VARIANTS, KINDS, "seconds", 1, colors, VARIANT_LABELS,
                  ["cold node", "update"], log=False)
            ax.set_ylabel("pull + unpack (s)")
            ax.set_title("what a node pulls: time onto an empty containerd")
        else:
            modes = RAY_MODES if panel == "ray" else NODE_MODES
            cells = results[panel]["summary"]["cells"]
            values = [cells[m]["actors_ready_s"] for m in modes]
            bars = ax.bar(range(len(modes)), [v or 0 for v in values],
                          color=["#2b8cbe", "#e34a33", "#fdbb84", "#fc8d59"][:len(modes)])
            for bar, v in zip(bars, values):
                ax.annotate("failed" if v is None else f"{v:.1f}", (bar.get_x() + bar.get_width() / 2,
                            bar.get_height()), ha="center", va="bottom", fontsize=8)
            ax.set_xticks(range(len(modes)))
            ax.set_xticklabels([{"prebuilt": "prebuilt\nimage", "pip": "runtime_env\npip", "uv": "runtime_env\nuv",
                                 "uv_run": "py_executable\nuv run"}[m] for m in modes])
            ax.set_ylabel("seconds until all actors ready")
            ax.set_title(f"Ray: {RAY_ACTORS} actors, one node" if panel == "ray"
                         else f"Ray: {WORKER_NODES + 1} nodes x {ACTORS_PER_NODE} actors")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def _bars(ax: Any, cells: dict[str, Any], series: tuple[str, ...], groups: tuple[str, ...], key: str,
          scale: float, colors: dict[str, str], labels: dict[str, str], ticks: list[str], *, log: bool) -> None:
    width = 0.8 / len(series)
    for i, name in enumerate(series):
        values = [cells[f"{name}/{g}"][key] for g in groups]
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(groups))]
        heights = [max(v / scale, 0.01) if v is not None else 0 for v in values]
        bars = ax.bar(xs, heights, width, label=labels[name], color=colors[name])
        for bar, v in zip(bars, values):
            text = "fail" if v is None else (f"{v / scale:.1f}" if scale == 1 else f"{v / scale:.2f}")
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        fontsize=7)
    if log:
        ax.set_yscale("log")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(ticks)
    ax.legend(fontsize=8)

"""render(): BuildPlan -> Dockerfile text. No side effects.

Layers go from stable to volatile: Dockerfile.base (OS, Python, uv, venv),
apt packages, environment variables, the dependency layers, labels."""

from __future__ import annotations

import json
import re
import shlex

from raybake.contract import PROJECT_DIR, UV_CACHE, VENV_PYTHON
from raybake.plan import (
    CA_CONTEXT,
    CA_FILE,
    SEAL_SCRIPT,
    BuildPlan,
    PinnedLayer,
    SyncLayer,
    base_dockerfile,
)


def render(plan: BuildPlan) -> str:
    parts = [_with_defaults(base_dockerfile().rstrip("\n"), dict(plan.build_args)), "",
             "# ---- raybake: generated from the image spec below this line ----"]
    if plan.apt_packages:
        parts.append(_apt_layer(plan.apt_packages))
    if plan.env:
        parts.append("ENV " + " \\\n    ".join(f"{k}={env_value(v)}" for k, v in plan.env))
    parts += [_dep_layer(plan, layer) for layer in plan.dep_layers]
    if plan.user != "root":
        parts.append(f"USER {plan.user}")
    parts.append("LABEL " + " \\\n      ".join(f"{k}={json.dumps(v)}" for k, v in plan.labels))
    return "\n".join(parts) + "\n"


def _with_defaults(text: str, build_args: dict[str, str]) -> str:
    """The base template with its ARG defaults set to the plan's values: the
    Dockerfile printed is the one built (resolved base image and Python)."""
    def arg(m: re.Match[str]) -> str:
        name = m.group(1)
        return f"ARG {name}={json.dumps(build_args[name])}" if name in build_args else m.group(0)

    return re.sub(r"^ARG ([A-Z_]+)=.*$", arg, text, flags=re.M)


def env_value(value: str) -> str:
    r"""``value`` as a Dockerfile ENV word that BuildKit reads back byte for byte.

    In double quotes BuildKit expands ``$VAR`` and ``${VAR}`` and unescapes
    ``\"``, ``\$`` and ``\\`` only; JSON's escapes (``\n``, ``\u00e9``) would
    stay literal. So escape those three and write everything else as it is
    (spec.py refuses line breaks, which an ENV instruction cannot hold)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def _apt_layer(packages: tuple[str, ...]) -> str:
    return (
        "RUN apt-get update \\\n"
        " && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
        + " ".join(shlex.quote(p) for p in packages) + " \\\n"
        # Logs and caches carry build timestamps: drop them for reproducible layers.
        " && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log /var/cache/ldconfig/aux-cache"
    )


def _uv_step(plan: BuildPlan, binds: tuple[str, ...], command: str) -> str:
    """A RUN step for uv: its cache, the given bind mounts, the secrets; then
    seals the layer: byte-compiles what it installed, fixes its file times (seal_layer.py)."""
    mounts = [f"--mount=type=cache,target={UV_CACHE},id=raybake-uv-cache"]
    mounts += [f"--mount=type=bind,source={f},target={PROJECT_DIR}/{f}" for f in (*binds, SEAL_SCRIPT)]
    mounts.append("--mount=type=tmpfs,target=/tmp")  # uv's project lock file stays out of the layer
    # The CA mount is always there (an empty file when no proxy CA is set), so
    # the Dockerfile, and so the image, do not depend on this machine's network.
    ca = f"/run/raybake-ca/{CA_FILE}"
    mounts.append(f"--mount=type=bind,from={CA_CONTEXT},source={CA_FILE},target={ca}")
    # Index credentials are secrets, mounted as files for this step only.
    mounts += [f"--mount=type=secret,id={name},required=false" for name in plan.index_secrets]
    script = [f"if [ -s {ca} ]; then export SSL_CERT_FILE={ca}; fi"]
    script += [f'if [ -e /run/secrets/{n} ]; then export {n}="$(cat /run/secrets/{n})"; fi'
               for n in plan.index_secrets]
    # PYTHONDONTWRITEBYTECODE: raybake's own Python runs must not leave stdlib .pyc files.
    script.append(f"start=$(PYTHONDONTWRITEBYTECODE=1 {VENV_PYTHON} -c 'import time; print(time.time())')")
    # The image's UV_COMPILE_BYTECODE=1 would make uv recompile everything.
    # UV_CACHE_DIR: the cache mount, whatever HOME the base sets (rayproject/ray: /home/ray),
    # so no cache lands in the layer.
    script.append(f"cd {PROJECT_DIR} && UV_COMPILE_BYTECODE=0 UV_CACHE_DIR={UV_CACHE} {command}")
    script.append(f'SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH PYTHONDONTWRITEBYTECODE=1 {VENV_PYTHON} '
                  f'{PROJECT_DIR}/{SEAL_SCRIPT} "$start"')
    return "RUN " + " \\\n    ".join(mounts) + " \\\n    " + " \\\n && ".join(script)


def _dep_layer(plan: BuildPlan, layer: PinnedLayer | SyncLayer) -> str:
    if isinstance(layer, PinnedLayer):
        return (f"# pinned layer {layer.name}: {', '.join(layer.packages)}\n"
                + _uv_step(plan, (layer.requirements,),
                           f"uv pip install --python {VENV_PYTHON} --no-deps --require-hashes "
                           f"-r {PROJECT_DIR}/{layer.requirements}"))
    return _uv_step(plan, plan.bind_files, "uv sync " + " ".join(shlex.quote(a) for a in layer.uv_args))

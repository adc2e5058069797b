"""render(): BuildPlan -> Dockerfile text. No side effects.

Layers go from stable to volatile: Dockerfile.base (OS, Python, uv, venv),
apt packages, environment variables, the dependency layers, runtime apt
packages, labels."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from functools import cache
from importlib.resources import files

from raybake import contract
from raybake.contract import PROJECT_DIR, UV_CACHE, VENV_PYTHON
from raybake.hashing import InputHash
from raybake.layers import layer_rules
from raybake.plan import (
    CA_CONTEXT,
    CA_FILE,
    SEAL_SCRIPT,
    BuildPlan,
    ContextFile,
    ImageIdentity,
    PinnedLayer,
    SyncLayer,
)
from raybake.spec import ImageSpec


def render(plan: BuildPlan) -> str:
    parts = [_with_defaults(base_dockerfile().rstrip("\n"), dict(plan.build_args)), "",
             "# ---- raybake: generated from the image spec below this line ----"]
    if plan.apt_packages:
        parts.append(_apt_layer(plan.apt_packages))
    if plan.env:
        parts.append("ENV " + " \\\n    ".join(f"{k}={env_value(v)}" for k, v in plan.env))
    parts += [_dep_layer(plan, layer) for layer in plan.dep_layers]
    if plan.runtime_apt_packages:
        # Above the dependencies: adding ffmpeg must not rebuild and re-export torch's layers.
        parts.append(_apt_layer(plan.runtime_apt_packages))
    if plan.user != "root":
        # The base's own user in its own working directory (Anyscale requires /home/ray for `ray`).
        parts += [f"USER {plan.user}", f"WORKDIR {plan.workdir}"]
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


def _uv_step(plan: BuildPlan, binds: tuple[str, ...], command: str, secrets: tuple[str, ...]) -> str:
    """A RUN step for uv: its cache, the given bind mounts, the given secrets; then
    seals the layer: byte-compiles what it installed, fixes its file times (seal_layer.py)."""
    # A step holding secrets gets an empty cache of its own: what it downloads
    # or builds with them (a backend may bake a secret into a wheel) never
    # reaches another build through the shared one.
    mounts = [f"--mount=type=tmpfs,target={UV_CACHE}" if secrets
              else f"--mount=type=cache,target={UV_CACHE},id=raybake-uv-cache"]
    mounts += [f"--mount=type=bind,source={f},target={PROJECT_DIR}/{f}" for f in (*binds, SEAL_SCRIPT)]
    mounts.append("--mount=type=tmpfs,target=/tmp")  # uv's project lock file stays out of the layer
    # The CA mount is always there (an empty file when no proxy CA is set), so
    # the Dockerfile, and so the image, do not depend on this machine's network.
    ca = f"/run/raybake-ca/{CA_FILE}"
    mounts.append(f"--mount=type=bind,from={CA_CONTEXT},source={CA_FILE},target={ca}")
    # Index credentials are secrets, mounted as files for this step only.
    mounts += [f"--mount=type=secret,id={name},required=false" for name in secrets]
    script = [f"if [ -s {ca} ]; then export SSL_CERT_FILE={ca}; fi"]
    script += [f'if [ -e /run/secrets/{n} ]; then export {n}="$(cat /run/secrets/{n})"; fi' for n in secrets]
    # PYTHONDONTWRITEBYTECODE: raybake's own Python runs must not leave stdlib .pyc files.
    script.append(f"start=$(PYTHONDONTWRITEBYTECODE=1 {VENV_PYTHON} -c 'import time; print(time.time())')")
    # The image's UV_COMPILE_BYTECODE=1 would make uv recompile everything.
    # UV_CACHE_DIR: the cache mount, whatever HOME the base sets (rayproject/ray: /home/ray),
    # so no cache lands in the layer.
    # UV_NO_BUILD: where secrets are, no build backend runs (it would read them)
    # unless the spec says build_with_secrets.
    no_build = "UV_NO_BUILD=1 " if secrets and not plan.spec.build_with_secrets else ""
    script.append(f"cd {PROJECT_DIR} && UV_COMPILE_BYTECODE=0 UV_CACHE_DIR={UV_CACHE} {no_build}{command}")
    script.append(f'SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH PYTHONDONTWRITEBYTECODE=1 {VENV_PYTHON} '
                  f'{PROJECT_DIR}/{SEAL_SCRIPT} "$start"')
    return "RUN " + " \\\n    ".join(mounts) + " \\\n    " + " \\\n && ".join(script)


def _dep_layer(plan: BuildPlan, layer: PinnedLayer | SyncLayer) -> str:
    if isinstance(layer, PinnedLayer):
        # Its index alone: a package locked from an index is installed from nowhere else.
        index = f"--default-index {shlex.quote(layer.default_index)} " if layer.default_index else ""
        return (f"# pinned layer {layer.name}: {', '.join(layer.packages)}\n"
                + _uv_step(plan, (layer.requirements,),
                           f"uv pip install --python {VENV_PYTHON} --no-deps --require-hashes {index}"
                           f"-r {PROJECT_DIR}/{layer.requirements}", layer.secrets))
    return _uv_step(plan, plan.bind_files, "uv sync " + " ".join(shlex.quote(a) for a in layer.uv_args),
                    plan.index_secrets)


@cache
def base_dockerfile() -> str:
    return files("raybake").joinpath("templates/Dockerfile.base").read_text(encoding="utf-8")


@cache
def template_digest() -> str:
    """Everything of raybake's own that decides an image besides the inputs: the
    layer-split rules, the seal script, and what render() (Dockerfile.base
    included) makes of a fixed sample plan that takes every branch. A change to
    any of them changes every tag; no version number to remember to bump."""
    h = hashlib.sha256(f"{layer_rules()}\n".encode())
    h.update(contract.in_image_source(contract.SEAL_SCRIPT).encode())
    h.update(render(_sample_plan()).encode())
    return h.hexdigest()


def _sample_plan() -> BuildPlan:
    spec = ImageSpec(name="sample", source="raybake", repository="sample", base_image="base:1", python="3.12",
                     apt_packages=("pkg",), env=(("A", "$b c"),), index_secrets=("SECRET",),
                     python_apt=("python3.12",))
    identity = ImageIdentity(spec, InputHash("0" * 64), "sample:sample-" + "0" * 16, "sha256:" + "0" * 64)
    return BuildPlan(identity=identity, python="3.12.0", user="nobody", workdir="/home/nobody", requirements="",
                     apt_packages=spec.apt_packages, env=spec.env,
                     dep_layers=(PinnedLayer("heavy-x", ("x",), "layers/heavy-x.txt"),
                                 PinnedLayer("medium-corp", ("y",), "layers/medium-corp.txt",
                                             "corp=https://corp.example/simple", ("UV_INDEX_CORP_PASSWORD",)),
                                 SyncLayer(("--frozen",))),
                     context_files=(ContextFile("uv.lock", "uv.lock"),), bind_files=("uv.lock",),
                     index_secrets=spec.index_secrets,
                     build_args=(("BASE_IMAGE", identity.base_reference), ("PYTHON_VERSION", "3.12"),
                                 ("PYTHON_APT_PACKAGES", "python3.12")),
                     labels=((contract.LABEL_SPEC, "sample"),), runtime_apt_packages=("rtpkg",))

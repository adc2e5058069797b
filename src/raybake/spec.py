"""Image specs: ``images/<name>.yaml`` files, or ``[tool.raybake]`` alone.

``[tool.raybake]`` in pyproject.toml holds project-wide defaults; each
``images/<name>.yaml`` is one image variant on top of them. With no
``images/*.yaml`` there is one spec, ``default``. The environment variables
RAYBAKE_REPOSITORY, RAYBAKE_BASE_IMAGE, RAYBAKE_NETWORK (and RAYBAKE_CA_BUNDLE)
override every spec.
"""

from __future__ import annotations

import platform as _platform
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raybake.errors import SpecError
from raybake.project import Project

IMAGES_DIR = "images"
DEFAULT_SPEC = "default"
ENV_OVERRIDES = {
    "RAYBAKE_REPOSITORY": "repository",
    "RAYBAKE_BASE_IMAGE": "base_image",
    "RAYBAKE_NETWORK": "network",
    "RAYBAKE_CA_BUNDLE": "ca_bundle",
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
# A Docker repository: optional host[:port]/, then lowercase path components.
_REPOSITORY = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)


@dataclass(frozen=True)
class FieldDoc:
    type: type  # str, bool, int, list (of str) or dict (str -> str)
    help: str


# What a user may write in a spec; every field is optional. Validated by hand
# rather than with pydantic: its import alone costs more than raybake's whole
# 0.5 s budget for an up-to-date `raybake build`.
FIELDS: dict[str, FieldDoc] = {
    "repository": FieldDoc(str, "image repository; default: the project name"),
    "base_image": FieldDoc(str, "image with an OS and a Python; default: python:<python>-slim-bookworm"),
    "python": FieldDoc(str, 'Python version in the base image, e.g. "3.11"'),
    "groups": FieldDoc(list, "uv dependency groups to install"),
    "extras": FieldDoc(list, "project extras to install"),
    "dev": FieldDoc(bool, "install the dev group too"),
    "apt_packages": FieldDoc(list, "extra Debian packages"),
    "env": FieldDoc(dict, "environment variables set in the image"),
    "platform": FieldDoc(str, "e.g. linux/amd64; default: this machine's"),
    "network": FieldDoc(str, "build network: default, host or none"),
    "ca_bundle": FieldDoc(str, "CA bundle for HTTPS through a proxy (bound in for uv only; never in a layer or the tag)"),
    "index_secrets": FieldDoc(list, "names of environment variables (e.g. UV_INDEX_PRIVATE_PASSWORD) passed to uv as secrets"),
    "import_skip": FieldDoc(list, "top-level modules `raybake verify` does not import"),
    "heavy_packages": FieldDoc(list, "packages that get a dependency layer each, lowest (default: wheels of 10 MiB or more in the lock)"),
    # Project-wide ([tool.raybake]): what `raybake stage` ships as working_dir.
    # Not image inputs, so never hashed.
    "stage_include": FieldDoc(list, "gitignore-style patterns staged even when excluded (secrets only by exact name)"),
    "stage_exclude": FieldDoc(list, "gitignore-style patterns left out of the staged working_dir"),
    "stage_max_mb": FieldDoc(int, "size cap of the staged working_dir in MiB (default 100)"),
}
PROJECT_FIELDS = ("stage_include", "stage_exclude", "stage_max_mb")  # [tool.raybake] only
_TYPE_NAMES = {str: "a string", bool: "true or false", int: "a whole number", list: "a list of strings",
               dict: "a mapping of names to strings"}


@dataclass(frozen=True)
class ImageSpec:
    """A resolved spec: every default filled in, sets sorted."""

    name: str
    source: str  # where it was defined, for messages
    repository: str
    base_image: str
    python: str
    groups: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    dev: bool = False
    apt_packages: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    platform: str = "linux/amd64"
    network: str = "default"
    ca_bundle: Path | None = None
    index_secrets: tuple[str, ...] = ()
    import_skip: tuple[str, ...] = ()
    heavy_packages: tuple[str, ...] = ()


def host_platform() -> str:
    machine = _platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"linux/{arch}"


def load_specs(project: Project, environ: Mapping[str, str]) -> tuple[ImageSpec, ...]:
    """All specs of a project, sorted by name."""
    shared = _validate(project.tool_config, "pyproject.toml [tool.raybake]", None)
    files = sorted((project.root / IMAGES_DIR).glob("*.yaml")) + sorted(
        (project.root / IMAGES_DIR).glob("*.yml"))
    if not files:
        return (_resolve(DEFAULT_SPEC, "pyproject.toml", shared, {}, project, environ),)
    specs = []
    for path in files:
        if not _NAME.match(path.stem):
            raise SpecError(f"{path}: '{path.stem}' is not a valid spec name",
                            fix="rename the file to lowercase letters, digits, '.', '_' or '-'")
        specs.append(_resolve(path.stem, f"{IMAGES_DIR}/{path.name}", shared,
                              _load_yaml(path), project, environ))
    return tuple(specs)


def select(specs: tuple[ImageSpec, ...], names: tuple[str, ...] | list[str]) -> tuple[ImageSpec, ...]:
    """The specs named, or the default/only one when none are named."""
    by_name = {s.name: s for s in specs}
    if not names:
        if len(specs) == 1:
            return specs
        if DEFAULT_SPEC in by_name:
            return (by_name[DEFAULT_SPEC],)
        raise SpecError(f"this project has several image specs: {', '.join(by_name)}",
                        fix="name one (e.g. `raybake build cpu`) or use --all")
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SpecError(f"no image spec named {', '.join(unknown)}; this project has: {', '.join(by_name)}",
                        fix=f"add {IMAGES_DIR}/{unknown[0]}.yaml or name an existing spec")
    return tuple(by_name[n] for n in names)


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml  # only projects with images/*.yaml pay for it

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{where}: invalid YAML: {problem}",
                        fix="correct the YAML syntax at that line") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec must be a mapping of fields, not {type(data).__name__}",
                        fix="write `field: value` lines, e.g. `base_image: python:3.11-slim`")
    fields = _validate(data, str(path), node)
    for key in PROJECT_FIELDS:
        if key in fields:
            raise SpecError(f"{_at(str(path), node, (key,))}: '{key}' is project-wide, not part of an image spec",
                            fix="move it to [tool.raybake] in pyproject.toml")
    return fields


def _validate(data: Mapping[str, Any], where: str, node: Any) -> dict[str, Any]:
    """Check field names and types; return the fields that were set."""
    for key, value in data.items():
        doc = FIELDS.get(key)
        if doc is None:
            raise SpecError(f"{_at(where, node, (key,))}: unknown field '{key}'",
                            fix=f"remove it or use one of: {', '.join(FIELDS)}")
        bad = _type_error(doc.type, value)
        if bad is not None:
            loc, got = bad
            fix = ('quote it as a string, e.g. python: "3.11" (unquoted, 3.10 would read as 3.1)'
                   if key == "python" else f"'{key}' takes {_TYPE_NAMES[doc.type]}: {doc.help}")
            path = ".".join(str(p) for p in (key, *loc))
            raise SpecError(f"{_at(where, node, (key, *loc))}: field '{path}' must be "
                            f"{_TYPE_NAMES[doc.type if not loc else str]}, got {got!r}", fix=fix)
    return dict(data)


def _type_error(expected: type, value: Any) -> tuple[tuple[Any, ...], Any] | None:
    """(location inside the value, offending value) when ``value`` is not of the type."""
    if expected is list:
        if not isinstance(value, list):
            return (), value
        for i, item in enumerate(value):
            if not isinstance(item, str):
                return (i,), item
        return None
    if expected is dict:
        if not isinstance(value, dict):
            return (), value
        for k, v in value.items():
            if not isinstance(v, str):
                return (k,), v
        return None
    return None if type(value) is expected else ((), value)


def _at(where: str, node: Any, loc: tuple[Any, ...]) -> str:
    line = _line_of(node, loc)
    return f"{where}:{line}" if line else where


def _line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc``, for error messages."""
    if node is None:
        return None
    import yaml

    line = None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(key):
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _default_python(project: Project) -> str | None:
    if project.python_version_file:
        m = re.match(r"^(?:cpython-)?(\d+\.\d+)", project.python_version_file)
        if m:
            return m.group(1)
    requires = project.pyproject.get("project", {}).get("requires-python", "")
    m = re.search(r">=\s*(\d+\.\d+)", requires)
    return m.group(1) if m else None


def _resolve(name: str, source: str, shared: dict[str, Any], own: dict[str, Any],
             project: Project, environ: Mapping[str, str]) -> ImageSpec:
    fields = {**shared, **own}
    for var, key in ENV_OVERRIDES.items():
        if environ.get(var):
            fields[key] = environ[var]
    python = fields.get("python") or _default_python(project)
    if not python or not re.match(r"^\d+\.\d+$", python):
        raise SpecError(f"{source}: cannot tell which Python the image needs (got {python!r})",
                        fix='set `python: "3.11"` in the spec or requires-python = ">=3.11" in pyproject.toml')
    repository = fields.get("repository") or project.name
    if not _REPOSITORY.match(repository):
        raise SpecError(f"{source}: repository {repository!r} is not a valid image repository",
                        fix="use lowercase letters, digits, '.', '_', '-' and '/', "
                            "optionally after a registry host, e.g. 127.0.0.1:5000/my-app")
    network = fields.get("network") or "default"
    if network not in ("default", "host", "none"):
        raise SpecError(f"{source}: network must be default, host or none (got {network!r})",
                        fix="set network: host when the Docker daemon has no bridge network")
    ca = fields.get("ca_bundle") or environ.get("SSL_CERT_FILE")
    ca_path = (project.root / ca) if ca else None
    if fields.get("ca_bundle") and not ca_path.is_file():
        raise SpecError(f"{source}: ca_bundle {ca_path} does not exist",
                        fix="point ca_bundle (or RAYBAKE_CA_BUNDLE) at a PEM file")
    if ca_path is not None and not ca_path.is_file():
        ca_path = None  # SSL_CERT_FILE naming a missing file is the host's business
    for key in ("env", "index_secrets"):
        bad = [k for k in fields.get(key, ()) if not _ENV_NAME.match(k)]
        if bad:
            raise SpecError(f"{source}: {key}: {bad[0]!r} is not a valid environment variable name",
                            fix="use letters, digits and '_' only, not starting with a digit")
    return ImageSpec(
        name=name,
        source=source,
        repository=repository,
        base_image=fields.get("base_image") or f"python:{python}-slim-bookworm",
        python=python,
        groups=tuple(sorted(set(fields.get("groups", ())))),
        extras=tuple(sorted(set(fields.get("extras", ())))),
        dev=fields.get("dev", False),
        apt_packages=tuple(sorted(set(fields.get("apt_packages", ())))),
        env=tuple(sorted(fields.get("env", {}).items())),
        platform=fields.get("platform") or host_platform(),
        network=network,
        ca_bundle=ca_path,
        index_secrets=tuple(sorted(set(fields.get("index_secrets", ())))),
        import_skip=tuple(sorted(set(fields.get("import_skip", ())))),
        heavy_packages=tuple(sorted(set(fields.get("heavy_packages", ())))),
    )

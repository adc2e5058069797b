"""Image specs: ``images/<name>.yaml`` files, or ``[tool.raybake]`` alone.

``[tool.raybake]`` in pyproject.toml holds project-wide defaults; each
``images/<name>.yaml`` is one image variant on top of them. With no
``images/*.yaml`` there is one spec, ``default``. The environment variables
RAYBAKE_REPOSITORY, RAYBAKE_BASE_IMAGE, RAYBAKE_NETWORK (and RAYBAKE_CA_BUNDLE)
override every spec; the same name followed by ``_SPEC`` (RAYBAKE_BASE_IMAGE_PY313)
overrides one spec's, before the one for every spec.
"""

from __future__ import annotations

import platform as _platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

from raybake.contract import DEFAULT_UV_VERSION
from raybake.errors import InvalidReference, SpecError
from raybake.project import Project
from raybake.reference import Reference

IMAGES_DIR = "images"
DEFAULT_SPEC = "default"
_UV_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
ENV_OVERRIDES = {
    "RAYBAKE_REPOSITORY": "repository",
    "RAYBAKE_BASE_IMAGE": "base_image",
    "RAYBAKE_NETWORK": "network",
    "RAYBAKE_CA_BUNDLE": "ca_bundle",
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The variables uv and git read for authentication: index_secrets may name no
# other (a CI token under any other name would reach the build for nothing).
_AUTH_VARIABLE = re.compile(r"^(?:UV_INDEX_[A-Z0-9_]+_(?:USERNAME|PASSWORD)|UV_INDEX_URL|UV_EXTRA_INDEX_URL"
                            r"|UV_DEFAULT_INDEX|UV_INDEX|GIT_CONFIG_COUNT|GIT_CONFIG_(?:KEY|VALUE)_[0-9]+)$")
_DEB_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]*(?:=[A-Za-z0-9.+~:-]+)?$")  # name[=version]
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # a tab is fine in an env value
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
# Docker's limits: a tag of 128 characters (NAME-HASH16, or rejected-NAME-ID12
# for `build --keep-failed`), a repository of 255.
MAX_SPEC_NAME = 100
AUDIT_SEVERITIES = ("low", "medium", "high", "critical")  # CVSS's ratings, lowest first
COMPRESSION_LEVELS = {"gzip": 9, "zstd": 22}  # the highest compression-level BuildKit takes for each
MAX_REPOSITORY = 255


@dataclass(frozen=True)
class FieldDoc:
    # "hashed": decides the image, part of the tag (raybake.hashing); "neutral":
    # where or how it is built or checked, never hashed; "project": project-wide
    # ([tool.raybake] only), not an image field. tests/test_hashing.py checks each.
    role: Literal["hashed", "neutral", "project"]
    type: type  # str, bool, int, list (of str) or dict (str -> str)
    help: str


# What a user may write in a spec; every field is optional. Validated by hand
# rather than with pydantic: its import alone costs more than raybake's whole
# 0.5 s budget for an up-to-date `raybake build`.
FIELDS: dict[str, FieldDoc] = {
    "base": FieldDoc("hashed", str, "a base-image preset to extend: python-slim, ray, anyscale or cuda (raybake's images/)"),
    "python_apt": FieldDoc("hashed", list, "Debian/Ubuntu packages that bring Python into a base without one, "
                                           "installed before the venv is made (e.g. [python3.12, python3.12-venv])"),
    "repository": FieldDoc("neutral", str, "image repository; default: the project name"),
    "base_image": FieldDoc("hashed", str, "image with an OS and a Python; default: python:<python>-slim-bookworm"),
    "python": FieldDoc("hashed", str, 'Python version to use from the base image, e.g. "3.11"; default: .python-version, '
                             "else the base image's own python3 when it satisfies requires-python"),
    "package": FieldDoc("hashed", str, "workspace member whose dependencies to install (uv's --package); "
                             "default: the root's, or every member's when the root has none"),
    "all_packages": FieldDoc("hashed", bool, "install every workspace member's dependencies (uv's --all-packages)"),
    "groups": FieldDoc("hashed", list, "uv dependency groups to install"),
    "extras": FieldDoc("hashed", list, "project extras to install"),
    "dev": FieldDoc("hashed", bool, "install the dev group too"),
    "apt_packages": FieldDoc("hashed", list, "extra Debian packages, installed below the dependencies "
                                             "(what building an sdist needs)"),
    "runtime_apt_packages": FieldDoc("hashed", list, "Debian packages needed only at run time (e.g. ffmpeg), "
                                                     "installed above the dependencies: a change rebuilds that layer alone"),
    "env": FieldDoc("hashed", dict, "environment variables set in the image"),
    "platform": FieldDoc("hashed", str, "e.g. linux/amd64; default: this machine's"),
    "network": FieldDoc("neutral", str, "build network: default, host or none"),
    "ca_bundle": FieldDoc("neutral", str, "CA bundle for HTTPS through a proxy (bound in for uv only; never in a layer or the tag)"),
    "index_secrets": FieldDoc("neutral", list, "names of environment variables passed to uv as secrets: only those uv and "
                                               "git read for authentication (UV_INDEX_<NAME>_USERNAME/_PASSWORD, "
                                               "UV_INDEX_URL, UV_EXTRA_INDEX_URL, UV_DEFAULT_INDEX, UV_INDEX, "
                                               "GIT_CONFIG_COUNT/_KEY_<n>/_VALUE_<n>)"),
    "build_with_secrets": FieldDoc("neutral", bool, "let source distributions (git sources, sdists) be built in a step "
                                                    "that holds index_secrets: their build backends can read them"),
    "import_skip": FieldDoc("neutral", list, "top-level modules `raybake verify` does not import"),
    "audit_severity": FieldDoc("neutral", str, "the lowest severity of a known vulnerability in the selection that "
                                               "stops `raybake build --audit`: low, medium, high or critical "
                                               "(default: any finding)"),
    "compression": FieldDoc("hashed", str, "layer compression: gzip (default) or zstd (nodes unpack it several times faster; "
                                           "every node's runtime must pull zstd: containerd 1.5+, Docker 23+)"),
    "compression_level": FieldDoc("hashed", int, "level of the layer compression (gzip 0-9, default 6; zstd 0-22, "
                                                 "default 3); lower is faster to build, larger to pull"),
    "cache_from": FieldDoc("neutral", list, "BuildKit caches to build from (buildx --cache-from: a registry reference, "
                                            "type=registry,ref=..., type=inline, ...); default: REPOSITORY:buildcache-SPEC "
                                            "when the repository names a registry; [] for none"),
    "cache_to": FieldDoc("neutral", list, "BuildKit caches to export to (buildx --cache-to; a registry gets mode=max); "
                                          "default with --push: REPOSITORY:buildcache-SPEC; [] for none"),
    "uv_version": FieldDoc("hashed", str, f"the uv release put into the image, from its PyPI wheel (sha256-checked), "
                                          f"e.g. \"0.13.9\"; default: raybake's own, {DEFAULT_UV_VERSION}"),
    "heavy_packages": FieldDoc("hashed", list, "packages that get a dependency layer each, lowest (default: wheels of 10 MiB or more in the lock)"),
    # Options of the Anyscale job config (job-config --format anyscale; its flags override them).
    "registry_login_secret": FieldDoc("neutral", str, "Anyscale: the cloud secret (e.g. an AWS Secrets Manager ARN) "
                                                      "holding the login of a private registry the image is in"),
    "compute_config": FieldDoc("neutral", str, "Anyscale: the compute config (NAME or NAME:VERSION) the job runs on"),
    "cloud": FieldDoc("neutral", str, "Anyscale: the cloud the job runs in"),
    "max_retries": FieldDoc("neutral", int, "Anyscale: how many times a failed job is retried"),
    # Project-wide ([tool.raybake]): what `raybake stage` ships as working_dir.
    # Not image inputs, so never hashed.
    "stage_include": FieldDoc("project", list, "gitignore-style patterns staged even when excluded (secrets only by exact name)"),
    "stage_exclude": FieldDoc("project", list, "gitignore-style patterns left out of the staged working_dir"),
    "stage_max_mb": FieldDoc("project", int, "size cap of the staged working_dir in MiB (default 100)"),
    "upload": FieldDoc("project", str, "where `raybake job-config` uploads the working_dir zip, content-addressed: "
                                       "s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or file:///SHARED/DIR"),
    "verification_key": FieldDoc("project", str, "the PEM public key (ECDSA P-256, as cosign's) whose signed "
                                                 "verification statement a registry image needs to count as "
                                                 "raybake's; a file relative to the project"),
}
ANYSCALE_FIELDS = ("registry_login_secret", "compute_config", "cloud", "max_retries")
PROJECT_FIELDS = tuple(k for k, f in FIELDS.items() if f.role == "project")  # [tool.raybake] only
_TYPE_NAMES = {str: "a string", bool: "true or false", int: "a whole number", list: "a list of strings",
               dict: "a mapping of names to strings"}


@dataclass(frozen=True)
class AnyscaleOptions:
    """What every Anyscale job with its own image may need; None: Anyscale's default."""

    registry_login_secret: str | None = None
    compute_config: str | None = None
    cloud: str | None = None
    max_retries: int | None = None

    def merged(self, **flags: str | int | None) -> AnyscaleOptions:
        """These options with the flags given (not None) taking precedence."""
        return replace(self, **{k: v for k, v in flags.items() if v is not None})


@dataclass(frozen=True)
class ImageSpec:
    """A resolved spec: every default filled in, sets sorted."""

    name: str
    source: str  # where it was defined, for messages
    repository: str
    base_image: str
    python: str | None  # X.Y or X.Y.Z asked for; None: the base image's own interpreter
    groups: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    dev: bool = False
    apt_packages: tuple[str, ...] = ()
    runtime_apt_packages: tuple[str, ...] = ()  # installed above the dependency layers
    env: tuple[tuple[str, str], ...] = ()
    platform: str = "linux/amd64"
    network: str = "default"
    ca_bundle: Path | None = None
    index_secrets: tuple[str, ...] = ()
    build_with_secrets: bool = False  # source distributions may be built where index_secrets are
    import_skip: tuple[str, ...] = ()
    audit_severity: str | None = None  # None: every finding stops `build --audit`
    heavy_packages: tuple[str, ...] = ()
    package: str | None = None  # uv --package
    compression: str = "gzip"  # of the layers: gzip or zstd
    compression_level: int | None = None  # None: BuildKit's default for the compression
    cache_from: tuple[str, ...] | None = None  # None: raybake.buildcache's default
    cache_to: tuple[str, ...] | None = None
    python_apt: tuple[str, ...] = ()  # apt packages that bring Python into a base without one
    all_packages: bool = False  # uv --all-packages
    uv_version: str = DEFAULT_UV_VERSION  # the uv put into the image
    python_source: str = ""  # where `python` was asked for: the spec's file or .python-version; for messages
    anyscale: AnyscaleOptions = field(default_factory=AnyscaleOptions)  # the Anyscale job's options



@dataclass(frozen=True)
class StageConfig:
    """What `raybake stage` ships as working_dir: [tool.raybake]'s project-wide fields."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_mb: int = 100
    upload: str | None = None  # URI prefix job configs upload working_dir to


def stage_config(project: Project) -> StageConfig:
    """[tool.raybake]'s staging fields, validated like every other field."""
    config = _validate(project.tool_config, "pyproject.toml [tool.raybake]", None)
    max_mb = config.get("stage_max_mb", StageConfig.max_mb)
    if max_mb <= 0:
        raise SpecError(f"pyproject.toml [tool.raybake]: stage_max_mb must be positive, got {max_mb}",
                        fix="set stage_max_mb to the largest working_dir you accept, in MiB (default 100)")
    return StageConfig(tuple(config.get("stage_include", ())), tuple(config.get("stage_exclude", ())), max_mb,
                       config.get("upload"))


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
        if len(path.stem) > MAX_SPEC_NAME:
            raise SpecError(f"{path}: the spec name is {len(path.stem)} characters long; the image tag "
                            f"NAME-HASH allows at most {MAX_SPEC_NAME}", fix="rename the file to a shorter name")
        if path.suffix == ".yml" and path.with_suffix(".yaml").exists():
            raise SpecError(f"{path.with_suffix('.yaml')} and {path.name} both define the spec '{path.stem}'",
                            fix="merge them into one file and delete the other")
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
        first = next(iter(by_name))
        raise SpecError(f"this project has several image specs: {', '.join(by_name)}",
                        fix=f"name one after the command (e.g. `raybake build {first}`, `raybake audit {first}`), "
                            "or build or tag them all with --all")
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
        raise SpecError(f"cannot read {path}: {exc.strerror or exc}",
                        fix="make the spec file readable, or remove it") from exc
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: byte {exc.start} is not UTF-8 text",
                        fix="save the spec as UTF-8") from exc
    try:
        _refuse_aliases(yaml, text, path)
        data = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{where}: invalid YAML: {excerpt(problem, quote=False)}",
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


def _refuse_aliases(yaml: Any, text: str, path: Path) -> None:
    """Anchors and aliases are refused before anything is built from the YAML:
    nested aliases expand exponentially (a 495-byte "billion laughs" spec
    exhausted memory), and a spec has no use for them."""
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            kind = "alias" if isinstance(event, yaml.AliasEvent) else "anchor"
            raise SpecError(f"{path}:{event.start_mark.line + 1}: YAML {kind} "
                            f"{'*' if kind == 'alias' else '&'}{excerpt(event.anchor, quote=False)}: "
                            "anchors and aliases are not allowed in a spec",
                            fix="write the value out in full wherever it is used")


def excerpt(value: Any, limit: int = 80, *, quote: bool = True) -> str:
    """``repr(value)`` (or ``str`` without ``quote``) cut to about ``limit``
    characters: an error names a bad value without echoing all of it."""
    import reprlib

    if quote:
        short = reprlib.Repr()
        short.maxstring = short.maxother = limit
        short.maxlist = short.maxdict = short.maxtuple = short.maxset = 8
        short.maxlevel = 3
        text = short.repr(value)
    else:
        text = str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _validate(data: Mapping[str, Any], where: str, node: Any) -> dict[str, Any]:
    """Check field names and types; return the fields that were set."""
    for key, value in data.items():
        doc = FIELDS.get(key)
        if doc is None:
            raise SpecError(f"{_at(where, node, (key,))}: unknown field {excerpt(key)}",
                            fix=f"remove it or use one of: {', '.join(FIELDS)}")
        bad = _type_error(doc.type, value)
        if bad is not None:
            loc, got = bad
            fix = ('quote it as a string, e.g. python: "3.11" (unquoted, 3.10 would read as 3.1)'
                   if key == "python" else f"'{key}' takes {_TYPE_NAMES[doc.type]}: {doc.help}")
            path = excerpt(".".join(str(p) for p in (key, *loc)), quote=False)
            raise SpecError(f"{_at(where, node, (key, *loc))}: field '{path}' must be "
                            f"{_TYPE_NAMES[doc.type if not loc else str]}, got {excerpt(got)}", fix=fix)
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


def python_request(project: Project, asked: str | None, source: str) -> str | None:
    """The Python version a spec asks for: its `python` field, else .python-version.
    None leaves the choice to the base image (see raybake.planner)."""
    where = source
    if not asked and project.python_version_file:
        asked, where = project.python_version_file, ".python-version"
    if not asked:
        return None
    m = re.match(r"^(?:cpython-|python)?(\d+\.\d+(?:\.\d+)?)$", asked.strip())
    if not m:
        raise SpecError(f"{where}: cannot read a Python version from {asked[:40]!r}",
                        fix='write a version like "3.11" or "3.11.9"')
    version = m.group(1)
    requires = project.requires_python
    if requires:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            spec = SpecifierSet(requires)
        except InvalidSpecifier:
            spec = None
        # X.Y alone: does some X.Y.* satisfy requires-python?
        candidates = [version] if version.count(".") == 2 else [f"{version}.{p}" for p in range(0, 40)]
        if spec is not None and not any(spec.contains(c, prereleases=True) for c in candidates):
            raise SpecError(f"{where}: Python {version} does not satisfy requires-python {requires}",
                            fix=f"change {where} (or `python:` in the spec) to a version within {requires}")
    return version


def _default_base_python(project: Project, request: str | None) -> str:
    """The X.Y in the default base image's name, python:X.Y-slim-bookworm."""
    if request:
        return ".".join(request.split(".")[:2])
    m = re.search(r">=\s*(\d+\.\d+)", project.requires_python or "")
    return m.group(1) if m else "3.12"


def _check_selection(project: Project, fields: Mapping[str, Any], source: str) -> None:
    """Groups and extras a spec selects must exist in the root's or a member's pyproject.toml."""
    from packaging.utils import canonicalize_name

    tables = [project.pyproject, *(m.pyproject for m in project.members)]
    known = {
        "groups": {canonicalize_name(g) for t in tables for g in t.get("dependency-groups", {})},
        "extras": {canonicalize_name(e) for t in tables
                   for e in t.get("project", {}).get("optional-dependencies", {})},
    }
    where = {"groups": "[dependency-groups]", "extras": "[project.optional-dependencies]"}
    for key in ("groups", "extras"):
        unknown = [v for v in fields.get(key, ()) if canonicalize_name(v) not in known[key]]
        if unknown:
            have = ", ".join(sorted(known[key])) or "none"
            raise SpecError(f"{source}: {key} {', '.join(map(excerpt, unknown))} not defined in {where[key]} "
                            f"of pyproject.toml or any workspace member's (defined: {have})",
                            fix=f"correct the name in `{key}`, or add it to {where[key]} and run `uv lock`")


def presets() -> dict[str, Path]:
    """raybake's base-image presets (package data: src/raybake/presets/)."""
    from importlib.resources import files

    folder = Path(str(files("raybake").joinpath("presets")))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def _preset(name: str, source: str) -> dict[str, Any]:
    known = presets()
    if name not in known:
        raise SpecError(f"{source}: base {excerpt(name)} is not one of raybake's presets",
                        fix=f"set base to one of: {', '.join(known)}, or remove it and set base_image")
    fields = _load_yaml(known[name])
    if "base" in fields:
        raise SpecError(f"{known[name]}: a preset cannot extend another", fix="remove `base` from the preset")
    return fields


def _fill_base_image(template: str, python: str | None, project: Project, source: str) -> str:
    """Presets' placeholders: {python}, {python_nodot}, {ray}."""
    if "{" not in template:
        return template
    minor = _default_base_python(project, python)
    values = {"python": minor, "python_nodot": minor.replace(".", ""), "ray": ""}
    if "{ray}" in template:
        from raybake.lockfile import parse_lock

        ray = parse_lock(project.lock_bytes).package("ray")
        if ray is None or not ray.version:
            raise SpecError(f"{source}: base_image {excerpt(template)} names the lock's Ray, but uv.lock has no ray",
                            fix="add Ray to the project (`uv add 'ray[default]'`) or set base_image")
        values["ray"] = ray.version
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        raise SpecError(f"{source}: base_image {excerpt(template)} has an unknown placeholder",
                        fix="use only {python}, {python_nodot} and {ray}") from None


def spec_variable_suffix(name: str) -> str:
    """The spec's part of a per-spec override's name: py3.13-gpu -> PY3_13_GPU."""
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def _resolve(name: str, source: str, shared: dict[str, Any], own: dict[str, Any],
             project: Project, environ: Mapping[str, str]) -> ImageSpec:
    fields = {**shared, **own}
    if fields.get("base"):
        fields = {**_preset(fields["base"], source), **fields}
    for var, key in ENV_OVERRIDES.items():
        # A matrix of specs needs one base per Python: RAYBAKE_BASE_IMAGE_PY313 for spec py313.
        value = environ.get(f"{var}_{spec_variable_suffix(name)}") or environ.get(var)
        if value:
            fields[key] = value
    python = python_request(project, fields.get("python"), source)
    python_source = source if fields.get("python") or python is None else ".python-version"
    repository = fields.get("repository") or project.name
    if len(repository) > MAX_REPOSITORY:
        raise SpecError(f"{source}: repository {excerpt(repository)} is {len(repository)} characters long; "
                        f"Docker allows at most {MAX_REPOSITORY}",
                        fix="shorten `repository` (or RAYBAKE_REPOSITORY)")
    try:
        parsed = Reference.parse(repository)
    except InvalidReference:
        parsed = None
    if parsed is None or parsed.repository != repository:  # a tag or digest is raybake's to add
        raise SpecError(f"{source}: repository {excerpt(repository)} is not a valid image repository",
                        fix="use lowercase letters, digits, '.', '_', '-' and '/', no :TAG, "
                            "optionally after a registry host, e.g. 127.0.0.1:5000/my-app")
    _check_selection(project, fields, source)
    if fields.get("max_retries", 0) < 0:
        raise SpecError(f"{source}: max_retries must be 0 or more, got {fields['max_retries']}",
                        fix="set max_retries to how many times Anyscale retries a failed job (0: never)")
    network = fields.get("network") or "default"
    if network not in ("default", "host", "none"):
        raise SpecError(f"{source}: network must be default, host or none (got {excerpt(network)})",
                        fix="set network: host when the Docker daemon has no bridge network")
    ca_path = _ca_bundle(fields.get("ca_bundle"), source, project, environ)
    not_auth = [k for k in fields.get("index_secrets", ()) if _ENV_NAME.match(k) and not _AUTH_VARIABLE.match(k)]
    if not_auth:
        raise SpecError(f"{source}: index_secrets: {excerpt(not_auth[0])} is not a variable uv or git reads for "
                        "authentication; index_secrets reach only the build's uv step, and only those variables",
                        fix="name the index's credentials UV_INDEX_<NAME>_USERNAME and UV_INDEX_<NAME>_PASSWORD "
                            "(NAME: the [[tool.uv.index]] name in capitals), or pass a git host's token in "
                            "GIT_CONFIG_COUNT/GIT_CONFIG_KEY_0/GIT_CONFIG_VALUE_0; set those on the host from "
                            "the variable you have")
    audit_severity = fields.get("audit_severity")
    if audit_severity is not None and audit_severity not in AUDIT_SEVERITIES:
        raise SpecError(f"{source}: audit_severity must be one of {', '.join(AUDIT_SEVERITIES)} "
                        f"(got {excerpt(audit_severity)})",
                        fix="set audit_severity to the lowest severity that must stop `raybake build --audit`, "
                            "or remove it (then any finding does)")
    compression = fields.get("compression") or "gzip"
    if compression not in COMPRESSION_LEVELS:
        raise SpecError(f"{source}: compression must be gzip or zstd (got {excerpt(compression)})",
                        fix="set compression: zstd for faster pulls on nodes that support it, else leave it out")
    compression_level = fields.get("compression_level")
    top_level = COMPRESSION_LEVELS[compression]
    if compression_level is not None and not 0 <= compression_level <= top_level:
        raise SpecError(f"{source}: compression_level {compression_level} is out of {compression}'s range 0-{top_level}",
                        fix=f"set compression_level between 0 and {top_level} (lower is faster), or remove it")
    uv_version = fields.get("uv_version") or DEFAULT_UV_VERSION
    if not _UV_VERSION.match(uv_version):
        raise SpecError(f"{source}: uv_version must be a uv release like {DEFAULT_UV_VERSION} "
                        f"(got {excerpt(uv_version)})",
                        fix="set uv_version to a release on https://pypi.org/project/uv/, or remove it")
    bad_apt = [p for p in (*fields.get("python_apt", ()), *fields.get("apt_packages", ()),
                           *fields.get("runtime_apt_packages", ()))
               if not _DEB_PACKAGE.match(p)]
    if bad_apt:
        raise SpecError(f"{source}: {excerpt(bad_apt[0])} is not a Debian package name",
                        fix="use package names only (lowercase letters, digits, '+', '-', '.'), e.g. python3.12-venv")
    for key in ("env", "index_secrets"):
        bad = [k for k in fields.get(key, ()) if not _ENV_NAME.match(k)]
        if bad:
            raise SpecError(f"{source}: {key}: {excerpt(bad[0])} is not a valid environment variable name",
                            fix="use letters, digits and '_' only, not starting with a digit")
    for key, value in fields.get("env", {}).items():
        # The value reaches the image byte for byte (see dockerfile.py), except
        # a line break: a Dockerfile ENV instruction cannot hold one.
        control = _CONTROL.search(value)
        if control:
            what = "line break" if control.group() in "\r\n" else "control character"
            raise SpecError(f"{source}: env: the value of {key} holds a {what} "
                            f"(U+{ord(control.group()):04X}): {excerpt(value)}",
                            fix="write the value on one line (a Dockerfile ENV cannot carry line breaks); "
                                "let the program read several values from one line, e.g. separated by ','")
    return ImageSpec(
        name=name,
        source=source,
        repository=repository,
        base_image=_fill_base_image(fields.get("base_image") or "python:{python}-slim-bookworm", python, project,
                                    source),
        python_apt=tuple(fields.get("python_apt", ())),
        python=python,
        python_source=python_source,
        groups=tuple(sorted(set(fields.get("groups", ())))),
        extras=tuple(sorted(set(fields.get("extras", ())))),
        dev=fields.get("dev", False),
        apt_packages=tuple(sorted(set(fields.get("apt_packages", ())))),
        runtime_apt_packages=tuple(sorted(set(fields.get("runtime_apt_packages", ())))),
        env=tuple(sorted(fields.get("env", {}).items())),
        platform=fields.get("platform") or host_platform(),
        network=network,
        ca_bundle=ca_path,
        index_secrets=tuple(sorted(set(fields.get("index_secrets", ())))),
        build_with_secrets=fields.get("build_with_secrets", False),
        import_skip=tuple(sorted(set(fields.get("import_skip", ())))),
        audit_severity=audit_severity,
        heavy_packages=tuple(sorted(set(fields.get("heavy_packages", ())))),
        package=_package(project, fields.get("package"), source),
        all_packages=fields.get("all_packages", False),
        compression=compression,
        compression_level=compression_level,
        cache_from=tuple(fields["cache_from"]) if "cache_from" in fields else None,
        cache_to=tuple(fields["cache_to"]) if "cache_to" in fields else None,
        uv_version=uv_version,
        anyscale=AnyscaleOptions(**{k: fields[k] for k in ANYSCALE_FIELDS if k in fields}),
    )


def _ca_bundle(explicit: str | None, source: str, project: Project,
               environ: Mapping[str, str]) -> Path | None:
    """The proxy CA bundle for the build: ``ca_bundle`` (RAYBAKE_CA_BUNDLE), else $SSL_CERT_FILE.

    The build binds it in for uv, where a package's build backend can read it,
    so it must hold PEM certificates and nothing else (raybake.certs). A
    ca_bundle that does not is an error. $SSL_CERT_FILE is the host's own
    setting, used for convenience: when it is missing or holds anything else
    (comments, a key) the build gets no CA, with a note for the latter."""
    from raybake import certs

    value = explicit or environ.get("SSL_CERT_FILE")
    if not value:
        return None
    path = project.root / value
    setting = "RAYBAKE_CA_BUNDLE" if environ.get("RAYBAKE_CA_BUNDLE") else "ca_bundle"
    try:
        certs.read_bundle(path)
    except FileNotFoundError:
        if explicit:
            raise SpecError(f"{source}: {setting} {excerpt(str(path), 200, quote=False)} does not exist",
                            fix=f"point {setting} at a file of PEM certificates (the proxy's CA)") from None
        return None
    except (OSError, certs.NotABundle) as exc:
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if explicit:
            raise SpecError(f"{source}: {setting} {excerpt(str(path), 200, quote=False)} is not a bundle of "
                            f"PEM certificates: {problem}; it is refused before the build, which could "
                            "copy it into the image",
                            fix=f"point {setting} at a file holding only -----BEGIN CERTIFICATE----- blocks "
                                "(e.g. `openssl x509 -in PROXY-CA -out proxy-ca.pem`): no comments, keys "
                                "or other text") from None
        _note_ignored_ssl_cert_file(str(path), problem)
        return None
    return path


@cache
def _note_ignored_ssl_cert_file(path: str, problem: str) -> None:
    import logging

    logging.getLogger("raybake.spec").warning(
        "$SSL_CERT_FILE (%s) is not passed to the build as its CA bundle: it is not a bundle of PEM "
        "certificates (%s). If the build needs a proxy CA, set ca_bundle (or RAYBAKE_CA_BUNDLE) to a "
        "file of PEM certificates only.", path, problem)


def _package(project: Project, name: str | None, source: str) -> str | None:
    if not name:
        return None
    known = {m.name for m in project.members} | ({project.name} if not project.virtual else set())
    from packaging.utils import canonicalize_name

    if canonicalize_name(name) not in known:
        raise SpecError(f"{source}: package {name!r} is not a member of this workspace",
                        fix=f"set package to one of: {', '.join(sorted(known)) or '(no members)'}")
    return str(canonicalize_name(name))

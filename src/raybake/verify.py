"""Verifying a built image's environment against the lock, inside a container.

One container run of raybake.probe (no network, isolated interpreter) reports
the environment; the comparison with the lock and the classification of
import failures happen here, on the host, in pure functions."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name

from raybake import contract
from raybake.errors import VerificationFailed
from raybake.files import atomic_write
from raybake.paths import cache_dir, scratch_dir
from raybake.plan import BuildPlan, ImageIdentity
from raybake.project import Project
from raybake.spec import ImageSpec

if TYPE_CHECKING:
    from raybake.tools.docker import LocalImage

IMPORT_TIMEOUT = 60
_MARK = "@@RAYBAKE@@"
_SHARED_LIBRARY = re.compile(r"([\w.+-]+\.so[\w.]*): cannot open shared object file")
# GitPython: "Failed to initialize: Bad git executable."
_PROGRAM = re.compile(r"\bBad (\w[\w.+-]*) executable|\b(\w[\w.+-]*) executable (?:not found|is missing)", re.I)
# Import failures caused by where the probe runs, not by the image: (pattern over
# "Type: message", why). The probe has no display (pynput through Xlib), no GPU
# (the driver's libraries come from the host at run time: libcuda.so.1, libnvidia-*),
# and one interpreter per module, in which a plugin that its framework already
# registered on import registers again (tensorflow_io_gcs_filesystem after tensorflow).
_ENVIRONMENT = (
    (re.compile(r"Bad display name|Display(?:Name|Connection)Error|X connection|\$DISPLAY|DISPLAY environment"
                r"|cannot connect to X server|could not connect to display|no display name"),
     "the probe has no X display; a job that uses it needs one"),
    (re.compile(r"\blib(?:cuda|nvidia-[\w-]+|nvcuvid)\.so[\w.]*: cannot open shared object file"
                r"|no CUDA-capable device|No CUDA GPUs are available|Found no NVIDIA driver|NVIDIA driver"
                r"|CUDA driver version is insufficient"),
     "the probe has no GPU; the NVIDIA runtime mounts the driver on GPU nodes"),
    (re.compile(r"already registered|registered more than once|AlreadyExists"),
     "it registers what its framework already registered in the same interpreter; it works as the framework loads it"),
)


@dataclass(frozen=True)
class Finding:
    check: str  # one of CHECKS
    message: str  # what it found wrong


class Report:
    """What `raybake verify` prints (of a dataclass with ``findings``): it passes without any."""

    findings: tuple[Any, ...]

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ok": self.ok}, indent=2, sort_keys=True)  # type: ignore[call-overload]


@dataclass(frozen=True)
class VerifyReport(Report):
    image: str
    findings: tuple[Finding, ...]
    checks: tuple[str, ...]
    facts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    notes: tuple[str, ...] = ()  # seen, explained, not failures
    installed: dict[str, str] = field(default_factory=dict)  # distribution -> version found in the image (SBOM)

    def render(self) -> str:
        lines = [f"{self.image}: {'OK' if self.ok else 'FAILED'} "
                 f"({len(self.checks)} checks, {self.seconds:.1f} s)"]
        failed = {f.check for f in self.findings}
        for check in self.checks:
            lines.append(f"  {'FAIL' if check in failed else 'ok  '}  {check}")
            lines += [f"        {f.message}" for f in self.findings if f.check == check]
        lines += [f"  note  {n}" for n in self.notes]
        return "\n".join(lines)


def locked_selection(requirements: str, markers: dict[str, str] | None) -> dict[str, str | None]:
    """{name: version} of the exported lock selection that applies to ``markers``
    (every line, when ``markers`` is None). Hash options are ignored.

    A URL or path requirement has version None: only its presence is checked;
    uv writes a path source's wheel or sdist as a bare path, whose file name
    gives both."""
    from packaging.requirements import Requirement
    from packaging.utils import parse_sdist_filename, parse_wheel_filename

    selected: dict[str, str | None] = {}
    for raw in requirements.replace("\\\n", " ").splitlines():
        line = raw.split(" --hash", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        if line.startswith((".", "/")):
            path, _, marker = line.partition(";")
            file = path.strip().rsplit("/", 1)[-1]
            name, version = parse_wheel_filename(file)[:2] if file.endswith(".whl") else parse_sdist_filename(file)
            line = f"{name}=={version}" + (f" ; {marker}" if marker else "")
        req = Requirement(line)
        if markers is not None and req.marker is not None and not req.marker.evaluate(markers):
            continue
        pins = [s.version for s in req.specifier if s.operator == "=="]
        selected[canonicalize_name(req.name)] = pins[0] if pins else None
    return selected


CHECKS = ("lock", "uv pip check", "project absent", "python", "pip", "ray", "imports", "files", "environment")


def compare(project: Project, spec: ImageSpec, requirements: str, probe: dict[str, Any]
            ) -> tuple[list[Finding], list[str]]:
    """(findings, notes) of one image against its lock selection. Pure."""
    findings: list[Finding] = []
    notes: list[str] = []
    installed: dict[str, str] = probe["distributions"]
    expected = locked_selection(requirements, probe["markers"])

    for name in sorted(expected.keys() - installed.keys()):
        findings.append(Finding("lock", f"{name}=={expected[name]} is in the lock but not installed"))
    own = {project.name, *(p.name for p in project.local_packages)}
    for name in sorted(installed.keys() - expected.keys() - contract.SEED_PACKAGES - own):
        findings.append(Finding("lock", f"{name}=={installed[name]} is installed but not in the lock"))
    for name in sorted(expected.keys() & installed.keys()):
        if expected[name] is not None and expected[name] != installed[name]:
            findings.append(Finding("lock", f"{name} is {installed[name]}, the lock has {expected[name]}"))

    if probe["pip_check"]["code"] != 0:
        findings.append(Finding("uv pip check", probe["pip_check"]["output"].strip()))

    for name in sorted(own & installed.keys()):
        findings.append(Finding(
            "project absent",
            f"{name} {installed[name]} is installed in the image; it must come only through working_dir "
            "(Ray would fail with '.dist-info ... Directory not empty')"))

    findings += _python_findings(project, spec, probe["python"])

    if not probe["pip_importable"]:
        findings.append(Finding("pip", "pip is not importable; Ray bootstraps per-task environments with it"))

    imports: dict[str, dict[str, Any]] = probe["imports"]
    if "ray" in expected:
        ray = imports.get("ray")
        if ray is None or not ray["ok"]:
            findings.append(Finding("ray", "import ray failed" + (f": {ray['type']}: {ray['message']}" if ray else "")))
        elif expected["ray"] and ray.get("version") != expected["ray"]:
            findings.append(Finding("ray", f"ray.__version__ is {ray.get('version')}, the lock has {expected['ray']}"))

    provided = {m.split(".")[0] for ms in probe["modules"].values() for m in ms}
    for module, result in sorted(imports.items()):
        if result["ok"]:
            continue
        finding, note = classify_import_failure(module, result, provided)
        if finding:
            findings.append(Finding("imports", finding))
        if note:
            notes.append(note)
    for dist, modules in sorted(probe.get("unshipped_modules", {}).items()):
        notes.append(f"{dist} lists {', '.join(modules)} as top-level module(s) but ships no file for them: "
                     "not imported")

    findings += _file_findings(probe, expected.keys() | contract.SEED_PACKAGES)

    for key, want in contract.REQUIRED_ENV.items():
        got = probe["env"].get(key)
        if got != want:
            findings.append(Finding("environment", f"{key} is {got!r}, expected {want!r}"))
    return findings, notes


# Variables that make an interpreter (or any program) load code from elsewhere
# at start-up: in the image config only when the spec's env sets them.
CODE_LOADING_ENV = ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONEXECUTABLE",
                    "PYTHONINSPECT", "PYTHONBREAKPOINT", "PYTHONPLATLIBDIR", "LD_PRELOAD", "LD_AUDIT",
                    "BASH_ENV", "ENV")


def config_env_findings(spec: ImageSpec, config_env: tuple[str, ...]) -> list[Finding]:
    """Code-loading variables in the image config (``KEY=VALUE`` entries) that the spec does not set."""
    asked = dict(spec.env)
    findings = []
    for entry in config_env:
        key, _, value = entry.partition("=")
        if key in CODE_LOADING_ENV and asked.get(key) != value:
            findings.append(Finding("environment", f"the image config sets {key}={value[:200]}, which the spec's env "
                                                   "does not: it loads code into every process at start-up"))
    return findings


def classify_import_failure(module: str, result: dict[str, Any], provided: set[str]) -> tuple[str | None, str | None]:
    """(finding, note) for one failed import.

    A module missing from the whole environment that is not the one imported
    is an optional dependency the lock does not hold: a note (a required one
    would be missing from the lock check or `uv pip check`); so are failures the
    probe's environment causes (_ENVIRONMENT) and a module that imports once its
    own package is imported first. A missing shared library is a failure that
    names the library."""
    kind, message, missing = result["type"], result["message"], result.get("missing")
    if kind == "ModuleNotFoundError" and missing:
        top = missing.split(".")[0]
        if top != module.split(".")[0] and top not in provided:
            return None, f"import {module} needs {top}, which the lock does not hold (an optional dependency)"
    program = _PROGRAM.search(message) if kind == "ImportError" else None
    if program:
        # The package is installed intact; it wants a program at import time (GitPython
        # through wandb). Whether the job needs it, only the user knows.
        name = program.group(1) or program.group(2)
        return None, (f"import {module} needs the program `{name}`, which the image lacks: add the Debian "
                      f"package that provides it to apt_packages if the job uses {module}")
    if result.get("after"):
        return None, (f"import {module} fails alone ({kind}: {message}) but works once {', '.join(result['after'])} "
                      "is imported, as its own package does")
    cause = next((why for pattern, why in _ENVIRONMENT if pattern.search(f"{kind}: {message}")), None)
    if cause:
        return None, f"import {module}: {kind}: {message}: {cause}"
    library = _SHARED_LIBRARY.search(message)
    if library:
        return (f"import {module}: the shared library {library.group(1)} is missing from the image; "
                "add the Debian package that provides it to apt_packages in the spec "
                f"(find it with `apt-file search {library.group(1)}`)"), None
    return f"import {module}: {kind}: {message}", None


def _python_findings(project: Project, spec: ImageSpec, python: str) -> list[Finding]:
    findings = []
    if spec.python and ".".join(python.split(".")[:2]) != ".".join(spec.python.split(".")[:2]):
        findings.append(Finding("python", f"the image has Python {python}, the spec asks for {spec.python}"))
    requires = project.requires_python
    if requires:
        from packaging.specifiers import SpecifierSet

        if not SpecifierSet(requires).contains(python, prereleases=True):
            findings.append(Finding("python", f"Python {python} does not satisfy requires-python {requires}"))
    return findings


def _file_findings(probe: dict[str, Any], allowed: set[str]) -> list[Finding]:
    """Installed files against their RECORD; bytecode against its source; .pth
    files that no locked dist installed; pyvenv.cfg."""
    findings = [Finding("files", f"{p['file']} of {p['dist']} {p['problem']}")
                for p in probe.get("record_problems", [])]
    findings += [Finding("files", f"{f} is in site-packages but no installed distribution's RECORD lists it")
                 for f in probe.get("unrecorded_files", [])]
    findings += [Finding("files", f"{b['file']} {b['problem']}") for b in probe.get("bytecode_problems", [])]
    if probe.get("pyvenv_cfg", {}).get("include-system-site-packages", "false").lower() != "false":
        findings.append(Finding("files", f"{contract.VENV}/pyvenv.cfg sets include-system-site-packages: the "
                                         "system site-packages, and every .pth file there, reach the environment"))
    for pth in probe.get("pth", []):
        owner = pth["owner"]
        if owner is None or owner not in allowed:
            what = "runs code at every interpreter start" if pth["executes"] else "changes sys.path"
            findings.append(Finding("files", f"{pth['file']} {what} and was not installed by a locked "
                                             f"distribution ({owner or 'no RECORD lists it'})"))
    return findings


KNOWN_BYTECODE_MOUNT = "/run/raybake-known-bytecode"


class KnownBytecode:
    """sha256 digests of bytecode files that a verification on this machine
    found to be exactly what their source compiles to, in raybake's cache:
    the probe compiles only those it has not seen (compiling every module's
    source again takes tens of seconds for an environment with Ray)."""

    def __init__(self) -> None:
        self.path = cache_dir() / "bytecode-verified.txt"

    def text(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError:
            return b""

    def add(self, digests: Iterable[str]) -> None:
        new = {d for d in digests if re.fullmatch(r"[0-9a-f]{64}", d)}
        if new:
            try:
                atomic_write(self.path, "\n".join(sorted(set(self.text().decode().split()) | new)).encode() + b"\n")
            except OSError:
                pass  # a cache: the next verification compiles them again


def verify_image(image: str, project: Project, spec: ImageSpec, requirements: str) -> VerifyReport:
    """Verify ``image`` against ``requirements``: `uv export` of the spec's selection."""
    from raybake.tools import docker

    start = time.monotonic()
    # Markers are evaluated later, against the image: this is a superset.
    locked = sorted(locked_selection(requirements, None))
    args = {"venv": contract.VENV, "locked": locked, "skip": list(spec.import_skip), "timeout": IMPORT_TIMEOUT,
            "jobs": max(2, min(8, (os.cpu_count() or 2) * 2)), "env": sorted(contract.REQUIRED_ENV)}
    source = contract.in_image_source(contract.PROBE_SCRIPT)
    local = docker.local_image(image)
    config_env = local.env if local is not None else ()
    known = KnownBytecode()
    with scratch_dir("verify-") as tmp:
        (tmp / "known").write_bytes(known.text())
        args["known_bytecode"] = KNOWN_BYTECODE_MOUNT
        # The dynamic loader's variables are emptied for the probe: they would load code into it.
        code, out, err = docker.run_container(
            image, [contract.VENV_PYTHON, "-I", "-S", "-c", source, json.dumps(args)],
            mounts=((tmp / "known", KNOWN_BYTECODE_MOUNT),), env={"LD_PRELOAD": "", "LD_AUDIT": ""})
    if _MARK not in out:
        raise VerificationFailed(
            f"could not inspect the environment of {image}: {contract.VENV_PYTHON} failed (exit {code}):\n"
            f"{(err or out).strip()[-2000:]}",
            fix=f"the image must be built by raybake (Dockerfile.base puts the environment in {contract.VENV})")
    probe = json.loads(out.rsplit(_MARK, 1)[1])
    known.add(probe.get("bytecode_verified", ()))
    findings, notes = compare(project, spec, requirements, probe)
    findings += config_env_findings(spec, config_env)
    facts = {"python": probe["python"], "distributions": len(probe["distributions"]),
             "modules_imported": probe["imported"], "probe_seconds": probe["seconds"]}
    checks = tuple(c for c in CHECKS if c != "ray" or "ray" in locked)
    return VerifyReport(image, tuple(findings), checks, facts, time.monotonic() - start, tuple(notes),
                        dict(probe["distributions"]))


def record_fresh_verification(reference: str, before: LocalImage | None, identity: ImageIdentity) -> None:
    """After ``raybake verify REFERENCE`` passed: when the image is this plan's
    (its input-hash label) and the tag still names the image that was checked
    (``before``), record it as verified here, so a pulled image counts locally."""
    from raybake.tools import docker
    from raybake.trust import VerificationRecords

    want = identity.input_hash.hexdigest
    after = docker.local_image(reference)
    if before is not None and after is not None and after.image_id == before.image_id \
            and after.input_hash == want:
        VerificationRecords().add(after.image_id, want, identity.spec.name)


def verify_or_raise(project: Project, plan: BuildPlan, image_id: str) -> VerifyReport:
    """The build's gate: a failing image is never tagged."""
    report = verify_image(image_id, project, plan.spec, plan.requirements)
    if not report.ok:
        raise VerificationFailed(
            f"the built image's environment does not match the lock; it was not tagged:\n{report.render()}",
            fix="fix what the findings name (the lock, the spec's groups/extras, apt_packages for missing "
                "shared libraries, import_skip for modules that cannot import without hardware), then build again")
    return report

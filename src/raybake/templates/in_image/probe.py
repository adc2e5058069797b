"""Runs INSIDE an image, as `python -I -S -c`, to report its environment as JSON.

Isolated and without `site`: no .pth file, sitecustomize or PYTHON* variable
of the image runs before the environment is read; site-packages is read as
files. Imports then run the way Ray workers run them (with site), each
top-level module in a fresh interpreter of its own, several at a time: one
module's import cannot break another's (tensorflow and
tensorflow_io_gcs_filesystem register the same filesystem), nor pip's
distutils shim setuptools.

Standard library only, no network. raybake.verify compares the report with
the lock on the host. Argument: JSON {"venv": dir, "locked": [distribution
names whose modules are imported], "skip": [modules], "timeout": seconds per
import, "jobs": parallel imports, "env": [names], "known_bytecode": a file of
sha256 digests of bytecode files verified before, or null}."""

import base64
import glob
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata

MARK = "@@RAYBAKE@@"
# The child that imports one module (the last argument), after the others; prints
# what went wrong in a form the host can classify.
CHILD = r"""
import importlib, json, sys
name = sys.argv[-1]
try:
    for first in sys.argv[1:-1]:
        importlib.import_module(first)
    module = importlib.import_module(name)
    result = {"ok": True, "version": str(getattr(module, "__version__", "") or "")}
except BaseException as exc:
    lines = str(exc).splitlines() or [""]
    # The first line, and the line naming a shared library that did not load when a
    # later one does (torchcodec's first line ends at "Likely causes:").
    named = [line.strip()[:400] for line in lines[1:] if "cannot open shared object file" in line][:1]
    result = {"ok": False, "type": type(exc).__name__, "message": " ".join([lines[0][:400], *named]),
              "missing": getattr(exc, "name", None) if isinstance(exc, ImportError) else None}
sys.stdout.flush()
sys.stdout.write("\n@@RAYBAKE-IMPORT@@" + json.dumps(result) + "\n")
"""
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false"}


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def marker_environment():
    # Same keys as packaging.markers.default_environment().
    impl = sys.implementation
    iv = "{0.major}.{0.minor}.{0.micro}".format(impl.version)
    if impl.version.releaselevel != "final":
        iv += impl.version.releaselevel[0] + str(impl.version.serial)
    return {
        "implementation_name": impl.name,
        "implementation_version": iv,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }


def site_packages(venv):
    want = os.path.join(venv, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
    return want if os.path.isdir(want) else (glob.glob(os.path.join(venv, "lib", "python3*", "site-packages")) or [want])[0]


def record_files(dist):
    """[(path relative to site-packages, sha256 or None)] from the dist's RECORD."""
    text = dist.read_text("RECORD") or ""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        # RECORD is CSV; paths with commas are quoted, hashes and sizes never are.
        path, _, rest = line.rpartition(",")[0].rpartition(",")
        path = path.strip('"')
        digest = rest[len("sha256="):] if rest.startswith("sha256=") else None
        rows.append((os.path.normpath(path), digest))
    return rows


def candidate_modules(dist, files):
    text = dist.read_text("top_level.txt")
    if text:
        names = [n.strip() for n in text.split()]
    else:
        names = []
        for path, _ in files:
            parts = path.split(os.sep)
            if not parts or parts[0] in ("..", "__pycache__") or parts[0].endswith((".dist-info", ".data")):
                continue
            head = parts[0]
            if len(parts) == 1:
                if not head.endswith(".py"):
                    continue  # .pth files, shared objects at the top are not packages
                head = head[:-3]
            names.append(head)
    return sorted({n.replace("/", ".") for n in names
                   if n and n.isidentifier() and not n.startswith("_") and n != "tests"})


def shipped(name, files):
    """Whether some file of the dist provides the top-level module ``name``."""
    for path, _ in files:
        head = path.split(os.sep)[0]
        if head == name or head == name + ".py" or (head.startswith(name + ".") and head.endswith((".so", ".pyd"))):
            return True
    return False


def sha256_b64(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()


# Files whose bytes run: checked against their RECORD hash (others only for presence).
CODE_SUFFIXES = (".py", ".pth", ".pyc", ".so", ".pyd")
# A dist-info's RECORD cannot hold its own hash (nor its signatures).
UNHASHED = ("RECORD", "RECORD.jws", "RECORD.p7s")


def is_code(path):
    return path.endswith(CODE_SUFFIXES) or ".so." in os.path.basename(path)


def bytecode_problem(pyc, known):
    """Why ``pyc`` (in a __pycache__, listed by no RECORD with a hash) is not
    the bytecode of its source, or None. Import runs a .pyc whose header
    matches its source without compiling the source: an unchecked-hash or
    timestamp .pyc, or any other code under a right header, would run
    unseen. raybake writes checked-hash bytecode (seal_layer.py); its code
    must equal the source's, compiled here."""
    import importlib.util
    import marshal

    try:
        source_path = importlib.util.source_from_cache(pyc)
    except ValueError:
        return "is bytecode of no interpreter's naming scheme"
    try:
        with open(pyc, "rb") as f:
            data = f.read()
        with open(source_path, "rb") as f:
            source = f.read()
    except OSError:
        return "has no source file beside it"
    flags = int.from_bytes(data[4:8], "little")
    if data[:4] != importlib.util.MAGIC_NUMBER or flags != 3:
        return "is not checked-hash bytecode of this interpreter (import would not compare it with its source)"
    if data[8:16] != importlib.util.source_hash(source):
        return "was not compiled from its source"
    if hashlib.sha256(data).hexdigest() in known:
        return None  # verified before: the compilation of a source with this header's hash
    tag = os.path.basename(pyc).split(".")[-2]
    optimize = int(tag[4:]) if tag.startswith("opt-") and tag[4:].isdigit() else 0
    try:
        code = compile(source, source_path, "exec", dont_inherit=True, optimize=optimize)
        same = marshal.loads(data[16:]) == code
    except (SyntaxError, ValueError, EOFError, TypeError):
        same = False
    return None if same else "holds other code than its source compiles to"


def check_bytecode(pycs, known):
    return [(pyc, bytecode_problem(pyc, known)) for pyc in pycs]


def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def audit_files(sp, records, jobs, known):
    """Every file under site-packages accounted for: listed in an installed
    dist's RECORD (with a matching hash when its bytes run), or bytecode in a
    __pycache__ compiled from a listed source (``known``: sha256 of bytecode
    files verified so before, which are not compiled again). Returns (RECORD
    problems, files no RECORD lists, bytecode problems, sha256 of the bytecode
    files verified now)."""
    problems = []
    hashed = {}
    for name, rows in records.items():
        for path, digest in rows:
            full = os.path.normpath(os.path.join(sp, path))
            if digest is None:
                if os.path.basename(path) not in UNHASHED and not path.endswith(".pyc") and is_code(path):
                    problems.append({"dist": name, "file": path, "problem": "has no hash in RECORD"})
                hashed.setdefault(full, None)
                continue
            hashed[full] = digest
            if not is_code(path):
                continue
            try:
                actual = sha256_b64(full)
            except OSError:
                problems.append({"dist": name, "file": path, "problem": "is in RECORD but missing"})
                continue
            if actual != digest:
                problems.append({"dist": name, "file": path, "problem": "differs from its RECORD hash"})
    unrecorded, pycs = [], []
    for root, dirs, filenames in os.walk(sp):
        for f in filenames:
            full = os.path.join(root, f)
            if hashed.get(full) is not None:
                continue
            if f.endswith(".pyc") and os.path.basename(root) == "__pycache__":
                pycs.append(full)
            elif full not in hashed:
                unrecorded.append(os.path.relpath(full, sp))
    bytecode, verified = [], []
    if pycs:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        chunks = [pycs[i:i + 64] for i in range(0, len(pycs), 64)]
        # fork: the workers need this script's functions, which only `python -c` defined.
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            for results in pool.map(check_bytecode, chunks, [known] * len(chunks)):
                for pyc, problem in results:
                    if problem:
                        bytecode.append({"file": os.path.relpath(pyc, sp), "problem": problem})
                    else:
                        verified.append(pyc)
    fresh = sorted({file_sha256(pyc) for pyc in verified} - known)
    return problems, sorted(unrecorded), sorted(bytecode, key=lambda b: b["file"]), fresh


def venv_config(venv):
    """pyvenv.cfg as {key: value}: include-system-site-packages = true puts the
    system site-packages (and its .pth files) on every worker's path."""
    config = {}
    try:
        with open(os.path.join(venv, "pyvenv.cfg"), encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition("=")
                if sep:
                    config[key.strip().lower()] = value.strip()
    except OSError:
        pass
    return config


def pth_files(sp, owners):
    found = []
    for path in sorted(glob.glob(os.path.join(sp, "*.pth"))):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            lines = []
        executes = any(line.startswith(("import ", "import\t")) for line in lines)
        rel = os.path.basename(path)
        found.append({"file": rel, "executes": executes, "owner": owners.get(rel)})
    return found


def run_child(args, timeout, env):
    try:
        proc = subprocess.run([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None, "", ""
    return proc.returncode, proc.stdout, proc.stderr


def import_one(name, timeout, env, first=()):
    code, out, err = run_child(["-c", CHILD, *first, name], timeout, env)
    if code is None:
        return {"ok": False, "type": "Timeout", "message": "import took longer than %d s" % timeout, "missing": None}
    if "@@RAYBAKE-IMPORT@@" not in out:
        tail = (err.strip().splitlines() or [""])[-1][:400]
        return {"ok": False, "type": "Crash", "missing": None,
                "message": "the interpreter died (exit %s) %s" % (code, tail)}
    return json.loads(out.rsplit("@@RAYBAKE-IMPORT@@", 1)[1])


def retry_after_package(results, modules, dependents, timeout, env, pool):
    """A module that fails alone is imported again after the modules that import
    it in real use: its distribution's other top-level modules and those of the
    distributions that require it (e.g. a plugin its framework loads first).
    Working then, its result records them ("after"). Only failures pay for this."""
    owner = {m: dist for dist, ms in modules.items() for m in ms}
    retries = {}
    for name, result in results.items():
        if result["ok"] or result["type"] == "Timeout" or name not in owner:
            continue
        dist = owner[name]
        candidates = [m for d in [dist, *sorted(dependents.get(dist, ()))] for m in modules.get(d, ())]
        first = [m for m in dict.fromkeys(candidates) if m != name and results.get(m, {}).get("ok")][:8]
        if first:
            retries[name] = first
    again = dict(zip(retries, pool.map(lambda n: import_one(n, timeout, env, retries[n]), retries)))
    for name, result in again.items():
        if result["ok"]:
            results[name]["after"] = retries[name]


def main():
    args = json.loads(sys.argv[1])
    start = time.monotonic()
    sp = site_packages(args["venv"])
    dists, records, modules, unshipped, dependents = {}, {}, {}, {}, {}
    for d in metadata.distributions(path=[sp]):
        name = canonical(d.metadata["Name"] or "")
        if not name:
            continue
        dists[name] = d.version
        for requirement in d.requires or ():
            required = re.match(r"[A-Za-z0-9._-]+", requirement)
            if required:
                dependents.setdefault(canonical(required.group()), set()).add(name)
        records[name] = record_files(d)
        names = candidate_modules(d, records[name])
        modules[name] = [n for n in names if shipped(n.split(".")[0], records[name])]
        unshipped[name] = [n for n in names if n not in modules[name]]
    owners = {path: name for name, rows in records.items() for path, _ in rows if os.sep not in path}
    known = set()
    if args.get("known_bytecode"):
        with open(args["known_bytecode"], encoding="ascii") as f:
            known = set(f.read().split())
    record_problems, unrecorded, bytecode, fresh = audit_files(sp, records, os.cpu_count() or 2, known)
    env = dict(os.environ, **QUIET)
    locked = set(args["locked"])
    to_import = sorted({m for n, ms in modules.items() if n in locked for m in ms} - set(args["skip"]))
    with ThreadPoolExecutor(max_workers=max(1, int(args.get("jobs", 4)))) as pool:
        pip_future = pool.submit(run_child, ["-c", "import pip"], args["timeout"], env)
        check_future = pool.submit(subprocess.run, ["uv", "pip", "check", "--no-cache", "--python", sys.executable],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        results = dict(zip(to_import, pool.map(lambda m: import_one(m, args["timeout"], env), to_import)))
        retry_after_package(results, modules, dependents, args["timeout"], env, pool)
        pip_code = pip_future.result()[0]
        check = check_future.result()
    report = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "markers": marker_environment(),
        "distributions": dists,
        "modules": modules,
        "unshipped_modules": {n: ms for n, ms in unshipped.items() if ms and n in locked},
        "pth": pth_files(sp, owners),
        "record_problems": record_problems,
        "unrecorded_files": unrecorded,
        "bytecode_problems": bytecode,
        "bytecode_verified": fresh,
        "pyvenv_cfg": venv_config(args["venv"]),
        "pip_importable": pip_code == 0,
        "pip_check": {"code": check.returncode, "output": check.stdout},
        "imports": results,
        "imported": len(to_import),
        "env": {k: os.environ.get(k) for k in args["env"]},
        "seconds": round(time.monotonic() - start, 3),
    }
    sys.stdout.write("\n" + MARK + json.dumps(report) + "\n")


if __name__ == "__main__":
    main()

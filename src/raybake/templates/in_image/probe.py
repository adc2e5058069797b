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
import, "jobs": parallel imports, "env": [names]}."""

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
# The child that imports one module; prints what went wrong in a form the host can classify.
CHILD = r"""
import importlib, json, sys
name = sys.argv[1]
try:
    module = importlib.import_module(name)
    result = {"ok": True, "version": str(getattr(module, "__version__", "") or "")}
except BaseException as exc:
    text = str(exc)
    result = {"ok": False, "type": type(exc).__name__, "message": (text.splitlines() or [""])[0][:400],
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


def audit_files(sp, records):
    """RECORD hashes of every recorded Python file and .pth file; Python files
    and .pth files in site-packages that no RECORD lists."""
    problems = []
    recorded = set()
    for name, rows in records.items():
        for path, digest in rows:
            full = os.path.normpath(os.path.join(sp, path))
            recorded.add(full)
            if not path.endswith((".py", ".pth")):
                continue
            if digest is None:
                if not path.endswith(".dist-info" + os.sep + "RECORD"):
                    problems.append({"dist": name, "file": path, "problem": "has no hash in RECORD"})
                continue
            try:
                actual = sha256_b64(full)
            except OSError:
                problems.append({"dist": name, "file": path, "problem": "is in RECORD but missing"})
                continue
            if actual != digest:
                problems.append({"dist": name, "file": path, "problem": "differs from its RECORD hash"})
    unrecorded = []
    for root, dirs, filenames in os.walk(sp):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for f in filenames:
            full = os.path.join(root, f)
            if f.endswith((".py", ".pth")) and full not in recorded:
                unrecorded.append(os.path.relpath(full, sp))
    return problems, sorted(unrecorded)


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


def import_one(name, timeout, env):
    code, out, err = run_child(["-c", CHILD, name], timeout, env)
    if code is None:
        return {"ok": False, "type": "Timeout", "message": "import took longer than %d s" % timeout, "missing": None}
    if "@@RAYBAKE-IMPORT@@" not in out:
        tail = (err.strip().splitlines() or [""])[-1][:400]
        return {"ok": False, "type": "Crash", "missing": None,
                "message": "the interpreter died (exit %s) %s" % (code, tail)}
    return json.loads(out.rsplit("@@RAYBAKE-IMPORT@@", 1)[1])


def main():
    args = json.loads(sys.argv[1])
    start = time.monotonic()
    sp = site_packages(args["venv"])
    dists, records, modules, unshipped = {}, {}, {}, {}
    for d in metadata.distributions(path=[sp]):
        name = canonical(d.metadata["Name"] or "")
        if not name:
            continue
        dists[name] = d.version
        records[name] = record_files(d)
        names = candidate_modules(d, records[name])
        modules[name] = [n for n in names if shipped(n.split(".")[0], records[name])]
        unshipped[name] = [n for n in names if n not in modules[name]]
    owners = {path: name for name, rows in records.items() for path, _ in rows if os.sep not in path}
    record_problems, unrecorded = audit_files(sp, records)
    env = dict(os.environ, **QUIET)
    locked = set(args["locked"])
    to_import = sorted({m for n, ms in modules.items() if n in locked for m in ms} - set(args["skip"]))
    with ThreadPoolExecutor(max_workers=max(1, int(args.get("jobs", 4)))) as pool:
        pip_future = pool.submit(run_child, ["-c", "import pip"], args["timeout"], env)
        check_future = pool.submit(subprocess.run, ["uv", "pip", "check", "--no-cache", "--python", sys.executable],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        results = dict(zip(to_import, pool.map(lambda m: import_one(m, args["timeout"], env), to_import)))
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

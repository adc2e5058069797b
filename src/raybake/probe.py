"""Runs INSIDE an image, as `python -c`, to report its environment as JSON.

Standard library only, no network. raybake.verify compares the report with
the lock on the host. Argument: JSON {"locked": [distribution names whose
modules are imported], "skip": [modules], "timeout": seconds, "env": [names],
"ray": bool}."""

import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from importlib import import_module, metadata


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


def top_level_modules(dist):
    text = dist.read_text("top_level.txt")
    if text:
        names = [n.strip() for n in text.split()]
    else:
        names = []
        for f in dist.files or ():
            parts = f.parts
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


class ImportTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise ImportTimeout()


def try_imports(modules, timeout):
    failures = {}
    signal.signal(signal.SIGALRM, _alarm)
    for name in modules:
        signal.alarm(timeout)
        try:
            import_module(name)
        except ImportTimeout:
            failures[name] = "import took longer than %d s" % timeout
        except BaseException as exc:  # noqa: BLE001 - any failure is a finding
            failures[name] = "%s: %s" % (type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        finally:
            signal.alarm(0)
    return failures


def main():
    args = json.loads(sys.argv[1])
    start = time.monotonic()
    dists = {}
    modules = {}
    for d in metadata.distributions():
        name = canonical(d.metadata["Name"] or "")
        if name:
            dists[name] = d.version
            modules[name] = top_level_modules(d)
    try:
        import pip  # noqa: F401
        pip_ok = True
    except ImportError:
        pip_ok = False
    check = subprocess.run(["uv", "pip", "check", "--python", sys.executable],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    locked = set(args["locked"])
    to_import = sorted({m for n, ms in modules.items() if n in locked for m in ms} - set(args["skip"]))
    failures = try_imports(to_import, args["timeout"])
    ray_version = None
    if args["ray"] and "ray" not in failures:
        try:
            ray_version = import_module("ray").__version__
        except BaseException as exc:  # noqa: BLE001
            failures["ray"] = "%s: %s" % (type(exc).__name__, exc)
    report = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "markers": marker_environment(),
        "distributions": dists,
        "modules": modules,
        "pip_importable": pip_ok,
        "pip_check": {"code": check.returncode, "output": check.stdout},
        "import_failures": failures,
        "imported": len(to_import),
        "ray_version": ray_version,
        "env": {k: os.environ.get(k) for k in args["env"]},
        "seconds": round(time.monotonic() - start, 3),
    }
    sys.stdout.write("\n@@RAYBAKE@@" + json.dumps(report) + "\n")


if __name__ == "__main__":
    main()

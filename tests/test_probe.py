"""The probe verification runs inside an image (templates/in_image/probe.py), run
here as verification runs it (`python -I -S -c SOURCE ARGS`) over a real venv:
it needs the standard library only, so no engine. What it reports of imports
(a limit per import, import_skip, an import that kills the interpreter) and of
the files RECORD lists."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_wheel

from raybake.contract import PROBE_SCRIPT, in_image_source
from raybake.tools.uv import uv_bin
from raybake.verify import classify_import_failure

KILL = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
LIMIT = 3  # seconds per import


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("probe")
    wheels = tmp / "wheels"
    wheels.mkdir()
    modules = {"killer": KILL, "sleeper": "import time\ntime.sleep(600)\n", "skipped": KILL,
               "hashless": "X = 1\n", "gone": "X = 1\n", "fine": "X = 1\n"}
    for name, code in modules.items():
        make_wheel(wheels, name, "1.0", {f"{name}.py": code})
    venv = tmp / "venv"
    subprocess.run([str(uv_bin()), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run([str(uv_bin()), "pip", "install", "-q", "--offline", "--no-index", "--python",
                    str(venv / "bin/python"), *map(str, wheels.glob("*.whl"))], check=True)
    (site,) = venv.glob("lib/python3*/site-packages")
    record = site / "hashless-1.0.dist-info/RECORD"
    record.write_text("".join(("hashless.py,,\n" if line.startswith("hashless.py,") else line + "\n")
                              for line in record.read_text().splitlines()))
    (site / "gone.py").unlink()
    args = {"venv": str(venv), "locked": sorted(modules), "skip": ["skipped"], "timeout": LIMIT, "jobs": 4,
            "env": [], "known_bytecode": None}
    proc = subprocess.run([str(venv / "bin/python"), "-I", "-S", "-c", in_image_source(PROBE_SCRIPT),
                           json.dumps(args)], capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{Path(uv_bin()).parent}:{os.environ['PATH']}"})
    assert "@@RAYBAKE@@" in proc.stdout, proc.stdout + proc.stderr
    return json.loads(proc.stdout.rsplit("@@RAYBAKE@@", 1)[1])


def test_an_import_that_kills_the_interpreter_is_a_failure_not_a_lost_probe(report):
    result = report["imports"]["killer"]
    assert (result["ok"], result["type"]) == (False, "Crash")
    assert result["message"].startswith("the interpreter died (exit -9)")
    finding, note = classify_import_failure("killer", result, set())
    assert finding.startswith("import killer: Crash: the interpreter died") and note is None
    assert report["imports"]["fine"]["ok"]  # the others still imported


def test_an_import_over_the_limit_is_stopped_and_a_failure(report):
    result = report["imports"]["sleeper"]
    assert (result["ok"], result["type"]) == (False, "Timeout")
    assert result["message"] == f"import took longer than {LIMIT} s"
    assert classify_import_failure("sleeper", result, set())[0] == f"import sleeper: Timeout: {result['message']}"


def test_import_skip_is_never_imported(report):
    assert "skipped" not in report["imports"] and report["imported"] == 5


def test_a_record_entry_without_a_hash_and_a_recorded_file_that_is_missing_are_found(report):
    problems = {(p["dist"], p["file"]): p["problem"] for p in report["record_problems"]}
    assert problems == {("hashless", "hashless.py"): "has no hash in RECORD",
                        ("gone", "gone.py"): "is in RECORD but missing"}

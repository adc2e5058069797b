"""Runs INSIDE an image, as root with `python -I -S -c`, to report what of
Anyscale's image requirements it has, as JSON. raybake.anyscale_image judges
the report on the host.

Standard library only, no network. What `ray` may do is tried as `ray`
(a child process with its uid, gid and groups): sudo without a password, and
reading and writing its home. Argument: JSON {"user": name, "dir": its required
home and working directory, "commands": [commands looked up on the image's PATH]}."""

import json
import os
import pwd
import shutil
import subprocess
import sys

MARK = "@@RAYBAKE@@"


def os_release():
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
        return {k: v.strip().strip("\"'") for k, v in pairs}
    return {}


def as_user(entry, argv):
    """Run ``argv`` as the user of pwd ``entry``, with its home and groups; (exit code, output)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": entry.pw_dir, "USER": entry.pw_name}
    try:
        proc = subprocess.run(argv, user=entry.pw_uid, group=entry.pw_gid,
                              extra_groups=os.getgrouplist(entry.pw_name, entry.pw_gid), env=env, cwd="/",
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return -1, str(exc)
    return proc.returncode, proc.stdout


def main():
    args = json.loads(sys.argv[-1])
    tools = {c: shutil.which(c) for c in args["commands"]}
    try:
        entry = pwd.getpwnam(args["user"])
    except KeyError:
        entry = None
    report = {"user": None, "sudo": None, "dir_access": None, "tools": tools, "os": os_release()}
    if entry is not None:
        report["user"] = {"uid": entry.pw_uid, "gid": entry.pw_gid, "home": entry.pw_dir, "shell": entry.pw_shell}
        if tools.get("sudo"):
            code, out = as_user(entry, [tools["sudo"], "-n", "true"])
            report["sudo"] = {"ok": code == 0, "output": out[-500:]}
        check = "import os, sys; print(os.access(sys.argv[1], os.R_OK | os.W_OK | os.X_OK))"
        code, out = as_user(entry, [sys.executable, "-I", "-S", "-c", check, args["dir"]])
        report["dir_access"] = {"exists": os.path.isdir(args["dir"]), "writable": code == 0 and out.strip() == "True"}
    sys.stdout.write("\n" + MARK + json.dumps(report) + "\n")


if __name__ == "__main__":
    main()

import json
import os
from pathlib import Path

import click

from raybake.commands.options import project_option, spec_override_options
from raybake.project import load_project
from raybake.py_executable import (
    DEFAULT_ENV_ROOT,
    DEFAULT_OUT,
    DEFAULT_TIMEOUT,
    ray_ignore_file,
    render_wrapper,
    write_wrapper,
)
from raybake.spec import load_specs, select
from raybake.tools.uv import lock_check

HELP = f"""Write a py_executable wrapper for clusters that cannot use a custom image.

Use it as Ray's runtime_env["py_executable"] with the project as working_dir:
the first worker on each node installs the locked environment with `uv sync`
(under a flock, in a temporary directory renamed into place when complete)
into $RAYBAKE_ENV_ROOT/<key>/venv (default root: {DEFAULT_ENV_ROOT},
created 0700); the other workers wait for it (up to $RAYBAKE_ENV_TIMEOUT
seconds, default {DEFAULT_TIMEOUT}), then every worker runs that environment's
python. A root, environment or marker that another user owns or may write is
refused. Nodes need uv ($RAYBAKE_UV, default: uv on PATH), flock (util-linux)
and coreutils (sha256sum, stat, mktemp). Write it again after every `uv lock`.

Prints the wrapper's path; the runtime_env to use goes to stderr."""


@click.command("py-executable", help=HELP)
@click.argument("name", required=False)
@click.option("--out", "-o", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where to write the wrapper "
                   f"[default: <project root>/{DEFAULT_OUT.as_posix()}].")
@spec_override_options
@project_option
def command(name: str | None, out: Path | None, project_dir: Path) -> None:
    project = load_project(project_dir)
    (spec,) = select(load_specs(project, os.environ), (name,) if name else ())
    lock_check(project)
    target = out if out is not None else project.root / DEFAULT_OUT
    path = write_wrapper(render_wrapper(project, spec), target)
    click.echo(str(path))
    try:
        shipped = "./" + path.resolve().relative_to(project.root).as_posix()
    except ValueError:
        shipped = None
    if shipped is None:
        click.echo(f"note: {path} is outside the project: it is not shipped with working_dir, "
                   "so it must exist at that path on every node", err=True)
        shipped = str(path)
    ignored = ray_ignore_file(project.root, path.resolve())
    if ignored is not None:
        click.echo(f"warning: {ignored} keeps {path.name} out of Ray's working_dir upload; "
                   "un-ignore it there (or pass --out elsewhere)", err=True)
    working_dir = os.path.relpath(project.root, Path.cwd())
    runtime_env = {"py_executable": shipped, "working_dir": working_dir}
    click.echo("use: runtime_env=" + json.dumps(runtime_env), err=True)

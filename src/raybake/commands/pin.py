from pathlib import Path

import click

from raybake.commands.options import project_option
from raybake.project import load_project


@click.command("pin")
@click.option("--check", is_flag=True, help="Change nothing; exit 1 when the pin is stale or missing.")
@click.option("--require-present", is_flag=True,
              help="Also exit 1 when a pinned image is neither in its registry nor in the local store "
                   "(asks the registry or the daemon).")
@click.option("--lock-only", is_flag=True,
              help="Only check that uv.lock is up to date with every pyproject.toml (offline).")
@project_option
def command(check: bool, require_present: bool, lock_only: bool, project_dir: Path) -> None:
    """Write raybake-pin.json: each image spec's reference for the current lock.

    Rewrites a stale pin and exits 1 (stage it and commit again), like a
    formatter in pre-commit; exits 0 when it was current. No daemon, no network
    (except --require-present)."""
    from raybake import pin
    from raybake.tools.uv import lock_check

    if lock_only and (check or require_present):
        raise click.UsageError("--lock-only cannot be combined with --check or --require-present")
    project = load_project(project_dir)
    if lock_only:
        lock_check(project)
        click.echo(f"{project.root / 'uv.lock'} is up to date", err=True)
        return
    status = pin.update_pin(project, check=check)
    if not status.current:
        raise pin.stale_error(status)
    if require_present:
        pin.require_present(status.images)
    click.echo(f"{status.path} is up to date ({len(status.images)} image"
               f"{'' if len(status.images) == 1 else 's'})", err=True)

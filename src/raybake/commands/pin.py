import json
from pathlib import Path

import click

from raybake.commands.options import project_option, spec_override_options
from raybake.project import load_project


@click.command("pin")
@click.option("--check", is_flag=True, help="Change nothing; exit 1 when the pin is stale or missing.")
@click.option("--require-present", is_flag=True,
              help="Also exit 1 when a pinned image is neither in its registry nor in the local store "
                   "(asks the registry or the daemon).")
@click.option("--lock-only", is_flag=True,
              help="Only check that uv.lock is up to date with every pyproject.toml (offline).")
@click.option("--update-bases", is_flag=True,
              help="Record each base image's digest on this machine (local image store, else its registry); "
                   "the tags then hash it. `docker pull` a base first to take a tag that moved upstream.")
@click.option("--exit-non-zero-on-change", is_flag=True,
              help="Exit 1 when the pin had to be written (the pre-commit hook: pre-commit does not "
                   "notice a newly created file).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the outcome as JSON on stdout: the pin's path, whether it was current, the "
                   "changed entries and every spec's reference (the exit code is as without it).")
@spec_override_options
@project_option
def command(check: bool, require_present: bool, lock_only: bool, update_bases: bool,
            exit_non_zero_on_change: bool, as_json: bool, project_dir: Path) -> None:
    """Write raybake-pin.json: each image spec's reference for the current lock,
    and the base images' digests recorded by --update-bases.

    Rewrites a stale or missing pin, says what changed and exits 0 (stage it
    with `git add raybake-pin.json`); in pre-commit the hook fails, like a
    formatter's, until the new pin is staged. --check changes nothing and exits
    1 for a stale pin. No daemon, no network (except --update-bases and
    --require-present)."""
    from raybake import pin
    from raybake.tools.uv import lock_check

    if lock_only and (check or require_present or exit_non_zero_on_change or update_bases or as_json):
        raise click.UsageError("--lock-only cannot be combined with --check, --require-present, "
                               "--update-bases, --exit-non-zero-on-change or --json")
    if check and exit_non_zero_on_change:
        raise click.UsageError("--check changes nothing: it already exits 1 for a stale pin")
    if check and update_bases:
        raise click.UsageError("--check changes nothing; run --update-bases without it")
    project = load_project(project_dir)
    if lock_only:
        lock_check(project)
        click.echo(f"{project.root / 'uv.lock'} is up to date", err=True)
        return
    status = pin.update_pin(project, check=check, update_bases=update_bases)
    if as_json:
        click.echo(json.dumps(status.as_json(), indent=2))
    if not status.current and (check or exit_non_zero_on_change):
        raise pin.stale_error(status)
    if status.rewritten:
        click.echo(pin.update_message(status), err=True)
    if require_present:
        from raybake.signing import verification_key

        pin.require_present(status.images, verification_key(project))
    if status.rewritten:
        return
    click.echo(f"{status.path} is up to date ({len(status.images)} image"
               f"{'' if len(status.images) == 1 else 's'})", err=True)

from pathlib import Path

import click

from raybake.commands.options import project_option
from raybake.planner import identities_for
from raybake.project import load_project


@click.command("tag")
@click.argument("names", nargs=-1)
@click.option("--all", "all_specs", is_flag=True, help="Print every spec's reference.")
@project_option
def command(names: tuple[str, ...], all_specs: bool, project_dir: Path) -> None:
    """Print REPOSITORY:TAG for the current lock (no daemon, no network)."""
    for plan in identities_for(load_project(project_dir), names, all_specs=all_specs):
        click.echo(plan.reference)

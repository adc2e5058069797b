import json
from pathlib import Path

import click

from raybake.commands.options import json_option, project_option, spec_override_options
from raybake.planner import identities_for
from raybake.project import load_project


@click.command("tag")
@click.argument("names", nargs=-1)
@click.option("--all", "all_specs", is_flag=True, help="Print every spec's reference.")
@json_option
@spec_override_options
@project_option
def command(names: tuple[str, ...], all_specs: bool, as_json: bool, project_dir: Path) -> None:
    """Print REPOSITORY:TAG for the current lock (no daemon, no network).

    --json: every chosen spec's reference, input hash, base image and base digest."""
    identities = identities_for(load_project(project_dir), names, all_specs=all_specs)
    if as_json:
        click.echo(json.dumps({"images": [i.as_json() for i in identities]}, indent=2))
        return
    for plan in identities:
        click.echo(plan.reference)

from pathlib import Path

import click

from raybake.commands.options import project_option, spec_override_options
from raybake.dockerfile import render
from raybake.planner import identities_for, make_plan
from raybake.project import load_project


@click.command("dockerfile")
@click.argument("name", required=False)
@spec_override_options
@project_option
def command(name: str | None, project_dir: Path) -> None:
    """Print the generated Dockerfile of an image spec."""
    project = load_project(project_dir)
    (identity,) = identities_for(project, (name,) if name else ())
    click.echo(render(make_plan(project, identity)), nl=False)

from pathlib import Path

import click

from raybake.build import plans_for
from raybake.commands.options import project_option
from raybake.dockerfile import render
from raybake.project import load_project


@click.command("dockerfile")
@click.argument("name", required=False)
@project_option
def command(name: str | None, project_dir: Path) -> None:
    """Print the generated Dockerfile of an image spec."""
    (plan,) = plans_for(load_project(project_dir), (name,) if name else ())
    click.echo(render(plan), nl=False)

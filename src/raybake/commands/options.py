"""Options shared by several commands."""

from pathlib import Path

import click

project_option = click.option(
    "--project", "-C", "project_dir", type=click.Path(path_type=Path, file_okay=False),
    default=Path("."), show_default=True, help="Directory of the uv project (or inside it).")

from pathlib import Path

import click

from raybake.commands.options import progress_mode, progress_options, project_option, spec_override_options
from raybake.console import console_reporter


@click.command("submit", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--address", envvar="RAY_ADDRESS", show_envvar=True,
              help="Ray dashboard address (none: a one-node Ray inside the image).")
@progress_options
@spec_override_options
@project_option
def command(args: tuple[str, ...], address: str | None, progress: str, quiet: bool, project_dir: Path) -> None:
    """Build if needed, stage the source, run a Ray job: raybake submit [NAME] -- CMD...

    With no --address and no RAY_ADDRESS, a one-node Ray cluster is started
    inside the built image on loopback and removed afterwards."""
    import os

    from raybake.project import load_project
    from raybake.spec import load_specs
    from raybake.submission import submit

    # NAME is optional: the first argument is a spec name only if one is called so.
    names: tuple[str, ...] = ()
    spec_names = {s.name for s in load_specs(load_project(project_dir), os.environ)}
    if len(args) > 1 and args[0] in spec_names:
        names, args = (args[0],), args[1:]
    with console_reporter(progress_mode(progress, quiet)) as reporter:
        submit(project_dir, names, list(args), address=address, reporter=reporter)

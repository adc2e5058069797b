from pathlib import Path

import click

from raybake.build import build
from raybake.commands.options import project_option
from raybake.console import ConsoleReporter, human_size
from raybake.verify import verify_or_raise


@click.command("build")
@click.argument("names", nargs=-1)
@click.option("--all", "all_specs", is_flag=True, help="Build every image spec.")
@click.option("--push", is_flag=True, help="Push to the registry; an image already there is not rebuilt.")
@click.option("--force", is_flag=True, help="Build even when the reference already exists.")
@click.option("--no-cache", is_flag=True, help="Ignore BuildKit's layer cache (uv's download cache is kept).")
@click.option("--no-verify", is_flag=True, help="Tag without verifying the environment (not recommended).")
@project_option
def command(names: tuple[str, ...], all_specs: bool, push: bool, force: bool, no_cache: bool, no_verify: bool,
            project_dir: Path) -> None:
    """Build the image(s) of a uv project, only when the lock hash is new."""
    results = build(project_dir, names, all_specs=all_specs, push=push, force=force, no_cache=no_cache,
                    reporter=ConsoleReporter(), verify=None if no_verify else verify_or_raise)
    for r in results:
        where = f"  {r.digest_reference}" if r.digest_reference else ""
        click.echo(f"{r.reference}  {r.status}  {human_size(r.size)}  {r.seconds:.1f} s{where}")

from pathlib import Path

import click

from raybake.build import plans_for
from raybake.commands.options import project_option
from raybake.errors import VerificationFailed
from raybake.project import load_project
from raybake.verify import verify_image


@click.command("verify")
@click.argument("reference")
@click.option("--image", "name", help="The image spec the image was built from (default: the only one).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@project_option
def command(reference: str, name: str | None, as_json: bool, project_dir: Path) -> None:
    """Check a built image's environment against the project's lock and spec."""
    project = load_project(project_dir)
    (plan,) = plans_for(project, (name,) if name else ())
    report = verify_image(reference, project, plan.spec)
    click.echo(report.to_json() if as_json else report.render())
    if not report.ok:
        raise VerificationFailed(f"{len(report.findings)} finding(s) in {reference}",
                                 fix="rebuild with `raybake build --force` after fixing the lock or spec")

from pathlib import Path

import click

from raybake.commands.options import project_option
from raybake.errors import VerificationFailed


@click.command("verify")
@click.argument("reference")
@click.option("--image", "name",
              help="The image spec the image was built from (default: the one its raybake label names).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@project_option
def command(reference: str, name: str | None, as_json: bool, project_dir: Path) -> None:
    """Check a built image's environment against the project's lock and spec."""
    from raybake import contract
    from raybake.planner import identities_for, spec_requirements
    from raybake.project import load_project
    from raybake.tools import docker
    from raybake.verify import verify_image

    project = load_project(project_dir)
    if not name:
        # The spec the image was built from, so a `dev` image is not judged by `default`.
        name = docker.image_labels(reference).get(contract.LABEL_SPEC)
    (identity,) = identities_for(project, (name,) if name else ())
    report = verify_image(reference, project, identity.spec, spec_requirements(project, identity.spec))
    click.echo(report.to_json() if as_json else report.render())
    if not report.ok:
        raise VerificationFailed(f"{len(report.findings)} finding(s) in {reference}",
                                 fix="rebuild with `raybake build --force` after fixing the lock or spec")

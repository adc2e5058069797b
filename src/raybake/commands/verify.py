from pathlib import Path

import click

from raybake.commands.options import project_option, spec_override_options
from raybake.errors import VerificationFailed


@click.command("verify")
@click.argument("reference")
@click.option("--image", "name",
              help="The image spec the image was built from (default: the one its raybake label names).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--attestation", is_flag=True,
              help="Check the registry image's signed verification statement against the current lock "
                   "instead (without pulling the image).")
@click.option("--key", "key_file", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="With --attestation: the PEM public key to check the signature with (default: "
                   "RAYBAKE_VERIFICATION_KEY, else [tool.raybake] verification_key).")
@spec_override_options
@project_option
def command(reference: str, name: str | None, as_json: bool, attestation: bool, key_file: Path | None,
            project_dir: Path) -> None:
    """Check a built image's environment against the project's lock and spec."""
    if key_file is not None and not attestation:
        raise click.UsageError("--key checks a signed statement: use it with --attestation")
    if attestation:
        _check_attestation(reference, name, as_json, key_file, project_dir)
        return
    from raybake import contract
    from raybake.planner import identities_for, spec_requirements
    from raybake.project import load_project
    from raybake.tools import docker
    from raybake.verify import record_fresh_verification, verify_image

    project = load_project(project_dir)
    if not name:
        # The spec the image was built from, so a `dev` image is not judged by `default`.
        name = docker.image_labels(reference).get(contract.LABEL_SPEC)
    (identity,) = identities_for(project, (name,) if name else ())
    before = docker.local_image(reference)
    report = verify_image(reference, project, identity.spec, spec_requirements(project, identity.spec))
    if report.ok:
        record_fresh_verification(reference, before, identity)
    click.echo(report.to_json() if as_json else report.render())
    if not report.ok:
        raise VerificationFailed(f"{len(report.findings)} finding(s) in {reference}",
                                 fix="rebuild with `raybake build --force` after fixing the lock or spec")


def _check_attestation(reference: str, name: str | None, as_json: bool, key_file: Path | None,
                       project_dir: Path) -> None:
    from raybake.errors import SettingError
    from raybake.project import load_project
    from raybake.signing import verification_key, verification_key_file
    from raybake.attest import verify_attestation

    project = load_project(project_dir)
    key = verification_key_file(key_file, f"--key {key_file}") if key_file else verification_key(project)
    if key is None:
        raise SettingError("no verification key to check the signed statement with",
                           fix="pass --key FILE, or set RAYBAKE_VERIFICATION_KEY or [tool.raybake] verification_key "
                               "to the PEM public key")
    report = verify_attestation(project, reference, name, key)
    click.echo(report.to_json() if as_json else report.render())
    if not report.ok:
        raise VerificationFailed(f"no statement signed by {key.describe()} says raybake verified {reference} "
                                 "for the current lock",
                                 fix="push this plan's verified image, signed: `raybake build --push --force` with "
                                     "the private key in RAYBAKE_SIGNING_KEY (or --signing-key FILE)")

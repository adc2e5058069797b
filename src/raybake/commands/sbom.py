import click


@click.command("sbom")
@click.argument("reference")
@click.option("--provenance", is_flag=True,
              help="Print the provenance (an in-toto statement: lock hash, input hash and its inputs, base digest, "
                   "raybake's and uv's versions, the spec) instead of the SBOM.")
def command(reference: str, provenance: bool) -> None:
    """Print the CycloneDX SBOM attached to a pushed image (REPOSITORY:TAG or @sha256:...).

    Read from the registry (an OCI referrer of the image's digest), without pulling the image."""
    from raybake.attest import read_document
    from raybake.sbom import PROVENANCE_TYPE, SBOM_TYPE

    click.echo(read_document(reference, PROVENANCE_TYPE if provenance else SBOM_TYPE).decode())

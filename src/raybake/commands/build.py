import json
from pathlib import Path

import click

from raybake.build import BuildFailure, build
from raybake.commands.options import (
    TIMEOUTS_EPILOG,
    jobs_option,
    progress_mode,
    progress_options,
    project_option,
    spec_override_options,
)
from raybake.console import console_reporter
from raybake.errors import BuildsFailed, VerificationFailed, VulnerabilitiesFound
from raybake.files import atomic_write
from raybake.progress import format_size
from raybake.verify import verify_or_raise


@click.command("build", epilog=TIMEOUTS_EPILOG)
@click.argument("names", nargs=-1)
@click.option("--all", "all_specs", is_flag=True,
              help="Build every image spec; specs on different base images at the same time "
                   "(at most --jobs).")
@click.option("--push", is_flag=True, help="Push to the registry; an image already there is not rebuilt.")
@click.option("--force", is_flag=True, help="Build even when the reference already exists.")
@click.option("--no-cache", is_flag=True, help="Ignore BuildKit's layer cache (uv's download cache is kept).")
@click.option("--cache-from", multiple=True, metavar="CACHE",
              help="BuildKit cache to build from (buildx --cache-from: a registry reference or type=...); repeatable, "
                   "replaces the spec's cache_from. Default: REPOSITORY:buildcache-SPEC when the repository "
                   "names a registry.")
@click.option("--cache-to", multiple=True, metavar="CACHE",
              help="BuildKit cache to export to (buildx --cache-to; a registry gets mode=max); repeatable, replaces "
                   "the spec's cache_to. Default with --push: REPOSITORY:buildcache-SPEC.")
@click.option("--no-verify", is_flag=True, help="Tag without verifying the environment (not recommended).")
@click.option("--keep-failed", is_flag=True,
              help="Keep an image that fails verification, as REPOSITORY:rejected-SPEC-ID, for inspection.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the results as JSON on stdout instead of a line per image: every spec's reference, "
                   "status, image ID, digest, size, seconds and error.")
@click.option("--metadata-file", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Also write the results as JSON (as --json prints them) to FILE, failures included.")
@click.option("--signing-key", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              envvar="RAYBAKE_SIGNING_KEY_FILE", show_envvar=True,
              help="PEM private key (ECDSA P-256, unencrypted) that signs raybake's verification statement of "
                   "each image pushed, as a cosign attestation (default: the PEM in RAYBAKE_SIGNING_KEY).")
@click.option("--audit", is_flag=True,
              help="Audit each spec's packages for known vulnerabilities first (as `raybake audit`) and refuse "
                   "to build one with findings at or above its audit_severity (default: any finding).")
@jobs_option
@progress_options
@spec_override_options
@project_option
def command(names: tuple[str, ...], all_specs: bool, push: bool, force: bool, no_cache: bool,
            cache_from: tuple[str, ...], cache_to: tuple[str, ...], no_verify: bool,
            keep_failed: bool, as_json: bool, metadata_file: Path | None, signing_key: Path | None, audit: bool,
            progress: str, quiet: bool, project_dir: Path) -> None:
    """Build the image(s) of a uv project, only when the lock hash is new.

    With several images, those on different base images build at the same time
    (each progress line names its spec), one that fails does not stop the others;
    a summary line per image ends the output, and the exit code is non-zero when any failed."""
    from raybake.signing import signing_key as load_signing_key

    key = load_signing_key(signing_key)
    with console_reporter(progress_mode(progress, quiet)) as reporter:
        outcomes = build(project_dir, names, all_specs=all_specs, push=push, force=force, no_cache=no_cache,
                         keep_failed=keep_failed, reporter=reporter,
                         verify=None if no_verify else verify_or_raise, cache_from=cache_from,
                         cache_to=cache_to, signing_key=key, audit=audit)
    document = json.dumps({"images": [o.as_json() for o in outcomes]}, indent=2)
    if metadata_file is not None:
        atomic_write(metadata_file, (document + "\n").encode())
    failed = [o for o in outcomes if isinstance(o, BuildFailure)]
    if as_json:
        click.echo(document)
    elif len(outcomes) > 1 or not failed:  # one spec's failure is its error alone
        for o in outcomes:
            if isinstance(o, BuildFailure):
                click.echo(f"{o.reference}  FAILED  {o.error.message.splitlines()[0]}")
            else:
                where = f"  {o.digest_reference}" if o.digest_reference else ""
                click.echo(f"{o.reference}  {o.status}  {format_size(o.size)}  {o.seconds:.1f} s{where}")
    if len(outcomes) == 1 and failed:
        raise failed[0].error
    if failed:
        raise BuildsFailed(f"{len(failed)} of {len(outcomes)} images failed: "
                           + ", ".join(o.reference for o in failed),
                           fix="each failure's error and fix are above; the other images were built",
                           findings_only=all(isinstance(o.error, (VerificationFailed, VulnerabilitiesFound))
                                             for o in failed))

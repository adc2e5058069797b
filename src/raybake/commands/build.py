from pathlib import Path

import click

from raybake.build import BuildFailure, build
from raybake.commands.options import project_option
from raybake.console import ConsoleReporter
from raybake.errors import BuildsFailed, VerificationFailed
from raybake.progress import format_size
from raybake.verify import verify_or_raise


@click.command("build")
@click.argument("names", nargs=-1)
@click.option("--all", "all_specs", is_flag=True,
              help="Build every image spec; specs on different base images at the same time "
                   "(at most RAYBAKE_BUILD_JOBS, default 4).")
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
@project_option
def command(names: tuple[str, ...], all_specs: bool, push: bool, force: bool, no_cache: bool,
            cache_from: tuple[str, ...], cache_to: tuple[str, ...], no_verify: bool,
            keep_failed: bool, project_dir: Path) -> None:
    """Build the image(s) of a uv project, only when the lock hash is new.

    With several images, those on different base images build at the same time
    (each progress line names its spec), one that fails does not stop the others;
    a summary line per image ends the output, and the exit code is non-zero when any failed."""
    outcomes = build(project_dir, names, all_specs=all_specs, push=push, force=force, no_cache=no_cache,
                     keep_failed=keep_failed, reporter=ConsoleReporter(),
                     verify=None if no_verify else verify_or_raise, cache_from=cache_from, cache_to=cache_to)
    failed = [o for o in outcomes if isinstance(o, BuildFailure)]
    for o in outcomes:
        if isinstance(o, BuildFailure):
            click.echo(f"{o.reference}  FAILED  {o.error.message.splitlines()[0]}")
        else:
            where = f"  {o.digest_reference}" if o.digest_reference else ""
            click.echo(f"{o.reference}  {o.status}  {format_size(o.size)}  {o.seconds:.1f} s{where}")
    if failed:
        raise BuildsFailed(f"{len(failed)} of {len(outcomes)} images failed: "
                           + ", ".join(o.reference for o in failed),
                           fix="each failure's error and fix are above; the other images were built",
                           findings_only=all(isinstance(o.error, VerificationFailed) for o in failed))

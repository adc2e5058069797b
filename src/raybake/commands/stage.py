from pathlib import Path

import click

from raybake.commands.options import project_option


def stage(out: Path | None, upload: str | None, project_dir: Path) -> None:
    """Stage the project's source for Ray's working_dir (trimmed, deterministic copy).

    Honours .gitignore and .rayignore at every level; never stages virtualenvs,
    caches, build outputs or secret-looking files (.env, keys, cloud credentials)
    unless [tool.raybake] stage_include names them. With --upload, stdout holds
    only the uploaded package's URI."""
    from raybake.jobs import upload_prefix, upload_working_dir
    from raybake.paths import cache_dir
    from raybake.progress import format_size
    from raybake.project import load_project
    from raybake.stage import stage_project

    if upload:
        upload_prefix(upload)  # a bad prefix before anything is staged
    project = load_project(project_dir)
    # `_tree`, not a spec name: job-config stages into stage/<project>/<spec>.
    staged = stage_project(project, out or cache_dir() / "stage" / project.name / "_tree")
    click.echo(staged.path, err=bool(upload))
    click.echo(f"{len(staged.files)} files, {format_size(staged.total_bytes)}, "
               f"content sha256 {staged.content_hash}", err=bool(upload))
    if upload:
        package = upload_working_dir(project, staged, upload)
        click.echo(f"{'uploaded' if package.uploaded else 'already there, not uploaded again'}: {package.uri}",
                   err=True)
        click.echo(package.uri)
    if staged.withheld:
        click.echo(f"note: left out {len(staged.withheld)} file(s) holding a private key or a cloud key: "
                   f"{', '.join(staged.withheld)}; to ship one, name it exactly in [tool.raybake] "
                   "stage_include", err=True)


command = click.command("stage")(
    click.option("--out", type=click.Path(path_type=Path, file_okay=False),
                 help="Directory to stage into (replaced when raybake staged it before; "
                      "default: raybake's cache).")(
        click.option("--upload", metavar="PREFIX",
                     help="Also upload the staged tree as PREFIX/<project>-<content hash>.zip (s3://BUCKET/PREFIX, "
                          "gs://BUCKET/PREFIX or file:///SHARED/DIR; skipped when it is there) and print its URI "
                          "on stdout.")(project_option(stage))))

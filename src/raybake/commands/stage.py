from pathlib import Path

import click

from raybake.commands.options import project_option


def stage(out: Path | None, project_dir: Path) -> None:
    """Stage the project's source for Ray's working_dir (trimmed, deterministic copy).

    Honours .gitignore and .rayignore at every level; never stages virtualenvs,
    caches, build outputs or secret-looking files (.env, keys, cloud credentials)
    unless [tool.raybake] stage_include names them."""
    from raybake.paths import cache_dir
    from raybake.progress import format_size
    from raybake.project import load_project
    from raybake.stage import stage_project

    project = load_project(project_dir)
    # `_tree`, not a spec name: job-config stages into stage/<project>/<spec>.
    staged = stage_project(project, out or cache_dir() / "stage" / project.name / "_tree")
    click.echo(staged.path)
    click.echo(f"{len(staged.files)} files, {format_size(staged.total_bytes)}, "
               f"content sha256 {staged.content_hash}")
    if staged.withheld:
        click.echo(f"note: left out {len(staged.withheld)} file(s) holding a private key or a cloud key: "
                   f"{', '.join(staged.withheld)}; to ship one, name it exactly in [tool.raybake] "
                   "stage_include", err=True)


command = click.command("stage")(
    click.option("--out", type=click.Path(path_type=Path, file_okay=False),
                 help="Directory to stage into (replaced when raybake staged it before; "
                      "default: raybake's cache).")(project_option(stage)))

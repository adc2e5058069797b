import json
from pathlib import Path

import click

from raybake.commands.options import project_option


@click.command("job-config")
@click.argument("name", required=False)
@click.option("--entrypoint", required=True, help='The job command, e.g. "python main.py".')
@click.option("--format", "fmt", type=click.Choice(["ray", "anyscale"]), default="ray", show_default=True,
              help="ray: JSON for JobSubmissionClient.submit_job(**config); anyscale: a job YAML.")
@click.option("--stage-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Where the working_dir tree is staged (default: raybake's cache).")
@project_option
def command(name: str | None, entrypoint: str, fmt: str, stage_dir: Path | None, project_dir: Path) -> None:
    """Print a Ray job config: the image as node image, the source as working_dir."""
    import shlex

    from raybake.planner import identities_for
    from raybake.jobs import anyscale_job_config, image_for_job, ray_job_config
    from raybake.paths import cache_dir
    from raybake.project import load_project
    from raybake.stage import stage_project

    project = load_project(project_dir)
    (plan,) = identities_for(project, (name,) if name else ())
    staged = stage_project(project, stage_dir or cache_dir() / "stage" / project.name / plan.spec.name)
    image = image_for_job(project, plan)
    args = shlex.split(entrypoint)
    if fmt == "ray":
        click.echo(json.dumps(ray_job_config(plan, staged, args, image), indent=2, sort_keys=True))
    else:
        import yaml

        click.echo(yaml.safe_dump(anyscale_job_config(project, plan, staged, args, image), sort_keys=False))

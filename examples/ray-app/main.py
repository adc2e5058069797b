"""Entry point of the example job: runs Ray tasks that use the image's packages
(pandas, pyarrow) and the project's own code (shipped through working_dir)."""

import sys

import pyarrow as pa
import ray

from ray_app.stats import GREETING, summarize


@ray.remote
def batch_summary(batch: list[float]) -> dict[str, float]:
    return summarize(batch)


@ray.remote
def worker_env() -> dict[str, str]:
    import ray_app.stats

    return {"python": sys.executable, "greeting": ray_app.stats.GREETING}


def main() -> None:
    ray.init()
    batches = [[float(i + j) for j in range(10)] for i in range(0, 40, 10)]
    results = ray.get([batch_summary.remote(b) for b in batches])
    table = pa.Table.from_pylist(results)
    env = ray.get(worker_env.remote())
    print(f"driver: {GREETING}; worker python: {env['python']}; worker says: {env['greeting']}")
    print(f"batches: {table.num_rows}, total count: {sum(table.column('count').to_pylist()):.0f}, "
          f"max: {max(table.column('max').to_pylist()):.0f}")
    print("ray-app job OK")


if __name__ == "__main__":
    main()

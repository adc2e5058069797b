"""Two actors per node import torch and run one training step of a small model.

    ray job submit --working-dir . -- /opt/venv/bin/python main.py [ACTORS_PER_NODE]
"""

import sys
import time

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


@ray.remote(num_cpus=0)
class Trainer:
    def __init__(self):
        start = time.perf_counter()
        import torch

        self.import_s = time.perf_counter() - start
        self.torch = torch

    def step(self) -> dict:
        torch = self.torch
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        x, y = torch.randn(256, 64), torch.randn(256, 1)
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"node": ray.get_runtime_context().get_node_id(), "torch": torch.__version__,
                "cuda": torch.version.cuda, "loss": float(loss), "import_s": self.import_s}


def main() -> None:
    per_node = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    ray.init()
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    strategy = NodeAffinitySchedulingStrategy
    trainers = [Trainer.options(scheduling_strategy=strategy(node, soft=False)).remote()
                for node in nodes for _ in range(per_node)]
    for result in ray.get([t.step.remote() for t in trainers]):
        print(result)


if __name__ == "__main__":
    main()

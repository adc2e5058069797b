import pandas as pd

GREETING = "hello from ray_app"


def summarize(values: list[float]) -> dict[str, float]:
    """Statistics of a batch, computed with pandas from the image."""
    s = pd.Series(values, dtype="float64")
    return {"count": float(s.count()), "mean": float(s.mean()), "max": float(s.max())}

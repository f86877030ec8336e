"""A small runs table with a known answer, for report and fit tests that must not train."""
import numpy as np
import pandas as pd

SPEC = "laws: [isoflop]\nbootstrap: 0\nholdout: none\n"


def isoflop_table(flops_column: bool = False) -> pd.DataFrame:
    rows = []
    for c in (1e15, 1e16, 1e17):
        for n in np.geomspace(1e5, 3e7, 5):  # every budget's minimum inside: an exponent needs 3
            d = c / (6 * n)
            row = {"run_id": f"r{len(rows)}", "params": n, "tokens": d, "flops_budget": c,
                   "loss": 1.7 + 400 / n**0.34 + 410 / d**0.28}
            if flops_column:
                row["flops"] = 6 * n * d
            rows.append(row)
    return pd.DataFrame(rows)

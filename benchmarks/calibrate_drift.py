"""Re-decide bench_drift.py's saved drift rows under other settings: how the defaults were chosen.

    python benchmarks/calibrate_drift.py [--alphas 0.01 0.02 0.05 0.1] [--corrections holm bh]

Reads .work/drift/rows.parquet (every test's statistic, threshold and raw p-value, per trial)
and applies `pixelscope.quality.drift.decide` with each alpha x correction, printing the share of
trials flagged per condition: false alarms for the same-distribution conditions, detection
rate for the shifts. Statistics and p-values do not depend on alpha or the correction, so
this is exactly what a full benchmark run with those settings would report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=str(HERE / ".work" / "drift" / "rows.parquet"))
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.01, 0.02, 0.05, 0.1])
    ap.add_argument("--corrections", nargs="+", default=["holm", "bh"])
    args = ap.parse_args()

    import pandas as pd

    from pixelscope.config import DriftConfig
    from pixelscope.quality.drift import DriftRow, decide

    frame = pd.read_parquet(args.rows)
    fields = DriftRow.__dataclass_fields__
    trials = {}
    for key, g in frame.groupby(["condition", "ref_size", "trial"], sort=False):
        trials[key] = [DriftRow(**{k: (None if pd.isna(v) else v) for k, v in r.items() if k in fields})
                       for r in g.to_dict("records")]
    table = {}
    for correction in args.corrections:
        for alpha in args.alphas:
            cfg = DriftConfig(alpha=alpha, correction=correction)
            flagged: dict[tuple[str, int], list[bool]] = {}
            for (condition, ref_size, _), rows in trials.items():
                flagged.setdefault((condition, ref_size), []).append(any(r.drift for r in decide(rows, cfg)))
            table[f"{correction} a={alpha:g}"] = {k: f"{100 * sum(v) / len(v):.1f}%" for k, v in flagged.items()}
    out = pd.DataFrame(table)
    out.index.names = ["condition", "reference"]
    print(out.to_string())


if __name__ == "__main__":
    main()

"""Re-decide bench_drift.py's saved drift rows under other settings: how the defaults were chosen.

    python benchmarks/calibrate_drift.py [--alphas 0.01 0.02 0.05 0.1] [--corrections holm bh]
    python benchmarks/calibrate_drift.py --alphas 0.02 --corrections holm \
        --budgets '{"class_balance": 0.3, "features": 0.5, "segments": 0.05, "embedding": 0.15}' single
    python benchmarks/calibrate_drift.py --alphas 0.02 --corrections holm --floors 0.1 0.07 0.05

Reads .work/drift/rows.parquet (every test's statistic, threshold and raw p-value, per trial)
and applies `pixelscope.validate.drift.decide` with each alpha x correction (x family budget, when
given: a JSON budget, or `single` for one family over every test without the per-class share
tests, as before the budgets), printing the share of trials flagged per condition: false
alarms for the same-distribution conditions, detection rate for the shifts. Statistics and
p-values do not depend on alpha, the correction or the budget, so this is exactly what a full
benchmark run with those settings would report.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=str(HERE / ".work" / "drift" / "rows.parquet"))
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.01, 0.02, 0.05, 0.1])
    ap.add_argument("--corrections", nargs="+", default=["holm", "bh"])
    ap.add_argument("--budgets", nargs="+", default=["default"], help="JSON family budgets, 'default' or 'single'")
    ap.add_argument("--floors", type=float, nargs="+", default=[None],
                    help="effect-size floors to try for KS (drift.ks_min) and total variation (drift.tv_max); "
                         "default: the ones the rows were decided with")
    args = ap.parse_args()

    import pandas as pd

    from pixelscope.config import DriftConfig
    from pixelscope.validate.drift import DriftRow, decide

    frame = pd.read_parquet(args.rows)
    fields = DriftRow.__dataclass_fields__
    trials = {}
    for key, g in frame.groupby(["condition", "ref_size", "trial"], sort=False):
        trials[key] = [DriftRow(**{k: (None if pd.isna(v) else v) for k, v in r.items() if k in fields})
                       for r in g.to_dict("records")]
    import json

    import pixelscope.validate.drift as drift

    family_of = drift.family_of
    table = {}
    for budget in args.budgets:
        single = budget == "single"
        # `single`: every hypothesis in one family (the correction before family budgets)
        drift.family_of = (lambda r, cfg: "features") if single else family_of
        extra = {} if budget in ("default", "single") else {"budget": json.loads(budget)}
        for correction, alpha, floor in itertools.product(args.corrections, args.alphas, args.floors):
            cfg = DriftConfig(alpha=alpha, correction=correction, **extra)
            flagged: dict[tuple[str, int], list[bool]] = {}
            for (condition, ref_size, _), rows in trials.items():
                rows = [r for r in rows if not (single and r.test == "share")]
                if floor is not None:  # a threshold is the floor raised to the sketches' resolution
                    for r in rows:
                        if r.test in ("ks", "chi2_tv"):
                            r.threshold = max(floor, r.resolution)
                flagged.setdefault((condition, ref_size), []).append(any(r.drift for r in decide(rows, cfg)))
            name = (f"{correction} a={alpha:g}" + ("" if budget == "default" else f" {budget}")
                    + ("" if floor is None else f" floor={floor:g}"))
            table[name] = {k: f"{100 * sum(v) / len(v):.1f}%" for k, v in flagged.items()}
    drift.family_of = family_of
    out = pd.DataFrame(table)
    out.index.names = ["condition", "reference"]
    print(out.to_string())


if __name__ == "__main__":
    main()

"""cleanlab Datalab with its defaults on given features and labels (runs in its own venv).

    run_datalab.py features.npy labels.json   -> one JSON line: label_score, is_label_issue per row
"""

import json
import sys

import numpy as np
from cleanlab import Datalab


def main() -> None:
    x = np.load(sys.argv[1])
    labels = json.loads(open(sys.argv[2]).read())
    lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    lab.find_issues(features=x)
    issues = lab.get_issues("label")
    print(json.dumps({"label_score": issues["label_score"].tolist(),
                      "is_label_issue": issues["is_label_issue"].astype(bool).tolist()}))


if __name__ == "__main__":
    main()

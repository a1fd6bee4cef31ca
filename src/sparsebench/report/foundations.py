"""What a recommendation stands on, said beside it: a comparison with dense is only as
good as dense. Tried as a new user would (3 epochs on a 3-class folder), dense reached
0.5625 and the report still recommended a method "+0.021" over it.

Each check reads what the report already holds: the dense runs' test confusion
matrices, their validation curves and their seed count.
"""

from __future__ import annotations

import pandas as pd

# A dense mean less than this above the majority class's share is "near chance".
NEAR_CHANCE = 0.05
# Epochs at the end of training in which a best validation epoch says "still improving".
LAST_EPOCHS = 2


def foundations(
    dense_runs: pd.DataFrame | None, epochs: pd.DataFrame, column: str, margin: float
) -> str:
    """The caveats of one data set and model's recommendation, `; `-joined ("sound"
    when there is none to say): dense's seeds, its level against chance, whether it was
    still improving, and how much one test image moves the metric."""
    if dense_runs is None or dense_runs.empty:
        return "no dense run"
    said = []
    seeds = dense_runs.seed.nunique()
    if seeds < 2:
        said.append("one dense seed: nothing is tested")
    mean, floor = float(dense_runs[column].mean()), float(dense_runs.test_majority_share.max())
    if mean < floor + NEAR_CHANCE:
        said.append(f"dense is near chance ({mean:.3f}, its largest class {floor:.3f})")
    improving = _still_improving(dense_runs, epochs)
    if improving:
        said.append(
            f"dense was still improving at its last epochs ({improving} of {seeds} "
            "seed(s)): train longer"
        )
    tested = int(dense_runs.test_confusion.map(lambda c: sum(map(sum, c))).min())
    if tested and 1 / tested > margin:
        said.append(
            f"one test image moves accuracy by {100 / tested:.1f} points ({tested} test "
            "images), more than the margin"
        )
    return "; ".join(said) if said else "sound"


def _still_improving(dense_runs: pd.DataFrame, epochs: pd.DataFrame) -> int:
    """How many dense runs validated best in their last `LAST_EPOCHS` epochs."""
    count = 0
    for run_id in dense_runs.run_id:
        curve = epochs.loc[epochs.run_id == run_id, ["epoch", "val_accuracy"]].dropna()
        if len(curve) <= LAST_EPOCHS:
            continue
        best = int(curve.loc[curve.val_accuracy.idxmax(), "epoch"])
        count += best >= int(curve.epoch.max()) - LAST_EPOCHS + 1
    return count

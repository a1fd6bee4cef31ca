"""One run's rows in the results database, from its start to its ending. `train` and a
sweep's driver record every run, trained or derived, through a `RunRecorder`, and a
federated server its run through a `FederatedRecorder`, so a run is claimed, its epochs
or rounds stored, and its ending written the same way everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparsebench.settings.run import RunConfig
from sparsebench.store.db import ResultsStore
from sparsebench.store.federated import (
    begin_federated_run,
    drop_rounds_after,
    end_federated_run,
    record_round,
)
from sparsebench.store.records import (
    ClientRoundRecord,
    EpochRecord,
    RoundRecord,
    RunRecord,
    RunSummary,
)
from sparsebench.train.outcome import ending_of


def run_record(config: RunConfig) -> RunRecord:
    """What the results database files a run under."""
    assert config.conv_sparsity is not None and config.linear_sparsity is not None
    return RunRecord(
        run_id=config.run_id(),
        config=config.model_dump(),
        model=config.model,
        dataset=config.dataset,
        method=config.method,
        scenario=config.scenario_label,
        conv_sparsity=config.conv_sparsity,
        linear_sparsity=config.linear_sparsity,
        seed=config.seed,
        epochs=config.total_epochs,
    )


class RunRecorder:
    """Begin (claim the run for this process), store each epoch or a resumed run's
    epochs, then finish it or end it as `sparsebench.train.outcome` says."""

    def __init__(self, store: ResultsStore, config: RunConfig) -> None:
        self.store = store
        self.config = config
        self.run_id = config.run_id()
        self.created = False  # whether `begin` made the run's row (a refusal removes it)

    def begin(self, device: str, data: dict[str, Any], checkpoint: Path | None = None) -> None:
        """Claim the run; RunBusy if another live process trains it."""
        self.created = self.store.begin_run(run_record(self.config), device, data, checkpoint)

    def epoch(self, row: EpochRecord) -> None:
        self.store.record_epoch(self.run_id, row)

    def resumed(self, rows: list[EpochRecord]) -> None:
        """The epochs a resumed run's checkpoint holds replace those stored."""
        self.store.replace_epochs(self.run_id, rows)

    def finish(self, summary: RunSummary, derived_from: str | None = None) -> None:
        self.store.finish_run(self.run_id, summary, derived_from=derived_from)

    def end(self, status: str, error: str | None) -> None:
        """Store an ending other than finished (a refused run this recorder began
        leaves no row)."""
        self.store.end_run(self.run_id, status, error, self.created)

    def fail_unstarted(self, error: str) -> None:
        """A run that never started because the run it needs failed."""
        self.store.begin_run(run_record(self.config), "", {})
        self.store.mark_run(self.run_id, "failed", error)


class FederatedRecorder:
    """A federated run's rows, on the same contract as `RunRecorder`: `begin` claims the
    run (RunBusy if another live process trains it), each round is stored with its
    clients' parts in one transaction, and the run ends `finished` or as
    `train.outcome` says for the error that stopped it."""

    def __init__(self, store: ResultsStore, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self.created = False

    def begin(self, settings: dict[str, Any], partition: dict[str, Any]) -> None:
        self.created = begin_federated_run(self.store, self.run_id, settings, partition)

    def round(self, row: RoundRecord, clients: list[ClientRoundRecord]) -> None:
        record_round(self.store, self.run_id, row, clients)

    def resumed_after(self, last_round: int) -> None:
        """Rounds after `last_round`, stored but whose state was never saved, are dropped:
        they are trained again, to the same result."""
        drop_rounds_after(self.store, self.run_id, last_round)

    def finish(self) -> None:
        end_federated_run(self.store, self.run_id, "finished")

    def end(self, error: BaseException) -> None:
        ending = ending_of(error)
        end_federated_run(self.store, self.run_id, ending.status, ending.error, self.created)

"""The Flower apps as a deployed federation loads them: a SuperLink runs `server_app`,
each SuperNode `client_app` (the app bundle in `deploy/flower/` names both).

The server reads its run from the run config Flower passes (`flwr run --run-config`):
`config`, a YAML file with a `run:` section (the settings of `sparsebench train`) and a
`federated:` section (those of `sparsebench federate`); `db` and `runs-dir`, where the
rounds and the server's state go. Each node loads the data set the run names from its
own disk (the path in `run.data_path` must exist there).
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from sparsebench.data.registry import load_dataset
from sparsebench.errors import InputError
from sparsebench.federated.apps import grid_sender, make_client_app
from sparsebench.federated.server import FederatedServer
from sparsebench.settings.federated import FederatedRun, federated_run
from sparsebench.settings.reading import read_yaml
from sparsebench.store.results import open_results

client_app = make_client_app()
server_app = ServerApp()


def run_from_file(path: str | Path) -> FederatedRun:
    """The federated run a YAML file describes (`run:` and `federated:` sections)."""
    values = read_yaml(path)
    unknown = set(values) - {"run", "federated"}
    if unknown or "run" not in values:
        raise InputError(
            f"{path}: a federated run file has a `run:` section and a `federated:` section "
            f"(found {', '.join(sorted(values)) or 'nothing'})"
        )
    return federated_run(values["run"], values.get("federated") or {})


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    if not config.get("config"):
        raise InputError("flwr run --run-config 'config=\"RUN.yaml\"': no federated run given")
    fed = run_from_file(str(config["config"]))
    run = fed.run
    dataset = load_dataset(run.dataset, run.data_path, run.loader_options())
    with open_results(Path(str(config.get("db", "results.db")))) as store:
        runs_dir = Path(str(config.get("runs-dir", "runs")))
        FederatedServer(fed, dataset, store, runs_dir).run(
            grid_sender(grid, fed.federated.round_timeout_s)
        )

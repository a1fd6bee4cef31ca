"""What a run, a federation and a sweep are asked to do, validated, and the run ids that
name them: the layer that training, the store, the report, deployment and federated
training all read, so none of them imports another to learn a run's settings."""

from sparsebench.settings.run import NUMERICS, RunConfig, stored_run_id

__all__ = ["NUMERICS", "RunConfig", "stored_run_id"]

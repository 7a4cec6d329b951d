"""Multi-node on one machine (``ray.cluster_utils.Cluster``): trials spread over two GPU worker nodes, and
losing a node mid-run moves its trial, from its checkpoint, to the other node (Ray's test_cluster.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from search.config import load_search_spec
from search.tuner import local_runtime_env, run_search
from tests.search.helpers import results, trial_dirs, write_spec

ray = pytest.importorskip("ray")


class RemoveNodeMidRun:
    """Tune callback (driver thread): kills the node of the first trial that reports epoch 2."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.removed: str | None = None

    def __getstate__(self) -> dict[str, Any]:  # the Tuner pickles its callbacks; the cluster stays here
        return {"cluster": None, "removed": self.removed}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if self.removed is None and result.get("epoch") == 2.0:
            node = next(n for n in self.cluster.worker_nodes if n.node_id == result["node_id"])
            self.cluster.remove_node(node, allow_graceful=False)
            self.removed = node.node_id


def _callback(cluster: Any) -> Any:
    from ray.tune import Callback

    return type("RemoveNode", (RemoveNodeMidRun, Callback), {})(cluster)


@pytest.fixture
def cluster():
    from ray.cluster_utils import Cluster

    assert not ray.is_initialized(), "another test left Ray running"
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [c.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, runtime_env=local_runtime_env())
    yield c, workers
    ray.shutdown()
    c.shutdown()


@pytest.mark.slow
def test_trials_spread_over_nodes_and_survive_losing_one(tmp_path: Path, cluster) -> None:
    c, workers = cluster
    path = write_spec(
        tmp_path,
        # 8 epochs: the trial whose node is removed after its epoch 2 cannot finish before the node is gone
        {"search": {"num_samples": 3}, "resources": {"cpu": 1, "gpu": 1}, "train": {"epochs": 8}},
    )
    remover = _callback(c)
    grid = run_search(
        load_search_spec(path), storage=str(tmp_path / "runs"), name="multi", callbacks=[remover]
    )
    assert remover.removed is not None
    assert len(grid) == 3 and not grid.errors, grid.errors
    rows = {d.name: results(d) for d in trial_dirs(tmp_path / "runs" / "multi")}
    assert len(rows) == 3
    assert all(r[-1]["epoch"] == 8.0 for r in rows.values())  # every trial accounted for, to the end
    nodes = {row["node_id"] for r in rows.values() for row in r}
    assert nodes == {w.node_id for w in workers}  # trials ran on both worker nodes
    moved = [r for r in rows.values() if {row["node_id"] for row in r} == nodes]
    assert moved, "no trial moved to the other node"
    for r in moved:
        resumed = [row for row in r if row["node_id"] != remover.removed]
        assert resumed[0]["restored_from_epoch"] >= 1  # continued from its checkpoint, not from epoch 0

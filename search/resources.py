"""Per-trial resource requests and the feasibility check that fails at once instead of waiting forever.

Ray queues a trial whose request no node can hold and waits (with a warning) for a node that never
comes. Before the Tuner starts, :func:`check_feasible` compares the request with every node shape the
cluster has or can add (the alive nodes, plus the node types of an autoscaler's config).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from model_zoo.errors import UserError
from search.config import ResourcesConfig


class ResourceError(UserError, RuntimeError):
    """A per-trial resource request that no node of the cluster can ever satisfy."""


def trial_request(cfg: ResourcesConfig) -> dict[str, float]:
    """The request in Ray's resource names (one bundle per trial)."""
    return {"CPU": float(cfg.cpu), "GPU": float(cfg.gpu)}


def _fits(request: Mapping[str, float], node: Mapping[str, float]) -> bool:
    return all(amount <= 0 or node.get(name, 0.0) >= amount for name, amount in request.items())


def infeasible_reason(request: Mapping[str, float], shapes: Iterable[Mapping[str, float]]) -> str | None:
    """Why no node shape holds ``request`` (None when one does)."""
    shapes = [dict(s) for s in shapes]
    if any(_fits(request, s) for s in shapes):
        return None
    asked = ", ".join(f"{k.lower()}={v:g}" for k, v in request.items() if v > 0)
    seen = (
        "; ".join(", ".join(f"{k.lower()}={s.get(k, 0.0):g}" for k in ("CPU", "GPU")) for s in shapes)
        or "no nodes"
    )
    hints = []
    if request.get("GPU", 0) > 0 and not any(s.get("GPU", 0) > 0 for s in shapes):
        hints.append("the cluster has no GPUs: set resources.gpu: 0 to train on the CPU")
    if request.get("CPU", 0) > max((s.get("CPU", 0.0) for s in shapes), default=0.0):
        hints.append("lower resources.cpu to at most the largest node's CPUs")
    if request.get("GPU", 0) > max((s.get("GPU", 0.0) for s in shapes), default=0.0) > 0:
        hints.append("lower resources.gpu to what one node has (trials use one node each)")
    hint = f" ({'; '.join(hints)})" if hints else ""
    return f"resources: each trial asks for {asked}, but no node can provide it; nodes: {seen}{hint}"


def cluster_node_shapes() -> list[dict[str, float]]:
    """Total resources of each alive node, plus each node type an autoscaler may still launch."""
    import ray

    from search.ray_compat import autoscaler_node_types

    launchable = autoscaler_node_types()  # first: on an untested Ray it stops here, before Ray is asked
    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")] + launchable


def check_feasible(cfg: ResourcesConfig, shapes: Iterable[Mapping[str, float]] | None = None) -> None:
    """Raise :class:`ResourceError` unless some node (alive or launchable) can run one trial."""
    reason = infeasible_reason(trial_request(cfg), cluster_node_shapes() if shapes is None else shapes)
    if reason:
        raise ResourceError(reason)

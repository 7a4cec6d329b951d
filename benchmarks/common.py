"""Shared pieces of the benchmarks: the machine, timing, result files, and quiet searches on a local Ray.

Every benchmark prints what it compared and on which machine, its figures, and a last line starting
``RESULT <name>:`` with the ratio; :func:`record` writes the same figures to
``benchmarks/results/<name>.json`` with the machine, the date and the load average (the machine may be
shared: a figure without its load average cannot be judged).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_zoo.files import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
# The benchmarks' search space: the quickstart as measured in docs/benchmarks.md, frozen (the demo's
# spaces/quickstart.yaml has since moved to real small encoders so that it learns visibly).
QUICKSTART = Path(__file__).resolve().parent / "quickstart_space.yaml"
CACHE_ENV = "BUS_CACHE_DIR"


# ------------------------------------------------------------------------------------------ machine


def load_average() -> float:
    """1-minute load average (NaN where the OS has none): > CPU count means the figures are contended."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return math.nan


def gpu_names() -> list[str]:
    """Names of the CUDA devices torch sees (empty without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def machine_info() -> dict[str, Any]:
    """Platform, CPU, core count, torch / Ray versions, torch threads, GPUs and the current load."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpus": gpu_names(),
        "load_average": load_average(),
    }
    with contextlib.suppress(ImportError):
        import ray

        info["ray"] = ray.__version__
    return info


def machine_line(info: Mapping[str, Any] | None = None) -> str:
    """One line: ``Linux-... | x86_64 | 2 cores | torch 2.x (2 threads) | no GPU | load 1.2``."""
    info = info or machine_info()
    gpus = ", ".join(info["gpus"]) or "no GPU"
    return (
        f"{info['platform']} | {info['processor']} | {info['cpu_count']} cores | torch {info['torch']} "
        f"({info['torch_threads']} threads) | {gpus} | load {info['load_average']}"
    )


# ------------------------------------------------------------------------------------------- output


def banner(name: str, compared: str) -> dict[str, Any]:
    """Print the benchmark's title, what it compares and the machine; return the machine info."""
    info = machine_info()
    print(f"\n=== benchmark {name} ===")
    print(f"compared: {compared}")
    print(f"machine: {machine_line(info)}")
    return info


def final(name: str, text: str) -> str:
    """Print the last line of a benchmark, ``RESULT <name>: <text>``."""
    line = f"RESULT {name}: {text}"
    print(line, flush=True)
    return line


def record(
    name: str,
    compared: str,
    figures: Mapping[str, Any],
    ratio: str,
    machine: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
) -> Path:
    """Write ``<out_dir>/<name>.json`` (default ``benchmarks/results``) with the figures, the ratio line,
    the machine, the date and the load average now; return its path."""
    folder = Path(out_dir) if out_dir is not None else RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "compared": compared,
        "ratio": ratio,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": dict(machine or machine_info()),
        "load_average_after": load_average(),
        "figures": figures,
    }
    return write_json_atomic(folder / f"{name}.json", doc, indent=1)


# ------------------------------------------------------------------------------------------- timing


def median(values: Sequence[float]) -> float:
    vals = sorted(float(v) for v in values if v == v)
    if not vals:
        return math.nan
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else 0.5 * (vals[mid - 1] + vals[mid])


@contextlib.contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """``with stopwatch() as t: ...`` then ``t["s"]`` holds the elapsed wall seconds."""
    box = {"s": math.nan}
    start = time.perf_counter()
    try:
        yield box
    finally:
        box["s"] = time.perf_counter() - start


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


# -------------------------------------------------------------------------------------- environment


def bench_env() -> Path:
    """Quiet, offline settings for a benchmark process; the dataset cache (``$BUS_CACHE_DIR``, else a
    per-user folder under the temp dir, so synthetic sets are built once across benchmarks)."""
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    cache = os.environ.get(CACHE_ENV) or str(Path(tempfile.gettempdir()) / f"bus-bench-cache-{os.getuid()}")
    os.environ[CACHE_ENV] = cache
    return Path(cache)


# -------------------------------------------------------------------------------------- searching


def search_spec(overrides: Sequence[str] = (), base: str | Path = QUICKSTART) -> Any:
    """A validated :class:`search.config.SearchSpec`: ``base`` (default the quickstart) with ``--set``
    style overrides, W&B off."""
    from search.config import load_search_spec

    return load_search_spec(base, ["wandb.mode=disabled", *overrides])


def load_data(spec: Any) -> tuple[Any, dict]:
    """The spec's cached dataset (built without progress bars) and its splits, as a search makes them."""
    from trainables.data.run_data import load_run_data

    return load_run_data(spec.data, progress=False)


def start_ray(num_cpus: int | None = None) -> None:
    """A fresh local Ray (no dashboard, worker logs not forwarded) importing this project; restarted when
    already running so each benchmark sees the CPU count it asked for."""
    import ray

    from search.tuner import local_runtime_env

    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        address="local",
        num_cpus=num_cpus or os.cpu_count(),
        num_gpus=None,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        runtime_env=local_runtime_env({"WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore"}),
    )


def stop_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


@contextlib.contextmanager
def quiet(log: Path | None = None) -> Iterator[io.StringIO]:
    """Send stdout/stderr (Ray's progress table, the leaderboard) to a buffer, saved to ``log`` if given."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            yield buf
    finally:
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(buf.getvalue(), encoding="utf-8")


def run_quiet_search(spec: Any, storage: str | Path, name: str) -> tuple[Any, Any, float]:
    """Run :func:`search.tuner.run_search` with its output kept out of the benchmark's report (in
    ``<storage>/<name>.log``); return Tune's ResultGrid, a :class:`Collector` of the trials' rows and
    the wall seconds of the whole search (Ray already running)."""
    from search.tuner import run_search

    collector = Collector()
    with quiet(Path(storage) / f"{name}.log"), stopwatch() as t:
        results = run_search(spec, storage=str(storage), name=name, overwrite=True, callbacks=[collector])
    errors = [str(r.error) for r in results if r.error]
    if errors:
        raise RuntimeError(f"search {name}: {len(errors)} trial(s) failed, first: {errors[0]}")
    return results, collector, t["s"]


class Collector:
    """A Tune callback that keeps, in the driver, when each trial started (its actor ready) and every
    row it reported; works whatever loggers are configured."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from ray.tune import Callback

        class _Collector(Callback):
            def __init__(self) -> None:
                self.started: dict[str, float] = {}
                self.rows: dict[str, list[dict[str, Any]]] = {}

            def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                self.started.setdefault(trial.trial_id, time.time())
                self.rows.setdefault(trial.trial_id, [])

            def on_trial_result(
                self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
            ) -> None:
                row = {k: v for k, v in result.items() if isinstance(v, int | float | str) or v is None}
                row["received_at"] = time.time()
                self.rows.setdefault(trial.trial_id, []).append(row)

        return _Collector()


def search_figures(collector: Any, wall_s: float, metric: str = "val/score_best") -> dict[str, Any]:
    """Trials, trial-epochs (sum of each trial's last ``training_iteration``), wall seconds and the best
    ``metric`` any trial reported, from a :class:`Collector`."""
    rows = list(collector.rows.values())
    epochs = [int(r[-1]["training_iteration"]) if r else 0 for r in rows]
    best = max((float(x[metric]) for r in rows for x in r if metric in x), default=math.nan)
    return {
        "trials": len(rows),
        "trial_epochs": sum(epochs),
        "epochs_per_trial": epochs,
        "wall_s": round(wall_s, 2),
        "best_score": best,
    }


def finish(
    name: str,
    compared: str,
    figures: Mapping[str, Any],
    ratio: str,
    machine: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
) -> int:
    """The end of every benchmark: :func:`record` the figures, say where, print the ``RESULT`` line
    (:func:`final`); exit status 0."""
    path = record(name, compared, figures, ratio, machine, out_dir)
    print(f"recorded: {path}")
    final(name, ratio)
    return 0


def main_guard(fn: Any, argv: Sequence[str] | None = None) -> int:
    """Run a benchmark's ``fn(argv)`` with the benchmark environment set; its exit status (every
    benchmark's ``__main__``)."""
    bench_env()
    return int(fn(argv) or 0)


if __name__ == "__main__":  # pragma: no cover
    print(machine_line())
    sys.exit(0)

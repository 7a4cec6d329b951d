"""``make bench``: run every benchmark this machine can, one process each, and summarise their results.

Each benchmark runs as ``python -m benchmarks.<name> <args>`` (a fresh process: its own torch threads,
its own local Ray), prints its own report, and ends with a ``RESULT <name>: ...`` line; the summary
repeats those lines with each benchmark's wall time. GPU benchmarks skip themselves without CUDA. The
default sizes keep the whole run under 20 minutes on 2 CPU cores (``--quick``: tiny sizes, a smoke run).

    python -m benchmarks.run_all [--only early_stopping packing] [--skip inference] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import common

#: name -> arguments of the full run (sized for < 20 min in total on 2 cores) and of ``--quick``.
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "trial_overhead": ([], ["--epochs", "2", "--n-per-class", "6", "10", "8"]),
    "data_path": (
        ["--steps", "4", "--rounds", "3", "--encoder", "tu-mobilenetv3_small_050"],
        [
            "--steps",
            "1",
            "--rounds",
            "1",
            "--n-per-class",
            "4",
            "4",
            "4",
            "--png-size",
            "128",
            "--size",
            "64",
            "--encoder",
            "tu-test_efficientnet",
            "--workers",
            "1",
        ],
    ),
    "early_stopping": ([], ["--seeds", "0", "--samples", "3", "--epochs", "3"]),
    "optuna_vs_random": ([], ["--samples", "3", "--epochs", "2"]),
    "packing": ([], ["--trials", "2", "--epochs", "1", "--levels", "1", "2"]),
    "inference": (
        [],
        [
            "--images",
            "1",
            "--reloads",
            "1",
            "--png-size",
            "96",
            "--size",
            "64",
            "--no-compile",
            "--model",
            '{"encoder": "tu-test_efficientnet", "encoder_weights": null, "decoder": "unet"}',
        ],
    ),
    "gpu": ([], []),
    "dedup_busi": ([], []),  # needs BUS_REAL_DATA; prints a skip line without it
    "anchor_protocol": ([], []),  # needs --run RUN_DIR (a train run); prints a skip line without it
    "grad_balance": (
        ["--variant", "cbam", "model.attention=cbam", "--variant", "none", "model.attention=none"],
        [
            "--variant",
            "cbam",
            "model.attention=cbam",
            "--variant",
            "none",
            "model.attention=none",
            "--set",
            "model.encoder=tu-test_efficientnet",
            "--size",
            "64",
            "--n-per-class",
            "4",
            "4",
            "4",
            "--per-class",
            "2",
            "--seeds",
            "0",
        ],
    ),
    "cpu_speed": (
        [],
        [
            "--steps",
            "1",
            "--rounds",
            "1",
            "--infer-repeats",
            "1",
            "--batch",
            "4",
            "--size",
            "32",
            "--n-per-class",
            "6",
            "10",
            "8",
            "--encoder",
            "tu-test_efficientnet",
        ],
    ),
}


def result_line(name: str, output: str) -> str:
    """The benchmark's ``RESULT`` line, else its last non-empty line."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    results = [ln for ln in lines if ln.startswith("RESULT ")]
    if results:
        return results[-1]
    return f"RESULT {name} (no RESULT line; last line): {lines[-1] if lines else '(no output)'}"


def run_one(name: str, args: list[str], out: str | None) -> tuple[int, float, str]:
    """Run one benchmark, echoing its output; its exit status, wall seconds and result line."""
    cmd = [sys.executable, "-m", f"benchmarks.{name}", *args]
    if out:
        cmd += ["--out", out]
    print(f"\n$ {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=common.ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    captured = []
    assert proc.stdout is not None
    for line in proc.stdout:
        captured.append(line)
        sys.stdout.write(line)
        sys.stdout.flush()
    status = proc.wait()
    return status, time.perf_counter() - start, result_line(name, "".join(captured))


def table(folder: str | Path | None = None) -> str:
    """The markdown result table of ``docs/benchmarks.md`` from the recorded JSON files."""
    import json

    rows = ["| benchmark | compared | figure (ratio) | machine | load | date |", "|---|---|---|---|---|---|"]
    for path in sorted(Path(folder or common.RESULTS_DIR).glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        m = doc["machine"]
        machine = f"{m['cpu_count']} cores, {', '.join(m['gpus']) or 'no GPU'}, torch {m['torch']}"
        load = f"{m['load_average']} / {doc.get('load_average_after')}"
        cells = [doc["benchmark"], doc["compared"], doc["ratio"], machine, load, doc["date"][:10]]
        rows.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(rows)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    p.add_argument("--skip", nargs="+", choices=list(BENCHMARKS), default=[], help="leave these out")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that each benchmark runs")
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    p.add_argument("--table", action="store_true", help="print the markdown table of the recorded results")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.table:
        print(table(args.out))
        return 0
    common.bench_env()
    names = [n for n in (args.only or BENCHMARKS) if n not in args.skip]
    print(f"benchmarks: {', '.join(names)}{' (quick sizes)' if args.quick else ''}")
    print(f"machine: {common.machine_line()}")
    start = time.perf_counter()
    summary = []
    for name in names:
        full, quick = BENCHMARKS[name]
        status, seconds, line = run_one(name, quick if args.quick else full, args.out)
        summary.append((name, status, seconds, line))
    total = time.perf_counter() - start
    print(f"\n=== summary ({total / 60:.1f} min in total; load average now {common.load_average()}) ===")
    for name, status, seconds, line in summary:
        mark = "ok" if status == 0 else f"FAILED (exit {status})"
        print(f"{name:17s} {seconds:6.0f} s  {mark}\n    {line}")
    return 0 if all(status == 0 for _, status, _, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(common.main_guard(main))

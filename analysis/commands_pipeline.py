"""``launch.py pipeline THESIS.yaml [--data DIR] [--storage DIR] [--name N] [--smoke] [--rerun-stage S]
[--address A]``: the thesis study as one resumable command (see analysis/pipeline.py, docs/pipeline.md).

Exit status: 0 done; 1 a stage or the refit failed (every trial errored, a non-finite loss); 2 bad input
(an invalid pipeline or stage spec, a changed stage without ``--rerun-stage``, a missing data folder).
"""

from __future__ import annotations

import argparse
import sys

OK, FAILED, BAD_INPUT = 0, 1, 2


def cmd_pipeline(args: argparse.Namespace) -> int:
    """Run or continue the pipeline; print where its report is."""
    from analysis.pipeline import run_pipeline
    from analysis.pipeline_config import PipelineError, PipelineInputError
    from analysis.pipeline_state import StageChangedError
    from analysis.refit import RefitError
    from search.resources import ResourceError
    from search.tuner import ExperimentError
    from trainables.data.errors import DataError
    from trainables.loop import NonFiniteLossError
    from trainables.schema import SpecError

    try:
        run = run_pipeline(
            args.thesis,
            data=getattr(args, "data", None),
            storage=getattr(args, "storage", None) or "runs/pipeline",
            name=getattr(args, "name", None),
            smoke=bool(getattr(args, "smoke", False)),
            rerun_stages=list(getattr(args, "rerun_stage", None) or []),
            address=getattr(args, "address", None),
        )
    except (SpecError, DataError, StageChangedError, PipelineInputError, ResourceError) as exc:
        source = getattr(exc, "source", None)
        print(f"error in {source}:\n{exc}" if source else f"error: {exc}", file=sys.stderr)
        return BAD_INPUT
    except (PipelineError, ExperimentError, RefitError, NonFiniteLossError) as exc:
        print(
            f"pipeline stopped: {exc}\n(fix the cause and run the same command again: finished stages are "
            "kept, an interrupted one resumes)",
            file=sys.stderr,
        )
        return FAILED
    refit = run.state.data.get("refit") or {}
    print(f"pipeline folder: {run.folder}")
    print(f"report:          {run.report}")
    print(f"record:          {run.state.path}")
    if refit.get("outputs", {}).get("bundle"):
        print(f"model bundle:    {refit['outputs']['bundle']}")
    return OK

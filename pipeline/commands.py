"""``launch.py pipeline THESIS.yaml [--data DIR] [--storage DIR] [--name N] [--smoke] [--rerun-stage S]
[--address A]``: the thesis study as one resumable command (see pipeline/run.py, docs/pipeline.md).

Exit status: 0 done; 1 a stage or the refit failed (every trial errored, a non-finite loss); 2 bad input
(an invalid pipeline or stage spec, a changed stage without ``--rerun-stage``, a missing data folder).

``launch.py schema [--pipeline]``: the JSON Schema of a spec, or of the pipeline file, for an editor. It
lives here because ``search`` may not import ``pipeline`` (the import order, docs/architecture.md).
"""

from __future__ import annotations

import argparse
import json


def cmd_pipeline(args: argparse.Namespace) -> int:
    """Run or continue the pipeline; print where its report is."""
    from analysis.refit import RefitError
    from pipeline.config import PipelineError
    from pipeline.run import run_pipeline
    from search import console
    from search.errors import ExperimentError
    from trainables.loop import NonFiniteLossError

    if getattr(args, "verbose", False):
        console.configure(verbose=True)  # every stage's search follows (BUS_VERBOSE)
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
    except (ExperimentError, RefitError, NonFiniteLossError) as exc:
        # raised by a stage's search, analysis or refit after the pipeline started: the pipeline stopped
        # there (exit 1, how to go on); bad input found before anything ran reaches launch.py as it is
        raise PipelineError(str(exc)) from exc
    refit = run.state.refit
    bundle = refit.result.outputs.get("bundle") if refit and refit.result else None
    print(f"pipeline folder: {run.folder}")
    print(f"report:          {run.report}")
    print(f"record:          {run.state.path}")
    if bundle:
        print(f"model bundle:    {bundle}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of a spec (``> spec.schema.json``), or with ``--pipeline`` that of the pipeline
    file (``> pipeline.schema.json``)."""
    if getattr(args, "pipeline", False):
        from pipeline.config import pipeline_json_schema

        schema = pipeline_json_schema()
    else:
        from search.config import spec_json_schema

        schema = spec_json_schema()
    print(json.dumps(schema, indent=2))
    return 0

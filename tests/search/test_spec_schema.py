"""``launch.py schema``: the JSON Schema an editor's YAML extension uses; every shipped spec passes it, and
it catches what an editor should flag as you type (unknown keys, choices, ranges)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import launch

ROOT = Path(__file__).resolve().parents[2]
# spaces/thesis.yaml is a pipeline file (stages of specs), not a spec; its stages are specs listed here.
SPECS = sorted(p for p in (ROOT / "spaces").glob("*.yaml") if "stages" not in yaml.safe_load(p.read_text()))


@pytest.fixture(scope="module")
def validator() -> Any:
    """A validator for the schema ``launch.py schema`` prints."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert launch.main(["schema"]) == 0
    schema = json.loads(out.getvalue())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_the_shipped_specs_are_listed() -> None:
    assert len(SPECS) >= 10 and ROOT / "spaces" / "busi_cpu.yaml" in SPECS


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_shipped_spec_validates_against_the_schema(validator: Any, path: Path) -> None:
    errors = [
        f"{'.'.join(map(str, e.path))}: {e.message}"
        for e in validator.iter_errors(yaml.safe_load(path.read_text()))
    ]
    assert not errors, errors


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"model": {"decodr": "unet"}}, "Additional properties"),
        ({"train": {"optimizer": "adam"}}, "is not one of"),
        ({"train": {"lr": 0}}, "less than or equal to the minimum"),
        ({"data": {"folds": 1}}, "less than the minimum"),
        ({"search": {"scheduler": {"type": "asha", "grace_period": 0}}}, "less than the minimum"),
        ({"train": {"augment": {"scale": [0.9]}}}, "is too short"),
    ],
)
def test_the_schema_flags_what_the_validator_rejects(validator: Any, data: dict, fragment: str) -> None:
    messages = [e.message for e in validator.iter_errors(data)]
    assert any(fragment in m for m in messages), messages


def test_fields_carry_their_descriptions(validator: Any) -> None:
    defs = validator.schema["$defs"]
    assert "NSD tolerance" in defs["TrainConfig"]["properties"]["tau"]["description"]
    assert defs["TrainConfig"]["properties"]["optimizer"]["enum"] == ["adamw", "sgd"]

"""``launch.py schema --pipeline``: the JSON Schema of the pipeline file for an editor's YAML extension.
spaces/thesis.yaml passes it (it fails the spec schema), and it flags what the pipeline validator rejects in
a stage entry, the refit and the smoke settings."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from typing import Any

import jsonschema
import pytest
import yaml

import launch
from pipeline.config import PipelineConfig, pipeline_json_schema
from search.config import spec_json_schema
from tests.pipeline.helpers import THESIS
from trainables.schema import SpecError, from_dict


def _printed(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert launch.main(argv) == 0
    return out.getvalue()


def _validator(schema: dict[str, Any]) -> Any:
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)  # raises SchemaError when the schema itself is malformed
    return cls(schema)


def _errors(validator: Any, data: Any) -> list[str]:
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(data)]


@pytest.fixture(scope="module")
def validator() -> Any:
    """A validator for the schema ``launch.py schema --pipeline`` prints."""
    return _validator(json.loads(_printed(["schema", "--pipeline"])))


@pytest.fixture()
def thesis() -> dict[str, Any]:
    return yaml.safe_load(THESIS.read_text(encoding="utf-8"))


def test_the_verb_prints_the_spec_schema_and_with_pipeline_the_pipeline_schema() -> None:
    assert _printed(["schema"]) == json.dumps(spec_json_schema(), indent=2) + "\n"
    printed = json.loads(_printed(["schema", "--pipeline"]))
    assert printed == pipeline_json_schema()
    assert printed["title"] == "bus-search pipeline" and printed["required"] == ["name", "stages"]
    assert set(printed["properties"]) == {f.name for f in PipelineConfig.__dataclass_fields__.values()}


def test_thesis_validates_against_the_pipeline_schema(validator: Any, thesis: dict[str, Any]) -> None:
    assert len(thesis["stages"]) == 5
    assert _errors(validator, thesis) == []


def test_thesis_fails_the_spec_schema_so_it_needs_its_own(thesis: dict[str, Any]) -> None:
    errors = _errors(_validator(spec_json_schema()), thesis)
    assert any("'stages'" in e and "Additional properties" in e for e in errors), errors


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    """``_set(d, "stages.1.inherit.from", v)``; a value of ``...`` deletes the key."""
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
    for key in keys[:-1]:
        data = data[key]
    if value is ...:
        del data[keys[-1]]
    else:
        data[keys[-1]] = value


BAD = [
    # (dotted path to change, value, where the schema reports it, message fragment)
    ("stages.1.rank_bye", "macro_f1", "stages.1", "'rank_bye' was unexpected"),
    ("stages.1.name", 3, "stages.1.name", "is not of type 'string'"),
    ("stages.1.spec", ["stage2_decoders.yaml"], "stages.1.spec", "is not of type 'string'"),
    ("stages.1.spec", ..., "stages.1", "'spec' is a required property"),
    ("stages.1.inherit", {"form": "stage1_encoders", "fields": ["model.encoder"]}, "stages.1.inherit", ""),
    ("stages.1.inherit.fields", [], "stages.1.inherit", ""),
    ("stages.1.inherit.fields", "model.encoder", "stages.1.inherit", ""),
    ("stages.0", "stage1_encoders.yaml", "stages.0", "is not of type 'object'"),
    ("refit.n_boot", 0, "refit.n_boot", "less than the minimum of 1"),
    ("refit.epochs", [10], "refit.epochs", "is not valid under any of the given schemas"),
    ("smoke.grid_values", "two", "smoke.grid_values", "is not of type 'integer'"),
    ("smoke.encoder_stand_ins.resnet18", 1, "smoke.encoder_stand_ins.resnet18", "is not of type 'string'"),
    ("stagez", [], "", "'stagez' was unexpected"),
    ("stages", ..., "", "'stages' is a required property"),
]


@pytest.mark.parametrize(("path", "value", "where", "fragment"), BAD, ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_the_schema_flags_what_the_validator_rejects(
    validator: Any, thesis: dict[str, Any], path: str, value: Any, where: str, fragment: str
) -> None:
    data = copy.deepcopy(thesis)
    _set(data, path, value)
    errors = _errors(validator, data)
    assert any(e.startswith(f"{where}: ") and fragment in e for e in errors), errors
    with pytest.raises(SpecError):  # the schema flags no more than the pipeline validator rejects
        from_dict(PipelineConfig, data)


def test_fields_carry_their_descriptions(validator: Any) -> None:
    stage = validator.schema["$defs"]["StageEntry"]
    assert stage["additionalProperties"] is False and stage["required"] == ["name", "spec"]
    assert "relative to the pipeline file" in stage["properties"]["spec"]["description"]
    assert "95% CIs" in validator.schema["$defs"]["RefitSection"]["properties"]["n_boot"]["description"]

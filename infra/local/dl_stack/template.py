"""CloudFormation templates as Python data: YAML (with the short tags) or JSON, and the
rule that maps a template's names to environment variable names."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from dl_stack.report import StackError


def _yaml() -> Any:
    try:
        import yaml
    except ImportError as e:  # pragma: no cover - depends on the venv
        raise StackError("PyYAML is needed to read YAML templates: pip install pyyaml") from e
    return yaml


def _cfn_loader() -> Any:
    """A SafeLoader that turns CloudFormation short tags into their long JSON form."""
    yaml = _yaml()

    class CfnLoader(yaml.SafeLoader):  # type: ignore[name-defined]
        pass

    # CloudFormation keeps 2010-09-09 a string
    CfnLoader.yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct(loader: Any, tag_suffix: str, node: Any) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if tag_suffix == "Ref":
            return {"Ref": value}
        if tag_suffix == "Condition":
            return {"Condition": value}
        if tag_suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{tag_suffix}": value}

    CfnLoader.add_multi_constructor("!", construct)
    return CfnLoader


def load_template(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A template file as the JSON form CloudFormation gets (short tags spelled out)."""
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        return json.loads(text)
    return _load_yaml_text(text)


def _load_yaml_text(text: str) -> Any:
    return _yaml().load(text, Loader=_cfn_loader())


def load_doc(path: Path) -> Any:
    """A JSON or YAML document (a state machine, an OpenAPI file) as Python data."""
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except ValueError:
        return _load_yaml_text(text)


def upper_snake(name: str) -> str:
    """``DatabaseUrl`` -> ``DATABASE_URL``: a parameter's or output's environment name."""
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return re.sub(r"[^A-Za-z0-9]+", "_", s).strip("_").upper()


"""infra/template.yaml has no reference cycle between resources, before the SAM transform.

AWS accepts one when the transform breaks it (a DeploymentPreference's Alarms move to the
CodeDeploy deployment group), but LocalStack's CloudFormation walks the references of the
untransformed template and recurses on a cycle without end: CreateStack never answers and
UpdateStack fails with "maximum recursion depth exceeded". Both branches of an Fn::If
count, because LocalStack's change-set diff walks both.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_SUB_VAR = re.compile(r"\$\{([^}!][^}]*)\}")


def _template() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "infra" / "local"))
    try:
        import stack

        return stack.load_template(ROOT / "infra" / "template.yaml")
    finally:
        sys.path.pop(0)


def references(node: Any) -> set[str]:
    """Logical ids named by Ref, Fn::GetAtt and Fn::Sub anywhere in ``node``.

    SAM's ``!Ref Function.Alias`` / ``.Version`` name the function.
    """
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value.split(".")[0])
            elif key == "Fn::GetAtt":
                found.add(value.split(".")[0] if isinstance(value, str) else str(value[0]))
            elif key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else value
                names = {m.split(".")[0] for m in _SUB_VAR.findall(text)}
                found |= names - set(variables)
                found |= references(variables)
            else:
                found |= references(value)
    elif isinstance(node, list):
        for item in node:
            found |= references(item)
    return found


def dependency_graph(tpl: dict[str, Any]) -> dict[str, set[str]]:
    resources = tpl["Resources"]
    global_refs = references(tpl.get("Globals") or {})
    graph: dict[str, set[str]] = {}
    for name, res in resources.items():
        refs = references(res.get("Properties") or {})
        depends = res.get("DependsOn") or []
        refs |= {depends} if isinstance(depends, str) else set(depends)
        if res.get("Type") == "AWS::Serverless::Function":
            refs |= global_refs
        graph[name] = {r for r in refs if r in resources}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_checker_sees_a_cycle() -> None:
    tpl = {
        "Resources": {
            "Fn": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"DeploymentPreference": {"Alarms": [{"Ref": "Alarm"}]}},
            },
            "Alarm": {
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {"Dimensions": [{"Value": {"Fn::Sub": "${Fn}"}}]},
            },
        }
    }
    assert find_cycle(dependency_graph(tpl)) == ["Alarm", "Fn", "Alarm"]


def test_no_reference_cycle_in_the_untransformed_template() -> None:
    assert find_cycle(dependency_graph(_template())) is None

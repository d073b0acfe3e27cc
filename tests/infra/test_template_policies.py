"""infra/template.yaml grants no IAM action on '*' except where AWS allows nothing else,
and keeps its concurrency caps as parameters."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: Actions AWS authorises on "*" only (CloudWatch Logs delivery, X-Ray).
STAR_ONLY = ("logs:", "xray:")


def _template() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "infra" / "local"))
    try:
        import stack

        return stack.load_template(ROOT / "infra" / "template.yaml")
    finally:
        sys.path.pop(0)


def _statements(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if "Effect" in node and "Action" in node:
            found.append(node)
        for v in node.values():
            found += _statements(v)
    elif isinstance(node, list):
        for v in node:
            found += _statements(v)
    return found


def test_no_action_on_star_but_those_aws_allows_on_star_only() -> None:
    tpl = _template()
    for st in _statements(tpl["Resources"]):
        resources = st.get("Resource")
        resources = resources if isinstance(resources, list) else [resources]
        if "*" in resources and st["Effect"] == "Allow":
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            assert all(a.startswith(STAR_ONLY) for a in actions), actions


def test_concurrency_caps_are_parameters_defaulting_to_five() -> None:
    tpl = _template()
    assert tpl["Parameters"]["WorkerConcurrency"]["Default"] == 5
    assert tpl["Parameters"]["BatchConcurrency"]["Default"] == 5
    worker = tpl["Resources"]["IngestBatchFunction"]["Properties"]
    scaling = worker["Events"]["Batches"]["Properties"]["ScalingConfig"]
    assert scaling["MaximumConcurrency"] == {"Ref": "WorkerConcurrency"}
    plan_env = tpl["Resources"]["PlanFunction"]["Properties"]["Environment"]["Variables"]
    assert plan_env["DATALAKE_MAP_CONCURRENCY"] == {"Ref": "BatchConcurrency"}
    asl = (ROOT / "infra" / "ingest_job.asl.json").read_text()
    assert '"MaxConcurrencyPath": "$.plan.max_concurrency"' in asl


def test_no_secret_in_plain_environment_variables() -> None:
    tpl = _template()
    env = tpl["Globals"]["Function"]["Environment"]["Variables"]
    assert "DATALAKE_JWT_SECRET" not in env
    assert "JwtSecret" not in tpl["Parameters"]
    assert tpl["Resources"]["JwtSecret"]["Type"] == "AWS::SecretsManager::Secret"


def _glue_actions(policy: dict[str, Any]) -> set[str]:
    return {a for st in _statements(policy) for a in st["Action"]}


def test_glue_permissions_only_with_the_glue_catalog_and_only_on_named_databases() -> None:
    tpl = _template()
    cond = tpl["Conditions"]["UsesGlue"]["Fn::And"]
    assert {"Fn::Equals": [{"Ref": "IcebergCatalog"}, "glue"]} in cond
    assert tpl["Parameters"]["IcebergCatalog"]["Default"] == "sql"
    res = tpl["Resources"]
    for name in ("GlueCatalogPolicy", "GlueReadPolicy"):
        assert res[name]["Condition"] == "UsesGlue"
        text = str(res[name]["Properties"]["PolicyDocument"])
        # no database or table of the account beyond those named
        assert "database/*" not in text and "table/*/" not in text, name
        assert "GlueDatabaseNames" in text
    assert _glue_actions(res["GlueReadPolicy"]) == {"glue:GetTable"}
    attached = {
        fn: [p for p in r["Properties"].get("Policies", []) if "Glue" in str(p)]
        for fn, r in res.items()
        if r["Type"] == "AWS::Serverless::Function"
    }
    writer = [{"Fn::If": ["UsesGlue", {"Ref": "GlueCatalogPolicy"}, {"Ref": "AWS::NoValue"}]}]
    reader = [{"Fn::If": ["UsesGlue", {"Ref": "GlueReadPolicy"}, {"Ref": "AWS::NoValue"}]}]
    assert {fn for fn, p in attached.items() if p} == {
        "CommitFunction", "AbortFunction", "OptimizeFunction", "ApiFunction"
    }
    for fn in ("CommitFunction", "AbortFunction", "OptimizeFunction"):
        assert attached[fn] == writer, fn
    assert attached["ApiFunction"] == reader


def glue_policy_actions() -> tuple[set[str], set[str]]:
    """(publishing functions' Glue actions, the API's), as the template grants them."""
    res = _template()["Resources"]
    return _glue_actions(res["GlueCatalogPolicy"]), _glue_actions(res["GlueReadPolicy"])


def test_every_dead_letter_queue_has_an_alarm_notifying_the_topic() -> None:
    res = _template()["Resources"]
    dlqs = {n for n, r in res.items() if r["Type"] == "AWS::SQS::Queue" and "DeadLetter" in n}
    alarmed = {
        d["Value"]["Fn::GetAtt"][0]
        for r in res.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        for d in r["Properties"].get("Dimensions", [])
        if d["Name"] == "QueueName"
    }
    assert dlqs == {"BatchDeadLetterQueue", "TriggerDeadLetterQueue", "OptimizeDeadLetterQueue"}
    assert dlqs <= alarmed, dlqs - alarmed


def test_every_function_logs_to_a_log_group_of_the_stack_with_retention() -> None:
    """Lambda's own /aws/lambda/<name> group keeps every line forever: each function logs
    to a group the stack owns, whose retention is the LogRetentionDays parameter."""
    res = _template()["Resources"]
    functions = [k for k, v in res.items() if v["Type"] == "AWS::Serverless::Function"]
    assert len(functions) >= 8, functions
    for name in functions:
        ref = res[name]["Properties"].get("LoggingConfig", {}).get("LogGroup")
        assert isinstance(ref, dict) and "Ref" in ref, f"{name} logs to Lambda's own group"
        group = res[ref["Ref"]]
        assert group["Type"] == "AWS::Logs::LogGroup", name
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name


def test_the_failed_job_and_rejected_ratio_alarms_read_the_metrics_jobs_emit() -> None:
    """The names here are the ones aws/observability.py emits (tests/functional/
    test_observability.py checks the emitting side)."""
    res = _template()["Resources"]
    failed = res["FailedJobsAlarm"]["Properties"]
    assert (failed["Namespace"], failed["MetricName"]) == ("Datalake", "JobsFailed")
    assert failed["Dimensions"] == [{"Name": "service", "Value": "datalake"}]
    (query,) = res["RejectedRatioAlarm"]["Properties"]["Metrics"]
    assert "JobRejectedRatioBreached" in query["Expression"]
    assert "FROM SCHEMA(Datalake" in query["Expression"]
    for alarm in ("FailedJobsAlarm", "RejectedRatioAlarm"):
        assert "AlarmActions" in res[alarm]["Properties"], alarm

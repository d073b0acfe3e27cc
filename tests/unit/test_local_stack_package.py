"""The local stack's pure pieces (infra/local/dl_stack): local.env, parameters, packaging."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra" / "local"))

from dl_stack import deploy, envfile, package  # noqa: E402
from dl_stack.report import StackError  # noqa: E402
from dl_stack.settings import ENDPOINT  # noqa: E402


class FakeUploader:
    """Keeps what would go to the deploy bucket."""

    bucket = "deploy-bucket"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, name: str, data: bytes, ext: str) -> str:
        key = f"s/{name}-{len(self.objects)}{ext}"
        self.objects[key] = data
        return key


def test_local_env_keeps_earlier_extras_until_overridden(tmp_path: Path) -> None:
    path = tmp_path / "local.env"
    outputs = {"ApiUrl": "http://x/api", "UploadBucket": "up"}
    envfile.write_local_env({"DATALAKE_TOKEN": "t 1", "OTHER": "o"}, "s", path, outputs)
    env = envfile.write_local_env({"OTHER": "o2"}, "s", path, outputs)
    assert env["DATALAKE_TOKEN"] == "t 1"
    assert env["OTHER"] == "o2"
    assert env["DATALAKE_API_URL"] == "http://x/api"
    assert env["DATALAKE_UPLOAD_BUCKET"] == "up"
    assert envfile.read_local_env(path) == env


def test_local_env_refuses_a_name_that_is_not_a_variable(tmp_path: Path) -> None:
    with pytest.raises(StackError):
        envfile.write_local_env({"NOT-A-NAME": "x"}, "s", tmp_path / "local.env", {})


def test_parameters_come_from_arguments_then_prefixed_then_plain_environment() -> None:
    tpl = {"Parameters": {"DatabaseUrl": {}, "LogLevel": {}, "Stage": {}}}
    environ = {"DATALAKE_PARAM_LOG_LEVEL": "DEBUG", "LOG_LEVEL": "INFO", "DATABASE_URL": "db"}
    values = deploy.resolve_parameters(tpl, {"Stage": "v1"}, environ)
    assert values == {"DatabaseUrl": "db", "LogLevel": "DEBUG", "Stage": "v1"}
    with pytest.raises(StackError):
        deploy.resolve_parameters(tpl, {"Nope": "x"}, environ)


def test_an_aws_style_stage_url_becomes_localstacks_path_style_one() -> None:
    url = "https://abc123.execute-api.us-east-1.amazonaws.com/prod/api/?q=1"
    assert deploy.local_api_url(url) == f"{ENDPOINT}/_aws/execute-api/abc123/prod/api?q=1"
    assert deploy.local_api_url("http://elsewhere/x") == "http://elsewhere/x"


def _tree(root: Path) -> None:
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "pkg" / "__pycache__" / "m.cpython-313.pyc").write_bytes(b"x")
    (root / "pkg" / "m.py").write_text("X = 1\n")
    (root / "pkg.egg-info").mkdir()
    (root / "pkg.egg-info" / "PKG-INFO").write_text("x")
    (root / "app.py").write_text("def lambda_handler(e, c): return 1\n")


def test_a_zip_is_the_same_bytes_every_time_and_leaves_caches_out(tmp_path: Path) -> None:
    _tree(tmp_path)
    data = package._zip_dir(tmp_path, "python/")
    assert data == package._zip_dir(tmp_path, "python/")
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert names == ["python/app.py", "python/pkg/m.py"]


def test_packaging_uploads_each_local_folder_once_and_points_the_template_at_it(
    tmp_path: Path,
) -> None:
    _tree(tmp_path / "fn")
    (tmp_path / "layer").mkdir()
    (tmp_path / "layer" / "lib.py").write_text("")
    (tmp_path / "flow.asl.json").write_text(json.dumps({"StartAt": "A", "States": {}}))
    tpl = {
        "Resources": {
            "One": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "fn"}},
            "Two": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "fn"}},
            "Far": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "s3://b/k"}},
            "Lib": {"Type": "AWS::Serverless::LayerVersion", "Properties": {"ContentUri": "layer"}},
            "Flow": {
                "Type": "AWS::Serverless::StateMachine",
                "Properties": {"DefinitionUri": "flow.asl.json"},
            },
        }
    }
    up = FakeUploader()
    out = package.package_template(tpl, tmp_path, up)  # type: ignore[arg-type]
    res = out["Resources"]
    assert res["One"]["Properties"]["CodeUri"] == res["Two"]["Properties"]["CodeUri"]
    assert res["One"]["Properties"]["CodeUri"].startswith("s3://deploy-bucket/s/One-")
    assert res["Far"]["Properties"]["CodeUri"] == "s3://b/k"
    layer_key = res["Lib"]["Properties"]["ContentUri"].removeprefix("s3://deploy-bucket/")
    assert zipfile.ZipFile(io.BytesIO(up.objects[layer_key])).namelist() == ["python/lib.py"]
    flow = res["Flow"]["Properties"]["DefinitionUri"]
    assert json.loads(up.objects[flow["Key"]]) == {"StartAt": "A", "States": {}}
    assert len(up.objects) == 3
    assert tpl["Resources"]["One"]["Properties"]["CodeUri"] == "fn"


def test_stack_py_still_runs_as_a_command() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "infra" / "local" / "stack.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "up" in proc.stdout and "outputs" in proc.stdout

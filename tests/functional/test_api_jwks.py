"""RS256 tokens checked against a JWKS URL (as an Amazon Cognito user pool serves it),
with the roles taken from a configurable claim (Cognito: ``cognito:groups``)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.testclient import TestClient

from datalake import tokens
from datalake.config import get_settings
from datalake_api.main import create_app

ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TEST"


@pytest.fixture
def jwks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A JWKS endpoint on localhost serving one RSA key; yields the private key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    monkeypatch.setenv("DATALAKE_JWT_JWKS_URL", url)
    monkeypatch.setenv("DATALAKE_JWT_ISSUER", ISSUER)
    monkeypatch.setenv("DATALAKE_JWT_AUDIENCE", "")  # Cognito access tokens carry client_id
    monkeypatch.setenv("DATALAKE_JWT_ROLES_CLAIM", "cognito:groups")
    get_settings.cache_clear()
    tokens._jwks_client.cache_clear()
    try:
        yield key
    finally:
        server.shutdown()
        get_settings.cache_clear()
        tokens._jwks_client.cache_clear()


def _rs256(key: Any, groups: Any, kid: str = "k1", **over: Any) -> dict[str, str]:
    claims = {
        "sub": "cognito-user",
        "iss": ISSUER,
        "exp": int(time.time()) + 60,
        "client_id": "app",
        "cognito:groups": groups,
        **over,
    }
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})
    return {"Authorization": f"Bearer {token}"}


def test_cognito_style_tokens_are_checked_against_the_jwks(use_catalog: str, jwks: Any) -> None:
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        assert c.get("/api/v1/tables/", headers=_rs256(jwks, ["reader"])).status_code == 200
        assert c.get("/api/v1/audit", headers=_rs256(jwks, ["reader"])).status_code == 403
        assert c.get("/api/v1/audit", headers=_rs256(jwks, ["admin"])).status_code == 200
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert c.get("/api/v1/tables/", headers=_rs256(other, ["admin"])).status_code == 401
        assert (
            c.get("/api/v1/tables/", headers=_rs256(jwks, ["admin"], kid="nope")).status_code == 401
        )
        wrong_iss = _rs256(jwks, ["admin"], iss="https://elsewhere")
        assert c.get("/api/v1/tables/", headers=wrong_iss).status_code == 401
        assert c.get("/api/v1/tables/", headers=_rs256(jwks, ["root"])).status_code == 401
        # An HS256 token signed with the shared secret is not accepted in JWKS mode.
        hs = {
            "Authorization": "Bearer "
            + jwt.encode(
                {
                    "sub": "x",
                    "iss": ISSUER,
                    "exp": int(time.time()) + 60,
                    "cognito:groups": ["admin"],
                },
                "s" * 40,
                algorithm="HS256",
            )
        }
        assert c.get("/api/v1/tables/", headers=hs).status_code == 401

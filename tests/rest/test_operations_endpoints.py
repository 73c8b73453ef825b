"""Operations basics: /healthz, /readyz, /metrics, request ids, no-store, and no leaks on a 500."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from healthbridge.app import create_app
from healthbridge.fhir.errors import Unavailable
from healthbridge.settings import Settings
from healthbridge.store.memory import MemoryRepository
from healthbridge.store.repository import Repository


def test_health_ready_metrics(memory_client: TestClient) -> None:
    assert memory_client.get("/healthz").json() == {"status": "ok"}
    assert memory_client.get("/readyz").json() == {"status": "ready"}
    memory_client.get("/fhir/metadata")
    metrics = memory_client.get("/metrics").text
    assert "healthbridge_http_requests_total" in metrics
    assert 'status="200"' in metrics


def test_request_id_is_echoed_or_made(memory_client: TestClient) -> None:
    given = memory_client.get("/fhir/metadata", headers={"X-Request-Id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = memory_client.get("/fhir/metadata", headers={"X-Request-Id": "bad id!"})
    assert made.headers["x-request-id"] not in ("", "bad id!")


def test_unknown_path_and_no_store(memory_client: TestClient) -> None:
    response = memory_client.get("/nothing-here")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"
    assert memory_client.get("/fhir/Patient/x").headers["cache-control"] == "no-store"


class _Broken(MemoryRepository):
    async def read(self, resource_type: str, id: str) -> object:  # type: ignore[override]
        raise RuntimeError("secret /srv/db.py SELECT * FROM resource")


def test_unexpected_error_is_a_clean_500(tmp_path: Path) -> None:
    async def factory() -> Repository:
        return _Broken()

    app = create_app(
        Settings(data_dir=tmp_path, access_log=False, no_auth=True), repository_factory=factory
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/fhir/Patient/abc")
        assert response.status_code == 500
        body = response.text
        assert "secret" not in body and "SELECT" not in body and ".py" not in body
        assert response.json()["resourceType"] == "OperationOutcome"
        assert response.headers["x-request-id"] in body


class _Down(MemoryRepository):
    async def read(self, resource_type: str, id: str) -> object:  # type: ignore[override]
        raise Unavailable("The database did not answer; try again shortly")

    async def ping(self) -> None:
        raise Unavailable("down")


def test_database_down_is_503_and_not_ready(tmp_path: Path) -> None:
    async def factory() -> Repository:
        return _Down()

    app = create_app(
        Settings(data_dir=tmp_path, access_log=False, no_auth=True), repository_factory=factory
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/fhir/Patient/abc")
        assert response.status_code == 503
        assert response.json()["issue"][0]["code"] == "transient"
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200

"""Migrations: `agentbilling db upgrade` from the CLI, /readyz before and after, and that the
Alembic migrations build exactly the schema the code declares (storage.tables.metadata)."""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import Column, MetaData, String, Table, create_engine, inspect, text
from sqlalchemy.engine import make_url

from agentbilling.api.app import create_app
from agentbilling.client import Billing, connect
from agentbilling.clock import TestClock
from agentbilling.settings import Settings
from agentbilling.storage import migrate
from agentbilling.storage.db import Database
from agentbilling.storage.tables import metadata
from tests.support.service import OPERATOR_KEY, START, backend

CLI = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "agentbilling"
PROBLEM_JSON = "application/problem+json"
TABLES = {t.name for t in metadata.sorted_tables}


def db_upgrade(database_url: str) -> subprocess.CompletedProcess[str]:
    """`agentbilling db upgrade` as an operator runs it: a separate process, configured by env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBILLING_")}
    env["AGENTBILLING_DATABASE_URL"] = database_url
    return subprocess.run([str(CLI), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120)


def assert_upgraded(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Database is at revision {migrate.head_revision()}." in result.stdout


def revision_of(database_url: str) -> str | None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def table_names(database_url: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def service_on(database_url: str) -> Billing:
    settings = Settings(database_url=database_url, operator_key=OPERATOR_KEY, secret_key="s", test_clock=True)
    return connect(settings, clock=TestClock(START), upgrade=False)


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (only when the run is on PostgreSQL)."""
    if backend() != "postgresql":
        pytest.skip("PostgreSQL only (AGENTBILLING_TEST_DATABASE_URL)")
    admin_url = make_url(os.environ["AGENTBILLING_TEST_DATABASE_URL"]).set(drivername="postgresql+psycopg")
    name = f"agentbilling_empty_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return request.getfixturevalue("empty_postgres")


# -- the CLI ---------------------------------------------------------------------------------

def test_the_migrations_have_one_head():
    heads = ScriptDirectory.from_config(migrate.alembic_config()).get_heads()
    assert heads == [migrate.head_revision()]


@pytest.mark.parametrize("empty_database", ["sqlite", "postgresql"], indirect=True)
def test_db_upgrade_builds_the_schema_on_an_empty_database_and_again_is_a_no_op(empty_database: str):
    assert revision_of(empty_database) is None
    assert_upgraded(db_upgrade(empty_database))
    assert revision_of(empty_database) == migrate.head_revision()
    assert TABLES <= table_names(empty_database)

    service = service_on(empty_database)
    try:
        service.create_tenant("kept", "Kept", "billing@kept.test")
        assert service.open_session("kept", "conv-1", agent_id="a", direction="inbound").session is not None
    finally:
        service.close()

    assert_upgraded(db_upgrade(empty_database))  # again: nothing to do, nothing lost
    assert revision_of(empty_database) == migrate.head_revision()
    service = service_on(empty_database)
    try:
        assert service.get_tenant("kept").name == "Kept"
        assert service.billing_view("kept").cards[0].sessions_count == 1
    finally:
        service.close()


def test_db_upgrade_on_the_migrated_test_database_is_a_no_op(database_url: str, billing: Billing):
    billing.create_tenant("acme", "Acme", "billing@acme.test")
    billing.open_session("acme", "conv-1", agent_id="a", direction="inbound")
    before = revision_of(database_url)
    assert before == migrate.head_revision()

    assert_upgraded(db_upgrade(database_url))

    assert revision_of(database_url) == before
    assert billing.get_tenant("acme").billing_email == "billing@acme.test"
    assert billing.get_session("acme", "conv-1").billable_sessions == 1
    assert billing.billing_view("acme").cards[0].sessions_count == 1


def test_db_upgrade_fails_loudly_when_the_database_cannot_be_opened(tmp_path: Path):
    result = db_upgrade(f"sqlite:///{tmp_path / 'no-such-folder' / 'x.db'}")
    assert result.returncode != 0
    assert "Database is at revision" not in result.stdout
    assert "unable to open database file" in result.stdout + result.stderr


# -- /readyz --------------------------------------------------------------------------------

def test_readyz_is_200_on_a_migrated_database(client: TestClient):
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready"}


@pytest.mark.parametrize("empty_database", ["sqlite", "postgresql"], indirect=True)
def test_readyz_is_503_until_the_database_is_migrated(empty_database: str):
    if empty_database.startswith("sqlite"):
        Path(make_url(empty_database).database).touch()  # an empty file, as a new deployment has
    service = service_on(empty_database)
    try:
        with TestClient(create_app(service)) as client:
            assert client.get("/livez").status_code == 200  # up, but not ready
            r = client.get("/readyz")
            assert r.status_code == 503
            assert r.headers["content-type"].startswith(PROBLEM_JSON)
            problem = r.json()
            assert problem["type"].endswith("/not-ready")
            assert problem["status"] == 503
            assert "agentbilling db upgrade" in problem["detail"]

            # The operator migrates from the CLI; the running service becomes ready without a restart.
            assert_upgraded(db_upgrade(empty_database))
            r = client.get("/readyz")
            assert r.status_code == 200, r.text
            assert r.json() == {"status": "ready"}
    finally:
        service.close()


@pytest.mark.parametrize("url", ["postgresql+psycopg://postgres@127.0.0.1:1/nowhere"],  # nothing listens on port 1
                         ids=["postgresql-unreachable"])
def test_readyz_is_503_when_the_database_does_not_answer(url: str):
    service = service_on(url)
    try:
        with TestClient(create_app(service)) as client:
            assert client.get("/livez").status_code == 200
            r = client.get("/readyz")
            assert r.status_code == 503
            assert r.headers["content-type"].startswith(PROBLEM_JSON)
            problem = r.json()
            assert problem["type"].endswith("/not-ready")
            assert problem["detail"].startswith("The database does not answer")
    finally:
        service.close()


def test_a_sqlite_file_that_cannot_be_opened_yet_crashes_no_background_thread(tmp_path: Path, monkeypatch):
    """A deployment whose volume is not mounted yet: not ready (503), then ready once it is, and
    the service's own threads (the WAL checkpointer) must still be running then, since the
    request connections leave checkpoints to them."""
    crashed: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", crashed.append)
    folder = tmp_path / "volume"
    url = f"sqlite:///{folder / 'agentbilling.db'}"
    service = service_on(url)
    try:
        with TestClient(create_app(service)) as client:
            r = client.get("/readyz")
            assert r.status_code == 503
            assert r.json()["detail"].startswith("The database does not answer")
            folder.mkdir()
            assert_upgraded(db_upgrade(url))
            assert client.get("/readyz").status_code == 200
    finally:
        service.close()  # stops and joins the service's threads
    assert [f"{a.thread.name if a.thread else '?'}: {a.exc_value!r}" for a in crashed] == []


# -- the model and the migrations agree ----------------------------------------------------------

def schema_differences(database_url: str) -> list:
    db = Database(database_url)
    try:
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            return compare_metadata(context, metadata)
    finally:
        db.dispose()


def test_the_migrated_schema_matches_the_model(database_url: str):
    assert revision_of(database_url) == migrate.head_revision()
    diffs = schema_differences(database_url)
    assert diffs == [], diffs


def test_the_comparison_sees_a_model_that_drifted_from_the_migrations(database_url: str):
    """The check above is not vacuous: a column type, a new column and a new table all show."""
    drifted = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["tenants"].append_column(Column("region", String(16)))
    Table("refunds", drifted, Column("id", String(40), primary_key=True))
    sessions = drifted.tables["sessions"]
    sessions.c.agent_id.type = String(100)
    db = Database(database_url)
    try:
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = compare_metadata(context, drifted)
    finally:
        db.dispose()
    flat = [d if isinstance(d, tuple) else d[0] for d in diffs]
    kinds = {(d[0], d[3] if d[0] == "modify_type" else None) for d in flat}
    assert ("add_table", None) in kinds
    assert ("add_column", None) in kinds
    assert ("modify_type", "agent_id") in kinds


@pytest.mark.parametrize("empty_database", ["sqlite", "postgresql"], indirect=True)
def test_downgrade_to_base_and_upgrade_again_round_trips(empty_database: str):
    db = Database(empty_database)
    try:
        migrate.upgrade(db)
        cfg = migrate.alembic_config()
        with db.write() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert not (TABLES & table_names(empty_database))
        migrate.upgrade(db)
    finally:
        db.dispose()
    assert revision_of(empty_database) == migrate.head_revision()
    assert schema_differences(empty_database) == []

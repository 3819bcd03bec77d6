"""The shared fixtures (a pytest plugin, registered in tests/conftest.py): a real database (SQLite
file or PostgreSQL), the service on a test clock, HTTP clients.

The database comes from AGENTBILLING_TEST_DATABASE_URL: unset means SQLite files in a temporary
folder; a PostgreSQL URL (postgresql+psycopg://postgres@127.0.0.1:5432/postgres) means a fresh
database is created for this run and dropped after it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from agentbilling.api.app import create_app
from agentbilling.client import Billing, connect
from agentbilling.clock import TestClock
from agentbilling.settings import Settings
from agentbilling.storage import migrate
from agentbilling.storage.db import Database
from agentbilling.storage.tables import metadata
from tests.support.service import OPERATOR_KEY, START, LiveServer, backend

# Emails of services built without an SMTP server go to a folder of this run, never the work tree.
os.environ.setdefault("AGENTBILLING_OUTBOX_DIR", tempfile.mkdtemp(prefix="agentbilling-outbox-"))


def pytest_report_header(config: pytest.Config) -> str:
    return f"agentbilling test database: {backend()}"


@pytest.fixture(scope="session")
def db_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database for this run: a SQLite file to copy, or a fresh PostgreSQL database."""
    if backend() == "sqlite":
        path = tmp_path_factory.mktemp("template") / "template.db"
        db = Database(f"sqlite:///{path}")
        migrate.upgrade(db)
        db.dispose()
        yield str(path)
        return
    admin_url = make_url(os.environ["AGENTBILLING_TEST_DATABASE_URL"])
    name = f"agentbilling_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(admin_url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    db = Database(url)
    migrate.upgrade(db)
    db.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def database_url(db_template: str, tmp_path: Path) -> str:
    """An empty, migrated database for one test."""
    if backend() == "sqlite":
        path = tmp_path / "agentbilling.db"
        shutil.copyfile(db_template, path)
        return f"sqlite:///{path}"
    engine = create_engine(db_template)
    with engine.begin() as conn:
        names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {names} CASCADE"))
    engine.dispose()
    return db_template


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        operator_key=OPERATOR_KEY,
        secret_key="test-secret-key",
        test_clock=True,
        db_pool_size=8,
    )


@pytest.fixture
def clock() -> TestClock:
    return TestClock(START)


@pytest.fixture
def billing(settings: Settings, clock: TestClock) -> Iterator[Billing]:
    service = connect(settings, clock=clock, upgrade=False)
    yield service
    service.close()


@pytest.fixture
def tenant(billing: Billing) -> str:
    billing.create_tenant("acme", "Acme", "billing@acme.test")
    return "acme"


@pytest.fixture
def app(billing: Billing):
    return create_app(billing)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=True) as c:
        yield c


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30) as c:
        yield c

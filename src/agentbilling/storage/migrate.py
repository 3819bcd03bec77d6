"""Schema migrations with Alembic, from code: upgrade to head, and whether a database is current."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from agentbilling.storage.db import Database

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def upgrade(db: Database) -> None:
    cfg = alembic_config()
    with db.write() as conn:
        if not db.is_sqlite:
            # A migration may rightly take longer than a request: no statement timeout, no watchdog.
            conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
            if db.watchdog is not None:
                db.watchdog.release(conn.connection.dbapi_connection)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def is_current(conn: Connection) -> bool:
    return MigrationContext.configure(conn).get_current_revision() == head_revision()

"""The `agentbilling` command: serve, run the demo, migrate the database."""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

import typer
from sqlalchemy.engine import make_url

from agentbilling.catalog import CatalogError
from agentbilling.domain.errors import AlreadyExists
from agentbilling.settings import Settings

app = typer.Typer(help="agentbilling: the billing service of an AI-agent platform.", no_args_is_help=True)
db_app = typer.Typer(help="Database commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")

DEMO_TENANT = "demo"
DEMO_OWNER = "owner"


def _settings(**overrides: object) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except Exception as exc:
        typer.secho(f"Configuration error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None


MIN_SECRET_KEY = 32  # characters: the key signs API tokens, portal links and CSRF tokens


def _check_secret_key(settings: Settings) -> None:
    """A short secret key can be guessed and every link it signs forged: refuse to start. Unset is
    allowed for trying it out (a random key, with a warning, that a restart forgets)."""
    if settings.secret_key is not None and len(settings.secret_key) < MIN_SECRET_KEY:
        typer.secho(f"AGENTBILLING_SECRET_KEY is too short: it must be at least {MIN_SECRET_KEY} characters "
                    f"(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))').", fg="red", err=True)
        raise typer.Exit(2)


WAIT_CAP_S = 30.0  # the longest pause between two tries to reach the database at start


def _connect(settings: Settings):
    """The service, once its database answers: until then, one log line per try, with a pause
    that doubles up to WAIT_CAP_S (a database that starts after us, or is restarting), then the
    migrations."""
    import time

    from agentbilling.client import Billing, connect

    pause = 1.0
    while True:
        try:
            return connect(settings)
        except (CatalogError, ValueError) as exc:  # a bad catalog, or a provider without its settings
            typer.secho(str(exc), fg="red", err=True)
            raise typer.Exit(2) from None
        except Exception as exc:
            if not Billing.unreachable(exc):
                raise
            reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
            logging.getLogger("agentbilling").warning(
                "the database does not answer yet (%s); trying again in %gs", reason[:200], pause)
            time.sleep(pause)
            pause = min(pause * 2, WAIT_CAP_S)


def _serve(service, host: str, port: int, worker: bool = True) -> None:
    import uvicorn

    from agentbilling.api.app import create_app
    from agentbilling.worker import Worker

    background = Worker(service, service.settings.worker_interval).start() if worker else None
    try:
        uvicorn.run(create_app(service), host=host, port=port, log_level="info", access_log=False)
    finally:
        if background is not None:
            background.stop()


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    worker: bool = typer.Option(True, help="Run a worker in this process (renewals, charges, due changes)."),
) -> None:
    """Migrate the database, then serve the API, the Billing tab and (unless --no-worker) a worker."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings()
    _check_secret_key(settings)
    if not settings.public_url:
        settings = settings.model_copy(update={"public_url": f"http://{host}:{port}"})
    typer.echo(f"agentbilling: database {make_url(settings.database_url).render_as_string()}")
    _serve(_connect(settings), host, port, worker)


@app.command("worker")
def worker_command(
    once: bool = typer.Option(False, help="One pass, then exit."),
) -> None:
    """Apply what comes due (renewals, charges, scheduled changes), pass after pass, every
    AGENTBILLING_WORKER_INTERVAL seconds. Several may run on one PostgreSQL database."""
    from agentbilling.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings()
    service = _connect(settings)
    worker = Worker(service, settings.worker_interval)
    typer.echo(f"agentbilling worker: database {make_url(settings.database_url).render_as_string()}, "
               f"a pass every {settings.worker_interval:g}s" + (" (once)" if once else ""))
    try:
        if once:
            worker.run_once()
        else:
            worker.run()
    except KeyboardInterrupt:
        pass
    finally:
        service.close()


def _demo_secrets(settings: Settings) -> dict[str, str]:
    """The demo's operator and secret keys, kept beside the database so restarts keep them."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        path = Path(url.database + ".secrets.json")
    else:
        path = Path(".agentbilling-secrets.json")
    if path.exists():
        return json.loads(path.read_text())
    made = {"operator_key": "op_" + secrets.token_urlsafe(24), "secret_key": secrets.token_urlsafe(32)}
    path.write_text(json.dumps(made, indent=2))
    path.chmod(0o600)
    return made


@app.command()
def demo(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
) -> None:
    """Serve with a demo tenant (owner user, API key) and print how to try it."""
    logging.basicConfig(level=logging.WARNING)
    settings = _settings()
    made = _demo_secrets(settings)
    settings = settings.model_copy(update={
        "operator_key": settings.operator_key or made["operator_key"],
        "secret_key": settings.secret_key or made["secret_key"],
        "public_url": settings.public_url or f"http://{host}:{port}",
    })
    service = _connect(settings)
    try:
        service.create_tenant(DEMO_TENANT, "Demo Tenant", "billing@demo.test")
        service.create_user(DEMO_TENANT, DEMO_OWNER, "owner@demo.test", "owner")
    except AlreadyExists:
        pass
    key = service.create_api_key(DEMO_TENANT).key
    token = service.issue_token(DEMO_TENANT, DEMO_OWNER).token
    base = settings.public_url
    typer.secho("\nagentbilling demo is starting", bold=True)
    typer.echo(f"  database        {make_url(settings.database_url).render_as_string()}")
    typer.echo(f"  operator key    {settings.operator_key}")
    typer.echo(f"  tenant API key  {key}   (tenant '{DEMO_TENANT}')")
    typer.echo(f"  owner token     {token}")
    if not settings.smtp_url:
        outbox = getattr(service.mailer, "folder", None)
        typer.echo(f"  emails          written to {outbox}/ (no AGENTBILLING_SMTP_URL)")
    typer.secho(f"\n  Billing tab:    {base}/billing/login?token={token}", fg="green")
    typer.echo(f"  API docs:       {base}/docs\n")
    typer.echo("Try it:")
    typer.echo(f"  curl -s -X POST {base}/v1/sessions -H 'Authorization: Bearer {key}' \\\n"
               "       -H 'Content-Type: application/json' -d '{\"id\":\"conv-1\",\"agent_id\":\"support\","
               "\"direction\":\"inbound\"}'")
    typer.echo(f"  curl -s {base}/v1/admission -H 'Authorization: Bearer {key}'")
    typer.echo(f"  curl -s {base}/v1/billing -H 'Authorization: Bearer {token}'")
    typer.echo(f"  curl -s -X POST {base}/v1/billing/checkout -H 'Authorization: Bearer {token}' \\\n"
               "       -H 'Content-Type: application/json' -d '{\"plan_id\":\"starter\"}'"
               "   # then open its url and pay with 4242 4242 4242 4242")
    typer.echo(f"  curl -s {base}/v1/plans -H 'Authorization: Bearer {settings.operator_key}'\n")
    _serve(service, host, port)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the latest schema, and nothing else."""
    from sqlalchemy.exc import OperationalError

    from agentbilling.bootstrap import upgrade_database

    settings = _settings()
    try:
        head = upgrade_database(settings.database_url)
    except OperationalError as exc:
        typer.secho(f"Cannot migrate {make_url(settings.database_url).render_as_string()}: {exc.orig}",
                    fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"Database is at revision {head}.")


if __name__ == "__main__":
    app()

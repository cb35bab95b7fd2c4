"""The `quill` command line: serve, migrate, seed, create-superuser, export-schema, check-schema.

quill serve --workers 4            uvicorn with N worker processes (PostgreSQL for more than one)
quill migrate                      alembic upgrade head (the release step of a deployment)
quill seed [--users N ...]         demo data into an empty database; see db/seed.py
quill create-superuser --email a@b.c --username root     (the password is asked for)
quill superuser --username ada --revoke   take back (or --grant) superuser rights; ends their tokens
quill export-schema [-o schema.graphql]
quill check-schema                 breaking changes between schema.graphql and the code
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from graphql import BreakingChange, build_schema, find_breaking_changes

from db import seed as db_seed

ROOT = Path(__file__).resolve().parent
SCHEMA_FILE = ROOT / "schema.graphql"


def current_sdl() -> str:
    from schema import build_schema as build_app_schema

    return build_app_schema().as_str() + "\n"


def breaking_changes(committed_sdl: str, current: str) -> list[BreakingChange]:
    """What clients written against `committed_sdl` would break on: removed types, fields and
    enum values, arguments added as required, nullability tightened on inputs, and so on."""
    return find_breaking_changes(build_schema(committed_sdl), build_schema(current))


def _serve(args: argparse.Namespace) -> None:
    import os
    import secrets

    import uvicorn

    from settings import DEVELOPMENT_SECRET_VARIABLE

    # Without SECRET_KEY a development server signs tokens with a random key; its workers must
    # share it, or a token one of them issued would fail on the others.
    if not os.environ.get("SECRET_KEY"):
        os.environ.setdefault(DEVELOPMENT_SECRET_VARIABLE, secrets.token_urlsafe(48))

    _print_banner(args.host, args.port)
    # access_log off: the app writes its own line per request, with the request id and operations
    # (web/observability.py).
    uvicorn.run(
        "server:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        app_dir=str(ROOT),
        access_log=False,
        # GraphQL frames are small JSON: compressing each one for each socket cost more CPU per
        # subscription delivery (a tenth) than it saves on loopback or a LAN.
        ws_per_message_deflate=False,
    )


def _print_banner(host: str, port: int) -> None:
    """In development, where to go and how to log in (what `make run` shows before the logs)."""
    import asyncio

    from sqlalchemy.engine import make_url

    from db.seed import DEMO_PASSWORD, demo_logins
    from settings import Settings

    settings = Settings.from_env()
    if settings.app_env != "development":
        return
    base = f"http://{'localhost' if host in ('0.0.0.0', '::') else host}:{port}"
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    lines = [
        f"Quill (development), database {database}",
        f"  GraphQL   {base}/graphql   (POST and GET; WebSocket subscriptions at the same URL)",
        f"  GraphiQL  {base}/graphiql",
    ]
    if names := asyncio.run(demo_logins(settings)):
        lines.append(f"  Demo logins: {', '.join(names)}; password {DEMO_PASSWORD!r}")
    origins = settings.cors()
    if "allow_origins" in origins:
        lines.append(f"  CORS: {', '.join(origins['allow_origins'])}")
    else:  # development's default: settings.LOCAL_ORIGINS
        lines.append("  CORS: pages on http://localhost:<any port> and 127.0.0.1 may call it (development")
        lines.append("        only; CORS_ORIGINS sets the list, and production allows none unless set)")
    print("\n".join(lines), flush=True)


def _migrate(args: argparse.Namespace) -> None:
    from alembic import command
    from db.engine import alembic_config

    command.upgrade(alembic_config(), args.revision)


def _create_superuser(args: argparse.Namespace) -> None:
    from db.engine import create_engine
    from db.passwords import Passwords
    from db.seed import ensure_first_superuser
    from schema.validation import Checker
    from settings import Settings

    password = args.password or getpass.getpass("Password for the superuser: ")
    # The same rules as registering through the API, so the superuser can also log in there.
    check = Checker()
    email = check.email("email", args.email)
    username = check.username("username", args.username or args.email.split("@")[0])
    check.password("password", password)
    if check.problems:
        sys.exit("\n".join(check.problems.values()))
    settings = replace(
        Settings.from_env(),
        first_superuser_email=email,
        first_superuser_password=password,
        first_superuser_username=username,
    )

    async def create() -> bool:
        engine = create_engine(settings)
        try:
            return await ensure_first_superuser(engine, settings, Passwords.from_settings(settings))
        finally:
            await engine.dispose()

    if not asyncio.run(create()):
        sys.exit(f"not created: a user with the email {email} or the username {username} exists already")
    print(f"created superuser {username} <{email}>")


def _superuser(args: argparse.Namespace) -> None:
    """Grant or take back superuser rights. The user's access tokens carry the old rights, so they
    are revoked (every server process hears of it within a second: schema/realtime/revocations.py)."""
    from db import revocations
    from db import users as user_rows
    from db.engine import create_engine, create_sessionmaker
    from settings import Settings

    granted = args.grant

    async def change() -> int | None:
        engine = create_engine(Settings.from_env())
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                user_id = await user_rows.set_superuser(session, args.username.strip().lower(), granted)
                if user_id is not None:
                    await revocations.revoke(session, user_id)
                return user_id
        finally:
            await engine.dispose()

    if asyncio.run(change()) is None:
        sys.exit(f"no user is called {args.username}")
    state = "now" if granted else "no longer"
    print(f"{args.username} is {state} a superuser; their access tokens were revoked")


def _export_schema(args: argparse.Namespace) -> None:
    sdl = current_sdl()
    if args.output == "-":
        sys.stdout.write(sdl)
    else:
        Path(args.output).write_text(sdl)
        print(f"wrote {args.output}")


def _check_schema(args: argparse.Namespace) -> None:
    changes = breaking_changes(Path(args.committed).read_text(), current_sdl())
    for change in changes:
        print(f"BREAKING {change.type.name}: {change.description}")
    if changes:
        sys.exit(f"{len(changes)} breaking change(s) against {args.committed}")
    print(f"no breaking changes against {args.committed}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="quill", description=__doc__.split("\n\n")[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser("migrate", help="alembic upgrade (head by default)")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.set_defaults(run=_migrate)

    seed = commands.add_parser("seed", help="demo data into an empty database, or generated data")
    db_seed.add_arguments(seed)
    seed.set_defaults(run=db_seed.execute)

    superuser = commands.add_parser("create-superuser", help="create a superuser")
    superuser.add_argument("--email", required=True)
    superuser.add_argument("--username")
    superuser.add_argument("--password", help="asked for when omitted (so it stays out of the shell history)")
    superuser.set_defaults(run=_create_superuser)

    rights = commands.add_parser("superuser", help="grant or take back superuser rights")
    rights.add_argument("--username", required=True)
    given = rights.add_mutually_exclusive_group(required=True)
    given.add_argument("--grant", action="store_true")
    given.add_argument("--revoke", dest="grant", action="store_false")
    rights.set_defaults(run=_superuser)

    export = commands.add_parser("export-schema", help="print the schema's SDL")
    export.add_argument("-o", "--output", default="-", help="a file to write (default: standard output)")
    export.set_defaults(run=_export_schema)

    check = commands.add_parser("check-schema", help="breaking changes against the committed schema.graphql")
    check.add_argument("--committed", default=str(SCHEMA_FILE))
    check.set_defaults(run=_check_schema)

    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()

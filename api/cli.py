"""The `chorus` command."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
import uvicorn
from pydantic import ValidationError

from api import logs
from voice.settings import Settings

app = typer.Typer(
    help="Chorus: a self-hosted voice platform (calls, audio rooms, ringback tones, hotline).",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _env(name: str) -> str:
    return f"(env CHORUS_{name.upper()})"


def _settings(**options: Any) -> Settings:
    given = {k: v for k, v in options.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            typer.echo(f"chorus: bad setting {where}: {error['msg']}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help=f"Listen address. {_env('host')}")] = None,
    port: Annotated[int | None, typer.Option(help=f"HTTP port. {_env('port')}")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help=f"SQLite database, admin key, uploads. {_env('data_dir')}")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help=f"postgresql://... for shared records. {_env('database_url')}"),
    ] = None,
    redis_url: Annotated[
        str | None, typer.Option(help=f"redis://... for multi-node live state. {_env('redis_url')}")
    ] = None,
    media_host: Annotated[
        str | None, typer.Option(help=f"Address for ICE/RTP (default: host). {_env('media_host')}")
    ] = None,
    public_host: Annotated[
        str | None, typer.Option(help=f"Address advertised behind NAT. {_env('public_host')}")
    ] = None,
    ice_server: Annotated[
        list[str] | None,
        typer.Option(help="STUN/TURN URL, repeatable. (env CHORUS_ICE_SERVERS, comma-separated)"),
    ] = None,
    no_answer_timeout: Annotated[
        float | None, typer.Option(help=f"Seconds of ringing. {_env('no_answer_timeout_s')}")
    ] = None,
    region: Annotated[
        str | None, typer.Option(help=f"Call-progress tones: cn us eu uk jp. {_env('region')}")
    ] = None,
    allow_signup: Annotated[
        bool | None, typer.Option(help=f"Open sign-up. {_env('allow_signup')}")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help=f"Log level. {_env('log_level')}")] = None,
    sip_port: Annotated[
        int | None, typer.Option(help=f"SIP UDP port, 0 turns SIP off. {_env('sip_port')}")
    ] = None,
    sip_public_host: Annotated[
        str | None,
        typer.Option(help=f"Address in SIP headers and SDP. {_env('sip_public_host')}"),
    ] = None,
    media_workers: Annotated[
        int | None,
        typer.Option(
            help=f"Media worker processes (default: CPU count; 0: none). {_env('media_workers')}"
        ),
    ] = None,
) -> None:
    """Run the server until SIGINT/SIGTERM, then end calls and close cleanly."""
    settings = _settings(
        host=host,
        port=port,
        data_dir=data_dir,
        database_url=database_url,
        redis_url=redis_url,
        media_host=media_host,
        public_host=public_host,
        ice_servers=ice_server or None,
        no_answer_timeout_s=no_answer_timeout,
        region=region,
        allow_signup=allow_signup,
        log_level=log_level,
        sip_port=sip_port,
        sip_public_host=sip_public_host,
        media_workers=media_workers,
    )
    logs.configure(settings.log_level)
    asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    from api.main import create_app  # imported here so `chorus --help` stays fast

    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        ws_ping_interval=20,
        timeout_graceful_shutdown=5,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if server.started:
        port = server.servers[0].sockets[0].getsockname()[1]
        if settings.admin_key is None:
            typer.echo(f"chorus: admin key in {(settings.data_dir / 'admin.key').resolve()}")
        typer.echo(f"chorus: listening on http://{settings.host}:{port}", nl=True)
    await task
    if not server.started:
        raise typer.Exit(1)


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn re-raises the signal after shutting down, so the process would die "by
        # SIGTERM"; a requested stop that shut down cleanly is a success (exit 0) instead.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True


@db_app.command("upgrade")
def db_upgrade(
    data_dir: Annotated[Path | None, typer.Option(help=_env("data_dir"))] = None,
    database_url: Annotated[str | None, typer.Option(help=_env("database_url"))] = None,
) -> None:
    """Apply database migrations (the server also does this on start)."""
    from voice.store import Store

    settings = _settings(data_dir=data_dir, database_url=database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def run() -> None:
        store = Store.open(settings.effective_database_url)
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(run())
    typer.echo("chorus: database is up to date")


tones_app = typer.Typer(help="Stock and browse the ringback catalog of a running server.")
app.add_typer(tones_app, name="tones")

_SERVER = typer.Option(help="Chorus server URL. (env CHORUS_SERVER)", envvar="CHORUS_SERVER")
_KEY = typer.Option(help="Admin key. (env CHORUS_ADMIN_KEY)", envvar="CHORUS_ADMIN_KEY")


@tones_app.command("add")
def tones_add(
    files: Annotated[list[Path], typer.Argument(help="Audio files: WAV, MP3, OGG/Opus, M4A, FLAC")],
    admin_key: Annotated[str, _KEY],
    server: Annotated[str, _SERVER] = "http://127.0.0.1:8080",
    title: Annotated[str | None, typer.Option(help="Title (default: the file name)")] = None,
    artist: Annotated[str | None, typer.Option(help="Artist")] = None,
    category: Annotated[str | None, typer.Option(help="Category, e.g. pop, folk, festive")] = None,
    price: Annotated[float, typer.Option(help="Price per validity period, e.g. 2.00")] = 0.0,
    validity_days: Annotated[
        int | None, typer.Option(help="Days a purchase stays valid (default: forever)")
    ] = None,
) -> None:
    """Upload files to the catalog, showing progress for each."""
    from api.tones_client import upload_tone

    failed = 0
    for path in files:
        fields = {
            "title": title or path.stem,
            "artist": artist,
            "category": category,
            "price": f"{price:.2f}",
            "validity_days": str(validity_days) if validity_days else None,
        }
        try:
            tone = upload_tone(server, admin_key, path, fields)
        except RuntimeError as exc:
            typer.echo(f"chorus: {path}: {exc}", err=True)
            failed += 1
            continue
        typer.echo(f"{tone['tone_id']}  {tone['title']}  {tone['duration_s']:.1f} s")
    raise typer.Exit(1 if failed else 0)


@tones_app.command("list")
def tones_list(
    admin_key: Annotated[str, _KEY],
    server: Annotated[str, _SERVER] = "http://127.0.0.1:8080",
    query: Annotated[str | None, typer.Option("--search", help="Title or artist contains")] = None,
    category: Annotated[str | None, typer.Option(help="Only this category")] = None,
) -> None:
    """List the catalog."""
    import httpx

    params = {k: v for k, v in (("q", query), ("category", category)) if v}
    response = httpx.get(
        f"{server}/v1/ringback/tones",
        params=params,
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=30,
    )
    if response.status_code != 200:
        typer.echo(f"chorus: {response.status_code} {response.text}", err=True)
        raise typer.Exit(1)
    for tone in response.json():
        typer.echo(
            f"{tone['tone_id']}  {tone['category'] or '-':<10} {tone['price']:>6.2f}  "
            f"{tone['duration_s']:>5.1f} s  {tone['title']}"
        )

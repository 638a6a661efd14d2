"""Command line: ``sipagent serve | version``.

Every ``serve`` option maps onto a settings key, so the same value can come from the TOML file
(``--config``) or the environment (``SIPAGENT_<SECTION>__<KEY>``); options given here win.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from sipagent import __version__
from sipagent.config import Settings, load_settings
from sipagent.errors import SipAgentError

app = typer.Typer(
    name="sipagent",
    help="A SIP endpoint that puts a voice agent on a phone line.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"sipagent: {message}", err=True)
    return typer.Exit(code=2)


def _parse_port_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    if not sep or not lo.strip().isdigit() or not hi.strip().isdigit():
        raise _fail(f"--rtp-ports: expected LO-HI (e.g. 20000-20999), got {text!r}")
    return int(lo), int(hi)


def _put(tree: dict[str, Any], dotted: str, value: Any) -> None:
    if value is None:
        return
    section, key = dotted.split(".")
    tree.setdefault(section, {})[key] = value


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option("--config", help="TOML settings file.")] = None,
    bind: Annotated[str | None, typer.Option(help="Address to listen on for SIP.")] = None,
    sip_port: Annotated[int | None, typer.Option("--sip-port", help="SIP port (UDP and TCP).")] = None,
    rtp_ports: Annotated[str | None, typer.Option("--rtp-ports", help="RTP port range LO-HI.")] = None,
    agent: Annotated[str | None, typer.Option(help="Agent to run on each call: assistant, echo.")] = None,
    register: Annotated[str | None, typer.Option(help="Registrar URI to register with.")] = None,
    username: Annotated[str | None, typer.Option(help="Account user (the extension).")] = None,
    auth_user: Annotated[str | None, typer.Option("--auth-user", help="Digest user, if not username.")] = None,
    password: Annotated[str | None, typer.Option(help="Digest password (prefer the environment).")] = None,
    record_dir: Annotated[Path | None, typer.Option("--record-dir", help="Per-call WAV + timeline.")] = None,
    log_level: Annotated[str | None, typer.Option("--log-level", help="debug, info, warning, error.")] = None,
) -> None:
    """Run the endpoint: listen for SIP, answer calls, run the agent on each."""
    overrides: dict[str, Any] = {}
    _put(overrides, "sip.bind", bind)
    _put(overrides, "sip.port", sip_port)
    if rtp_ports is not None:
        lo, hi = _parse_port_range(rtp_ports)
        _put(overrides, "rtp.port_min", lo)
        _put(overrides, "rtp.port_max", hi)
    _put(overrides, "agent.name", agent)
    _put(overrides, "registration.registrar", register)
    _put(overrides, "registration.username", username)
    _put(overrides, "registration.auth_user", auth_user)
    _put(overrides, "registration.password", password)
    _put(overrides, "agent.record_dir", record_dir)
    _put(overrides, "log.level", log_level)
    try:
        settings = load_settings(config, overrides)
    except SipAgentError as exc:
        raise _fail(str(exc)) from None
    try:
        asyncio.run(_serve(settings))
    except KeyboardInterrupt:
        pass
    except SipAgentError as exc:
        raise _fail(str(exc)) from None


async def _serve(settings: Settings) -> None:
    from sipagent import log
    from sipagent.endpoint import Endpoint

    log.configure(settings.log.level, settings.log.json_output)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Endpoint(settings) as endpoint:
        await endpoint.ready()
        await stop.wait()


def main() -> None:
    app()


if __name__ == "__main__":
    main()

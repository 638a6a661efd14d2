"""Command line: ``sipagent serve | dial | replay | version``.

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


ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file.")]
BindOpt = Annotated[str | None, typer.Option(help="Address to listen on for SIP.")]
SipPortOpt = Annotated[int | None, typer.Option("--sip-port", help="SIP port (UDP and TCP).")]
RtpPortsOpt = Annotated[str | None, typer.Option("--rtp-ports", help="RTP port range LO-HI.")]
AgentOpt = Annotated[str | None, typer.Option(help="Agent to run on each call: assistant, echo.")]
RegisterOpt = Annotated[str | None, typer.Option(help="Registrar URI to register with.")]
UsernameOpt = Annotated[str | None, typer.Option(help="Account user (the extension).")]
AuthUserOpt = Annotated[str | None, typer.Option("--auth-user", help="Digest user, if not the username.")]
PasswordOpt = Annotated[str | None, typer.Option(help="Digest password (prefer the environment).")]
RecordDirOpt = Annotated[Path | None, typer.Option("--record-dir", help="Per-call WAV + timeline.")]
LogLevelOpt = Annotated[str | None, typer.Option("--log-level", help="debug, info, warning, error.")]
MetricsPortOpt = Annotated[int | None, typer.Option("--metrics-port", help="Serve Prometheus GET /metrics here.")]


def _settings(config: Path | None, **options: Any) -> Settings:
    overrides: dict[str, Any] = {}
    _put(overrides, "sip.bind", options["bind"])
    _put(overrides, "sip.port", options["sip_port"])
    if options["rtp_ports"] is not None:
        lo, hi = _parse_port_range(options["rtp_ports"])
        _put(overrides, "rtp.port_min", lo)
        _put(overrides, "rtp.port_max", hi)
    _put(overrides, "agent.name", options["agent"])
    _put(overrides, "registration.registrar", options["register"])
    _put(overrides, "registration.username", options["username"])
    _put(overrides, "registration.auth_user", options["auth_user"])
    _put(overrides, "registration.password", options["password"])
    _put(overrides, "agent.record_dir", options["record_dir"])
    _put(overrides, "log.level", options["log_level"])
    _put(overrides, "log.metrics_port", options.get("metrics_port"))
    try:
        return load_settings(config, overrides)
    except SipAgentError as exc:
        raise _fail(str(exc)) from None


def _run(main: Any) -> None:
    try:
        asyncio.run(main)
    except KeyboardInterrupt:
        pass
    except SipAgentError as exc:
        raise _fail(str(exc)) from None


@app.command()
def serve(
    config: ConfigOpt = None, bind: BindOpt = None, sip_port: SipPortOpt = None, rtp_ports: RtpPortsOpt = None,
    agent: AgentOpt = None, register: RegisterOpt = None, username: UsernameOpt = None,
    auth_user: AuthUserOpt = None, password: PasswordOpt = None, record_dir: RecordDirOpt = None,
    log_level: LogLevelOpt = None, metrics_port: MetricsPortOpt = None,
) -> None:
    """Run the endpoint: listen for SIP, answer calls, run the agent on each."""
    settings = _settings(config, bind=bind, sip_port=sip_port, rtp_ports=rtp_ports, agent=agent, register=register,
                         username=username, auth_user=auth_user, password=password, record_dir=record_dir,
                         log_level=log_level, metrics_port=metrics_port)
    _run(_serve(settings))


@app.command()
def dial(
    uri: Annotated[str, typer.Argument(help="Who to call, e.g. sip:2001@192.168.1.10.")],
    answer_timeout: Annotated[float, typer.Option("--answer-timeout", help="Seconds to ring.")] = 60.0,
    config: ConfigOpt = None, bind: BindOpt = None, sip_port: SipPortOpt = None, rtp_ports: RtpPortsOpt = None,
    agent: AgentOpt = None, register: RegisterOpt = None, username: UsernameOpt = None,
    auth_user: AuthUserOpt = None, password: PasswordOpt = None, record_dir: RecordDirOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Place one call and run the agent on it; exits 0 if the call was answered, 1 if not."""
    settings = _settings(config, bind=bind, sip_port=sip_port, rtp_ports=rtp_ports, agent=agent, register=register,
                         username=username, auth_user=auth_user, password=password, record_dir=record_dir,
                         log_level=log_level)
    answered: list[bool] = []
    _run(_dial(settings, uri, answer_timeout, answered))
    raise typer.Exit(code=0 if answered and answered[0] else 1)


@app.command()
def replay(
    capture: Annotated[Path, typer.Argument(help="pcap/pcapng capture, or the caller's WAV (8/16 kHz mono).")],
    out: Annotated[Path | None, typer.Option("--out", help="Directory for report.json, call.wav, ...")] = None,
    stream: Annotated[str | None, typer.Option("--stream", help="Caller stream: index or SSRC.")] = None,
    expect: Annotated[list[str] | None, typer.Option("--expect", help="Text some turn must contain.")] = None,
    max_response_ms: Annotated[float | None, typer.Option("--max-response-ms", help="Slowest reply allowed.")] = None,
    script: Annotated[Path | None, typer.Option("--script", help="Agent script (TOML).")] = None,
    no_agent: Annotated[bool, typer.Option("--no-agent", help="Streams and digits only.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report to stdout.")] = False,
) -> None:
    """Replay a captured call through the media path and the offline agent; exit 1 if a check fails."""
    import json

    from rtp.errors import CaptureError
    from sipagent.providers.errors import ProviderError
    from sipagent.replay.report import check
    from sipagent.replay.report import replay as run_replay
    from sipagent.replay.runner import ReplayConfig

    config = ReplayConfig(stream=stream, script=script, agent=not no_agent)
    try:
        outcome = asyncio.run(run_replay(capture, out, config))
    except (CaptureError, SipAgentError, ProviderError) as exc:
        raise _fail(str(exc)) from None
    if json_out:
        typer.echo(json.dumps(outcome.report, indent=2))
    for error in outcome.errors:
        typer.echo(f"sipagent: {error}", err=True)
    failures = check(outcome.report, expect or [], max_response_ms)
    for failure in failures:
        typer.echo(f"sipagent replay: FAIL {failure}", err=True)
    raise typer.Exit(code=2 if outcome.errors else 1 if failures else 0)


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


async def _dial(settings: Settings, uri: str, answer_timeout: float, answered: list[bool]) -> None:
    from sipagent import log
    from sipagent.endpoint import Endpoint

    log.configure(settings.log.level, settings.log.json_output)
    async with Endpoint(settings) as endpoint:
        await endpoint.ready()
        if settings.registration.registrar:
            async with asyncio.timeout(30):
                await endpoint.registered()
        def hang_up_all() -> None:
            # Hang up cleanly (BYE, or CANCEL while ringing) instead of dying with the call up.
            for active in list(endpoint.calls.values()):
                active.close()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, hang_up_all)
        call = await endpoint.dial(uri, answer_timeout=answer_timeout)
        answered.append(call.was_established)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

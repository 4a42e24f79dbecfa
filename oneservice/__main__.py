"""``python -m oneservice``: parse arguments and run the service in the foreground."""

from __future__ import annotations

import dataclasses
import getopt
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from . import __version__
from .files import DamagedFile, FileError
from .identity import IdentityError, load_or_create_identity
from .instance import AlreadyRunning, InstanceLock
from .memory import tune_malloc
from .network.config import NetworkConfigError, load_network_files
from .records import record
from .settings import (
    Settings,
    SettingsError,
    default_home,
    ensure_home,
    load_local_conf,
    validate_port,
)

EXIT_RUNTIME_ERROR = 1
EXIT_CONFIG_ERROR = 2


LOG_LEVELS = ("debug", "info", "warning", "error")
USAGE = "usage: python -m oneservice [-h] [--home DIR] [--port N] [--log-level LEVEL] [--version]"
HELP = f"""{USAGE}

oneservice node: a peer-to-peer virtual network node. Runs in the foreground, logs to stderr,
stops cleanly on SIGINT or SIGTERM, re-reads local.conf on SIGHUP.

options:
  -h, --help         show this help and exit
  --home DIR         home directory for identity, settings and state (default: {{home}})
  --port N           UDP port for peer traffic, overriding settings.primaryPort in local.conf
                     (default 9993; 0 picks a free port)
  --log-level LEVEL  how much to log to stderr: {", ".join(LOG_LEVELS)} (default: info)
  --version          show the version and exit
"""


@record
class Arguments:
    home: Path
    port: int | None
    log_level: str


def parse_args(argv: list[str] | None = None) -> Arguments:
    """The command line, read with getopt: argparse, with the gettext it loads, costs an idle
    node 0.3 MiB for four options. A mistake prints the usage and exits 2; --help and
    --version print and exit 0."""
    try:
        options, rest = getopt.getopt(
            sys.argv[1:] if argv is None else argv,
            "h",
            ["help", "home=", "port=", "log-level=", "version"],
        )
        if rest:
            raise getopt.GetoptError(f"unexpected argument {rest[0]!r}")
        home, port, log_level = default_home(), None, "info"
        for option, value in options:
            if option in ("-h", "--help"):
                print(HELP.format(home=default_home()), end="")
                sys.exit(0)
            if option == "--version":
                print(f"oneservice {__version__}")
                sys.exit(0)
            if option == "--home":
                if not value:
                    raise getopt.GetoptError("--home needs a directory")
                home = Path(value)
            elif option == "--port":
                try:
                    port = int(value)
                except ValueError:
                    raise getopt.GetoptError(
                        f"--port needs a whole number, got {value!r}"
                    ) from None
            elif option == "--log-level":
                if value not in LOG_LEVELS:
                    raise getopt.GetoptError(
                        f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {value!r}"
                    )
                log_level = value
    except getopt.GetoptError as exc:
        print(f"{USAGE}\npython -m oneservice: error: {exc}", file=sys.stderr)
        sys.exit(2)
    return Arguments(home, port, log_level)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    tune_malloc()  # before the first identity check allocates scrypt's 16 MiB
    try:
        home = ensure_home(args.home)
        settings = load_local_conf(home)
        if args.port is not None:
            validate_port(args.port, "--port")
            settings = dataclasses.replace(settings, primary_port=args.port)
    except SettingsError as exc:
        return _failed(exc, EXIT_CONFIG_ERROR)

    # Before anything touches the kernel or the home's state: a second node changes nothing.
    lock = InstanceLock(home)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        return _failed(exc, EXIT_RUNTIME_ERROR)

    try:
        return _run_node(home, settings)
    finally:
        lock.release()


def _run_node(home: Path, settings: Settings) -> int:
    # The identity and the network files first, while the process is small: checking an
    # identity against its address (ours, and each member of a hand-written network) takes
    # scrypt's 16 MiB for a moment, which on top of the whole node made its start-up peak
    # 40 MiB; before asyncio, the protocol and the service are loaded it is 34.
    try:
        identity = load_or_create_identity(home)
        network_files = load_network_files(home)
    except (NetworkConfigError, DamagedFile) as exc:
        return _failed(exc, EXIT_CONFIG_ERROR)
    except (IdentityError, FileError) as exc:
        return _failed(exc, EXIT_RUNTIME_ERROR)
    run_until_signalled = load_service()
    from .binder.sockets import BindError
    from .tap import TapError

    try:
        _run(run_until_signalled(home, settings, identity, network_files))
    except (NetworkConfigError, DamagedFile) as exc:
        # A node-wide file (identity, token, controller database, saved sysctls) is damaged:
        # it was left as it is, and nothing was changed.
        return _failed(exc, EXIT_CONFIG_ERROR)
    except (BindError, IdentityError, TapError, FileError) as exc:
        return _failed(exc, EXIT_RUNTIME_ERROR)
    return 0


def load_service() -> Callable[..., Coroutine[Any, Any, None]]:
    """What a start loads once the identities are checked: the service, and with it asyncio
    and the protocol."""
    # asyncio imports ssl where it can, for TLS transports the node never opens: the module,
    # its extension and libssl are 1.3 MiB of an idle node. It is made unimportable only
    # while the service loads; whatever needs TLS later (psycopg's, a controller's) gets it.
    blocked = "ssl" not in sys.modules and "asyncio" not in sys.modules
    if blocked:
        sys.modules["ssl"] = None  # type: ignore[assignment]  # "import ssl" raises ImportError
    try:
        from .service import run_until_signalled
    finally:
        if blocked:
            del sys.modules["ssl"]
    return run_until_signalled


def _failed(exc: Exception, code: int) -> int:
    print(f"oneservice: error: {exc}", file=sys.stderr)
    return code


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    # asyncio's own loop. uvloop, used before, cost 3.3 MiB of an idle node (itself, and the
    # ssl it imports) and carried bulk traffic no faster; under a flood of small datagrams
    # its loop was 1-3 % of a core cheaper (docs/PERFORMANCE.md, sixteenth session).
    import asyncio

    asyncio.run(coroutine)


if __name__ == "__main__":
    sys.exit(main())

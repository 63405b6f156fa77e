"""``swarmdns control``: send one request to a running fake's control channel."""

from __future__ import annotations

import argparse
import json
import os
from typing import TextIO

from .common import EXIT_DNS_FAILURE, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, CommandExit
from .options import bad_value, whole_number

HELP = "drive a running fake (swarmdns serve --control) from another process"
DESCRIPTION = (
    "Send one request to a running fake's control channel and print its result as JSON."
    " FIELD=VALUE pairs are the request's fields; a VALUE that reads as JSON (5, true,"
    ' ["SERVFAIL"]) is sent as such, any other as text. Operations: state, create_service,'
    " scale, remove_service, kill_task, replace_task, reschedule, mark_healthy,"
    " mark_unhealthy, update_service, rollback, drain, activate, operation, inject,"
    " clear_faults, reset (their fields: docs/cli.md); a Compose project's (serve --compose):"
    " state, create_service, scale, remove_service, kill_container, stop_container,"
    " start_container, kill_task, inject, clear_faults, reset."
)


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        default=os.environ.get("SWARMDNS_CONTROL"),
        metavar="HOST:PORT",
        help="the control channel (default: SWARMDNS_CONTROL)",
    )
    parser.add_argument("op", metavar="OPERATION", help="what to do, such as scale or state")
    parser.add_argument(
        "fields", nargs="*", metavar="FIELD=VALUE", help="the request's fields, such as name=web"
    )


def _fields(pairs: list[str]) -> dict[str, object]:
    """The request's fields from ``FIELD=VALUE`` pairs: JSON values as such, others as text."""
    fields: dict[str, object] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise CommandExit(EXIT_USAGE, f"{pair!r} is not FIELD=VALUE, such as name=web")
        try:
            fields[key] = json.loads(value)
        except ValueError:
            fields[key] = value
    return fields


def run(options: argparse.Namespace, out: TextIO) -> int:
    from ..testing import ControlError, FakeControl, SwarmError  # noqa: PLC0415 - only when asked

    address: str | None = options.address
    if not address:
        raise CommandExit(
            EXIT_USAGE,
            "no control channel given: pass --address HOST:PORT (what swarmdns serve --control"
            " printed) or set SWARMDNS_CONTROL",
        )
    # FakeControl reads the port with int(), which takes any script's digits.
    if whole_number(address.rpartition(":")[2]) is None:
        raise bad_value(
            "--address",
            address,
            "is not HOST:PORT; give what swarmdns serve --control printed, such as 127.0.0.1:5353",
        )
    fields = _fields(options.fields)
    try:
        result = FakeControl(address).request(options.op, **fields)
    except SwarmError as error:
        raise CommandExit(EXIT_NOT_FOUND, f"the fake refused: {error}") from error
    except ControlError as error:
        code = EXIT_USAGE if error.kind in ("BadRequest", "RequestTooLarge") else EXIT_DNS_FAILURE
        raise CommandExit(code, str(error)) from error
    except ValueError as error:  # a malformed address
        raise bad_value("--address", address, f"cannot be used: {error}") from error
    if result is not None:
        print(json.dumps(result), file=out)
    return EXIT_OK

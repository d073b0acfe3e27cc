"""The ``stack.py`` commands: up, deploy, env, down, status, outputs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable

from dl_stack.deploy import deploy, stack_outputs
from dl_stack.envfile import write_local_env
from dl_stack.lifecycle import down, status, up
from dl_stack.process import is_up
from dl_stack.report import StackError, say
from dl_stack.settings import DEFAULT_STACK, DEFAULT_TEMPLATE, ENV_FILE

DESCRIPTION = (
    "The local stack: LocalStack in host mode (no Docker) + the SAM template deployed into it."
)


def _pairs(items: Iterable[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{what} expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    """Run one command (``argv`` default: the process's arguments); the exit status."""
    ap = argparse.ArgumentParser(prog="stack.py", description=DESCRIPTION)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def stack_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--template", default=None, help=f"default {DEFAULT_TEMPLATE}")
        p.add_argument("--stack", default=DEFAULT_STACK)
        p.add_argument(
            "--param",
            action="append",
            metavar="KEY=VALUE",
            help="template parameter override (repeatable)",
        )

    p_up = sub.add_parser("up", help="start LocalStack, deploy, write local.env")
    stack_args(p_up)
    p_up.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra env entry")
    p_up.add_argument("--no-deploy", action="store_true")
    p_dep = sub.add_parser("deploy", help="deploy the template (create or update)")
    stack_args(p_dep)
    p_env = sub.add_parser("env", help="write .datalake/local.env")
    p_env.add_argument("--stack", default=DEFAULT_STACK)
    p_env.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra env entry")
    sub.add_parser("down", help="stop LocalStack")
    sub.add_parser("status", help="is it up?")
    p_out = sub.add_parser("outputs", help="print the stack outputs as JSON")
    p_out.add_argument("--stack", default=DEFAULT_STACK)
    args = ap.parse_args(argv)

    try:
        if args.cmd == "up":
            t0 = time.monotonic()
            up(
                args.template,
                args.stack,
                _pairs(args.param, "--param"),
                _pairs(args.set, "--set"),
                write_env=True if args.stack == DEFAULT_STACK else None,
                deploy_stack=not args.no_deploy,
            )
            say(f"up in {time.monotonic() - t0:.1f}s")
        elif args.cmd == "deploy":
            if not is_up():
                raise StackError("LocalStack is not running: run `stack.py up` first")
            outputs = deploy(args.template, args.stack, _pairs(args.param, "--param"))
            if args.stack == DEFAULT_STACK and ENV_FILE.exists():
                write_local_env(None, args.stack, outputs=outputs)
            print(json.dumps(outputs, indent=2))
        elif args.cmd == "env":
            env = write_local_env(_pairs(args.set, "--set"), args.stack)
            say(f"wrote {ENV_FILE} ({len(env)} entries)")
        elif args.cmd == "down":
            down()
        elif args.cmd == "status":
            info = status()
            print(json.dumps(info, indent=2))
            return 0 if info["up"] else 3
        elif args.cmd == "outputs":
            print(json.dumps(stack_outputs(args.stack), indent=2))
    except StackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


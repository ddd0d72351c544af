"""The `schedule-consumer` command line."""
import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from consumer import config
from consumer.config import ConfigError, Settings

log = logging.getLogger("schedule_consumer")

# Written by `dev`, read by `send` and `tail` when no broker is configured.
DEV_STACK_FILE = Path(".dev") / "stack.json"


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration (each also an environment variable)")
    for f in fields(Settings):
        if f.name == "kafka_overrides":
            continue
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"cfg_{f.name}", type=int if f.type in (int, "int") else str, metavar=f.name.upper())


def load_settings(args: argparse.Namespace, use_dev_stack: bool = False) -> Settings:
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_")}
    settings = config.from_env(**overrides)
    if use_dev_stack and not settings.kafka_bootstrap_servers and DEV_STACK_FILE.exists():
        stack = json.loads(DEV_STACK_FILE.read_text())
        settings = config.from_env(**{**stack, **{k: v for k, v in overrides.items() if v is not None}})
    return settings


def cmd_run(args: argparse.Namespace) -> int:
    from consumer.service import Service
    from consumer.topics import ensure_topics

    settings = load_settings(args)
    settings.require("kafka_bootstrap_servers", "database_url")
    ensure_topics(settings, create=args.create_topics)
    Service(settings).run_forever()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from consumer.migrate import migrate

    migrate(load_settings(args), attach=args.attach)
    log.info("migrated%s", " (service tables only)" if args.attach else "")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from consumer.devstack import run_dev

    return run_dev(load_settings(args), Path(args.data_dir), DEV_STACK_FILE)


def cmd_send(args: argparse.Namespace) -> int:
    from consumer.client import send

    settings = load_settings(args, use_dev_stack=True)
    settings.require("kafka_bootstrap_servers")
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    try:
        command = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{args.file}: not JSON: {e}") from None
    reply = send(settings, command, timeout=args.timeout, wait=not args.no_wait)
    if reply is not None:
        print(json.dumps(reply, indent=2))
        return 0 if reply["status"] == "OK" else 1
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from consumer.client import tail

    settings = load_settings(args, use_dev_stack=True)
    settings.require("kafka_bootstrap_servers")
    for line in tail(settings, args.what, from_beginning=args.from_beginning, limit=args.limit, idle_timeout=args.idle_timeout):
        print(json.dumps(line), flush=True)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from bench.cli import run

    return run(args, load_settings(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="schedule-consumer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        _settings_flags(p)
        return p

    p = add("run", cmd_run, "consume commands and relay events until SIGTERM")
    p.add_argument("--create-topics", action="store_true", help="create missing topics at start-up")

    p = add("migrate", cmd_migrate, "create or upgrade the tables, RLS policies and runtime role")
    p.add_argument("--attach", action="store_true", help="install only the service's own tables into an existing PSA database")

    p = add("dev", cmd_dev, "run on embedded PostgreSQL and broker, migrated and seeded with a demo tenant")
    p.add_argument("--data-dir", default=".dev", help="where the embedded database keeps its files (default .dev)")

    p = add("send", cmd_send, "publish a JSON command and print its reply")
    p.add_argument("file", help="a JSON command file, or - for standard input")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reply")
    p.add_argument("--no-wait", action="store_true", help="publish only; do not wait for the reply")

    p = add("tail", cmd_tail, "print decoded messages as JSON lines")
    p.add_argument("what", choices=("events", "replies", "dlq"))
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--limit", type=int, help="stop after this many messages")
    p.add_argument("--idle-timeout", type=float, help="stop after this many seconds without a message")

    from bench.cli import add_arguments as bench_arguments

    p = add("bench", cmd_bench, "measure throughput, latency, memory and the database ceiling on embedded servers (needs the dev extras)")
    bench_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from consumer import logs

    try:
        env = config.from_env()
        # People read dev, send and tail; `run` speaks to log collectors.
        interactive = args.command in ("dev", "send", "tail", "bench") and "LOG_FORMAT" not in os.environ
        logs.configure(fmt="text" if interactive else env.log_format, level=env.log_level)
        return args.fn(args)
    except ConfigError as e:
        print(f"schedule-consumer {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        log.exception("%s failed: %s", args.command, e)
        return 1


if __name__ == "__main__":
    sys.exit(main())

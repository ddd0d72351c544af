"""The `schedule-consumer` command line."""
import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from consumer import config
from consumer.config import ConfigError, Settings
from schemas import AVRO_DIR

log = logging.getLogger("schedule_consumer")

# Written by `dev`, read by `send` and `tail` when no broker is configured.
DEV_STACK_FILE = Path(".dev") / "stack.json"


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration (each also an environment variable)")
    for f in fields(Settings):
        if f.name == "kafka_overrides":
            continue
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"cfg_{f.name}", type=config.parser_for(f), metavar=f.name.upper())


def load_settings(args: argparse.Namespace, use_dev_stack: bool = False) -> Settings:
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_")}
    settings = config.from_env(**overrides)
    if use_dev_stack and not settings.kafka_bootstrap_servers and DEV_STACK_FILE.exists():
        stack = json.loads(DEV_STACK_FILE.read_text())
        settings = config.from_env(**{**stack, **{k: v for k, v in overrides.items() if v is not None}})
    return settings


def cmd_run(args: argparse.Namespace) -> int:
    from consumer import preflight
    from consumer.service import Service

    settings = load_settings(args)
    preflight.check(settings, create_topics=args.create_topics)
    return Service(settings, role=args.only or "all").run_forever()


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


def cmd_schemas(args: argparse.Namespace) -> int:
    if args.action == "check":
        from consumer.schema_compatibility import check

        findings = check(Path(args.dir))
        for finding in findings:
            print(finding, file=sys.stderr)
        if findings:
            print(f"schemas check: {len(findings)} incompatible change(s); add a default, keep the symbol, or keep the field's type", file=sys.stderr)
            return 1
        print(f"schemas check: {args.dir} reads everything the released versions wrote")
        return 0
    from consumer.schema_registration import RegistryRefused, redact, register

    settings = load_settings(args)
    try:
        registered = register(settings, reply_topics=args.reply_topic or ())
    except RegistryRefused as e:
        print(f"schedule-consumer schemas register: the registry refused {e}", file=sys.stderr)
        return 1
    for subject, schema_id in registered:
        print(f"{subject}\tid {schema_id}")
    log.info("registered %d subjects at %s", len(registered), redact(settings.schema_registry_url))
    return 0


def _print_report(report: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.as_json(), indent=2, default=str))
    else:
        print("\n".join(report.lines()))


def cmd_replay(args: argparse.Namespace) -> int:
    from consumer import ranges
    from consumer.replay import replay

    settings = load_settings(args, use_dev_stack=True)
    settings.require("kafka_bootstrap_servers")
    if args.from_timestamp:
        start = ranges.Position(at=ranges.parse_time(args.from_timestamp, "--from-timestamp"))
    else:
        start = ranges.Position(offsets=ranges.parse_offsets(args.from_offset, "--from-offset"))
    end = None
    if args.to_timestamp:
        end = ranges.Position(at=ranges.parse_time(args.to_timestamp, "--to-timestamp"))
    elif args.to_offset:
        end = ranges.Position(offsets=ranges.parse_offsets(args.to_offset, "--to-offset"))
    report = replay(settings, start, end, dry_run=args.dry_run)
    _print_report(report, args.json)
    return 1 if report.failures else 0


def cmd_dlq_list(args: argparse.Namespace) -> int:
    from consumer import dlq
    from consumer.service import make_codec

    settings = load_settings(args, use_dev_stack=True)
    settings.require("kafka_bootstrap_servers")
    codec = make_codec(settings)
    records = dlq.read_all(settings)
    if args.error_class:
        records = [r for r in records if r.header("dlq.error.class") == args.error_class]
    summaries = [dlq.summary(codec, r) for r in records]
    if args.json:
        print(json.dumps(summaries, indent=2))
    else:
        print("\n".join(dlq.describe_lines(summaries)))
    return 0


def cmd_dlq_show(args: argparse.Namespace) -> int:
    from consumer import dlq
    from consumer.service import make_codec

    settings = load_settings(args, use_dev_stack=True)
    settings.require("kafka_bootstrap_servers")
    codec = make_codec(settings)
    chosen = dlq.select(dlq.read_all(settings), codec, [args.ref])
    shown = [dlq.detail(codec, r) for r in chosen]
    if args.json:
        print(json.dumps(shown, indent=2))
    else:
        print("\n\n".join("\n".join(dlq.detail_lines(s)) for s in shown))
    return 0


def cmd_dlq_redrive(args: argparse.Namespace) -> int:
    from consumer import dlq
    from consumer.service import make_codec

    settings = load_settings(args, use_dev_stack=True)
    settings.require("kafka_bootstrap_servers")
    codec = make_codec(settings)
    every = dlq.read_all(settings)
    chosen = dlq.select(every, codec, args.refs, error_class=args.error_class, everything=args.all)
    report = dlq.redrive(settings, codec, chosen, every, max_redrives=args.max_redrives, dry_run=args.dry_run)
    _print_report(report, args.json)
    return 1 if report.refused else 0


def cmd_events_republish(args: argparse.Namespace) -> int:
    from consumer.ranges import parse_time
    from consumer.republish import Selection, republish

    settings = load_settings(args, use_dev_stack=True)
    settings.require("kafka_bootstrap_servers", "database_url")
    selection = Selection(
        since=parse_time(args.since, "--since"),
        until=parse_time(args.until, "--until") if args.until else None,
        appointment=args.appointment,
        tenant=args.tenant,
    )
    _print_report(republish(settings, selection, dry_run=args.dry_run), args.json)
    return 0


def _operator_parsers(sub: Any) -> None:
    """replay, dlq list|show|redrive, events republish."""

    def leaf(parent: Any, name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        p.add_argument("--json", action="store_true", help="print JSON for scripts instead of text")
        _settings_flags(p)
        return p

    p = leaf(sub, "replay", cmd_replay, "re-read a stretch of the command topic: open-ended rewinds the stopped service's group, bounded applies it here")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--from-timestamp", metavar="T", help="ISO-8601 instant with an offset: the first record at or after it")
    start.add_argument("--from-offset", metavar="P:O", action="append", help="PARTITION:OFFSET (repeatable), or OFFSET for every partition")
    end = p.add_mutually_exclusive_group()
    end.add_argument("--to-timestamp", metavar="T", help="stop before the first record at or after this instant (or `now`)")
    end.add_argument("--to-offset", metavar="P:O", action="append", help="stop before this offset (PARTITION:OFFSET, repeatable, or OFFSET)")
    p.add_argument("--dry-run", action="store_true", help="report what would be applied, answered as duplicate or dead-lettered; write nothing")

    dlq = sub.add_parser("dlq", help="inspect and redrive dead letters", description="inspect and redrive dead letters")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    p = leaf(dlq_sub, "list", cmd_dlq_list, "one entry per dead letter: position, error, origin, command")
    p.add_argument("--error-class", help="only dead letters of this dlq.error.class")
    p = leaf(dlq_sub, "show", cmd_dlq_show, "one dead letter in full: headers, key, value and decoded command")
    p.add_argument("ref", metavar="P:O|COMMAND_ID", help="its position in the dead-letter topic, or its command_id")
    p = leaf(dlq_sub, "redrive", cmd_dlq_redrive, "send dead letters back to the command topic after a fix")
    p.add_argument("refs", nargs="*", metavar="P:O|COMMAND_ID", help="dead letters by position or command_id")
    p.add_argument("--error-class", help="every dead letter of this dlq.error.class")
    p.add_argument("--all", action="store_true", help="every dead letter")
    p.add_argument("--max-redrives", type=int, default=3, help="refuse dead letters already redriven this many times (default 3)")
    p.add_argument("--dry-run", action="store_true", help="list what would be sent; send nothing")

    events = sub.add_parser("events", help="act on stored events", description="act on stored events")
    events_sub = events.add_subparsers(dest="events_command", required=True)
    p = leaf(events_sub, "republish", cmd_events_republish, "re-emit stored events from the outbox, byte for byte, without re-running commands")
    p.add_argument("--since", required=True, metavar="T", help="events committed at or after this ISO-8601 instant")
    p.add_argument("--until", metavar="T", help="and before this one")
    p.add_argument("--appointment", metavar="ID", help="only events whose appointmentId is this entry id")
    p.add_argument("--tenant", metavar="ID", help="only this tenant")
    p.add_argument("--dry-run", action="store_true", help="list what would be sent; send nothing")


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
    p.add_argument("--only", choices=("consumer", "relay"), help="run one part, to deploy the outbox relay apart from the consumers")

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

    p = add("schemas", cmd_schemas, "register the Avro schemas with the Schema Registry, or check them against the released versions")
    p.add_argument("action", choices=("register", "check"))
    p.add_argument("--dir", default=str(AVRO_DIR), help="check: the schema folder, with its released/<version>/ copies (default: the project's)")
    p.add_argument("--reply-topic", action="append", help="register: also the result schema for this reply_to topic (repeatable)")
    _operator_parsers(sub)
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
        interactive = args.command in ("dev", "send", "tail", "replay", "dlq", "events", "bench") and "LOG_FORMAT" not in os.environ
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

"""The ``otel-telemetry`` command: ``catalog`` and ``demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _catalog(args: argparse.Namespace) -> int:
    from otel_telemetry.tools.docs import catalog_json, metrics_markdown

    sys.stdout.write((catalog_json() if args.format == "json" else metrics_markdown()) + "\n")
    return 0


def _config_docs(args: argparse.Namespace) -> int:
    from otel_telemetry.tools.docs import configuration_markdown, with_configuration_markdown

    if args.write is None:
        sys.stdout.write(configuration_markdown() + "\n")
    else:
        path = Path(args.write)
        path.write_text(with_configuration_markdown(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from otel_telemetry.tools.demo import DemoOptions, run_demo

    options = DemoOptions(
        duration=args.duration,
        players=args.players,
        tick_rate=args.tick_rate,
        packets_in=args.packets_in,
        packets_out=args.packets_out,
        maps=args.maps,
        host=args.host,
        port=args.port,
        quiet=args.quiet,
        seed=args.seed,
    )
    return run_demo(options)


def _top(args: argparse.Namespace) -> int:
    from otel_telemetry.tools.top import top_command

    return top_command(args.rest)


def _rules(args: argparse.Namespace) -> int:
    from otel_telemetry.tools.rules import rules_command

    return rules_command(args.rest)


def _generate(args: argparse.Namespace) -> int:
    from otel_telemetry.tools.collector import ALERT_RULES_FILE, write_all
    from otel_telemetry.tools.dashboard import write_dashboard
    from otel_telemetry.tools.rules import RULES_TEST_FILE, config_rules, promtool_tests_yaml, write_rules_file

    rules = config_rules()  # the rules a handle evaluates with the default configuration, `for` included
    written = [*write_all(args.directory), write_dashboard(args.directory)]
    written.append(write_rules_file(Path(args.directory) / ALERT_RULES_FILE, rules))
    tests = Path(args.directory) / RULES_TEST_FILE
    tests.write_text(promtool_tests_yaml(rules, rules_file=ALERT_RULES_FILE), encoding="utf-8")
    written.append(tests)
    for path in written:
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="otel-telemetry", description="OpenTelemetry telemetry for multiplayer game servers."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    catalog = commands.add_parser("catalog", help="print the metric catalog")
    catalog.add_argument("--format", choices=("json", "markdown"), default="json")
    catalog.set_defaults(handler=_catalog)

    config_docs = commands.add_parser("config-docs", help="print the settings table of docs/configuration.md")
    config_docs.add_argument("--write", metavar="FILE", help="replace the generated table in FILE instead")
    config_docs.set_defaults(handler=_config_docs)

    demo = commands.add_parser("demo", help="run a simulated 60 Hz game server with telemetry")
    demo.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    demo.add_argument("--players", type=int, default=1250, help="concurrent players (spec example: 1250)")
    demo.add_argument("--tick-rate", type=float, default=60.0, help="target ticks per second")
    demo.add_argument("--packets-in", type=int, default=15000, help="incoming packets per second")
    demo.add_argument("--packets-out", type=int, default=12000, help="outgoing packets per second")
    demo.add_argument("--maps", type=int, default=4, help="number of maps")
    demo.add_argument("--host", default="127.0.0.1", help="address /metrics binds to")
    demo.add_argument("--port", type=int, default=9090, help="port /metrics binds to (0: any free port)")
    demo.add_argument("--quiet", action="store_true", help="no per-second summary")
    demo.add_argument("--seed", type=int, default=None, help="random seed for a repeatable run")
    demo.set_defaults(handler=_demo)

    top = commands.add_parser(
        "top", help="live terminal view of a server's /metrics (see `otel-telemetry top --help`)", add_help=False
    )
    top.add_argument("rest", nargs=argparse.REMAINDER)
    top.set_defaults(handler=_top)

    rules = commands.add_parser(
        "rules", help="print the default alert rules, and yours (--rules module:NAME), as Prometheus alerting rules"
    )
    rules.add_argument("rest", nargs=argparse.REMAINDER)
    rules.set_defaults(handler=_rules)

    generate = commands.add_parser(
        "collector-config",
        help="regenerate collector-config/: Collector, Prometheus, alert rules and their promtool tests, dashboard",
    )
    generate.add_argument("directory", nargs="?", default="collector-config")
    generate.set_defaults(handler=_generate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    # `top` and `rules` own their options (argparse's REMAINDER would not pass a leading --help through).
    if arguments and arguments[0] in ("top", "rules"):
        return int(build_parser().parse_args([arguments[0]]).handler(argparse.Namespace(rest=arguments[1:])))
    parser = build_parser()
    args = parser.parse_args(arguments)
    return int(args.handler(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

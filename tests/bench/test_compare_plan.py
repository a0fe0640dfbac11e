"""``compare``'s options and target planning: --skip, --also, groups and their interleaving,
the --also rows in the markdown. Nothing here starts a server or times anything."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.cli import build_parser
from bench.compare import (
    Also,
    Sizes,
    Spec,
    also_option,
    beside_rows,
    groups,
    interleave,
    markdown,
    plan_targets,
    report_from_file,
    skip_option,
    suite,
)
from tests.bench.test_report_plots import fake_relay

SERVE = "{workers} --host 127.0.0.1 --port {port} --rate-limit 0"
OLD = f"/old/.venv/bin/mcp-tornado serve --workers {SERVE}"


def test_also_option_name_command_and_optional_cwd() -> None:
    assert also_option(f"before={OLD}") == Also("before", OLD, None)
    assert also_option(f"before@/work/before={OLD}") == Also("before", OLD, "/work/before")
    # only the first '=' splits: the command may hold more
    cmd = "x serve --workers={workers} --port={port}"
    assert also_option(f"v1.2_rc-3={cmd}") == Also("v1.2_rc-3", cmd, None)


def test_also_option_tls_takes_certfile_and_keyfile() -> None:
    cmd = f"{OLD} --certfile {{certfile}} --keyfile {{keyfile}}"
    assert also_option(f"tls={cmd}") == Also("tls", cmd, None, tls=True)
    assert not also_option(f"before={OLD}").tls
    with pytest.raises(argparse.ArgumentTypeError):  # both, or neither
        also_option(f"tls={OLD} --certfile {{certfile}}")


@pytest.mark.parametrize(
    "text",
    [
        "before",  # no command
        "before=",
        f"={OLD}",  # no name
        f"my before={OLD}",  # a space in the name
        f"before@={OLD}",  # empty cwd
        "before=x serve --port {port}",  # no {workers}: the NAME-2w label would lie
        "before=x serve --workers {workers}",  # no {port}: nothing to connect to
        "before=x serve --workers {workers} --port {port} --host {host}",
        "before=x serve --workers {workers} --port {port",
    ],
)
def test_also_option_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        also_option(text)


def test_skip_option() -> None:
    assert skip_option("") == set()
    assert skip_option(" baseline, reference ,") == {"baseline", "reference"}
    with pytest.raises(argparse.ArgumentTypeError, match="basline"):
        skip_option("basline")


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["compare", *argv])


def test_compare_cli_defaults_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse()
    assert args.workers == [1, 2, 4] and args.skip == set() and args.also is None
    args = parse(
        "--workers", "1,2", "--skip", "baseline", "--also", f"a={OLD}", "--also", f"b={OLD}"
    )
    assert args.workers == [1, 2] and args.skip == {"baseline"}
    assert [a.name for a in args.also] == ["a", "b"]
    for bad in (["--skip", "mcp,basline"], ["--also", "before=x --port {port}"]):
        with pytest.raises(SystemExit):
            parse(*bad)
        assert "argument --" in capsys.readouterr().err


def names(specs: list[Spec]) -> list[str]:
    return [s.name for s in specs]


def test_plan_puts_each_also_target_after_its_mcp_target(tmp_path: Path) -> None:
    args = parse(
        "--workers",
        "1,2",
        "--skip",
        "baseline",
        "--server-cmd",
        f"{sys.executable} -m mcp_tornado serve --workers {SERVE}",
        "--also",
        f"before@/work/before={OLD}",
    )
    notes: list[str] = []
    specs = plan_targets(args, notes)
    assert names(specs) == [
        "mcp-tornado 1w",
        "before-1w",
        "mcp-tornado 2w",
        "before-2w",
        "picows reference",
    ]
    assert notes == []
    before2 = specs[3]
    assert (before2.kind, before2.workers, before2.beside) == ("mcp", 2, "mcp-tornado 2w")
    assert (before2.command, before2.cwd) == (OLD, "/work/before")  # as given, not resolved
    assert [s.beside for s in specs] == ["", "mcp-tornado 1w", "", "mcp-tornado 2w", ""]


def test_plan_skips(tmp_path: Path) -> None:
    also = ["--also", f"before={OLD}"]
    # without this checkout's server the --also targets still run
    args = parse("--workers", "2", "--skip", "mcp,baseline,reference", *also)
    assert names(plan_targets(args, [])) == ["before-2w"]
    notes: list[str] = []
    args = parse("--workers", "2", "--baseline-dir", str(tmp_path), "--skip", "mcp", *also)
    assert names(plan_targets(args, notes)) == ["before-2w", "picows reference"]
    assert notes and "Channels baseline skipped" in notes[0]


def spec(name: str, workers: int = 2, beside: str = "", kind: str = "mcp") -> Spec:
    return Spec(name, kind, "cmd", workers=workers, beside=beside)


def test_groups_put_an_mcp_target_with_its_also_targets() -> None:
    specs = [
        spec("mcp-tornado 1w", 1),
        spec("a-1w", 1, "mcp-tornado 1w"),
        spec("b-1w", 1, "mcp-tornado 1w"),
        spec("mcp-tornado 2w"),
        spec("a-2w", 2, "mcp-tornado 2w"),
        spec("b-2w", 2, "mcp-tornado 2w"),
        spec("channels baseline", 0, kind="baseline"),
        spec("picows reference", 0, kind="reference"),
    ]
    assert [names(g) for g in groups(specs)] == [
        ["mcp-tornado 1w", "a-1w", "b-1w"],
        ["mcp-tornado 2w", "a-2w", "b-2w"],
        ["channels baseline"],
        ["picows reference"],
    ]


def test_an_also_target_gets_exactly_the_runs_of_its_mcp_target() -> None:
    for sz in (Sizes(), Sizes.quick()):
        for w in (1, 2, 4):
            ours = suite(spec(f"mcp-tornado {w}w", w), sz)
            assert suite(spec(f"before-{w}w", w, f"mcp-tornado {w}w"), sz) == ours
        tests = [test for test, _, _ in suite(spec("mcp-tornado 2w"), sz)]
        assert tests[:4] == ["idle", "connect", "relay_w1", "relay_w8_2procs"]
        assert "idle" not in [test for test, _, _ in suite(spec("mcp-tornado 1w", 1), sz)]


def test_interleave_alternates_which_target_goes_first() -> None:
    group = [spec("mcp-tornado 2w"), spec("before-2w", 2, "mcp-tornado 2w")]
    steps = suite(group[0], Sizes())
    order = [(s.name, step[0]) for s, step in interleave(group, steps)]
    assert order[:6] == [
        ("mcp-tornado 2w", "idle"),
        ("before-2w", "idle"),
        ("before-2w", "connect"),
        ("mcp-tornado 2w", "connect"),
        ("mcp-tornado 2w", "relay_w1"),
        ("before-2w", "relay_w1"),
    ]
    assert len(order) == 2 * len(steps)
    assert interleave(group[:1], steps) == [(group[0], step) for step in steps]


def fake(name: str, test: str, beside: str = "", **metrics: Any) -> dict[str, Any]:
    run = fake_relay(name, 2000, metrics.pop("deliveries_per_s", 0.0))
    run["metrics"].update(metrics)
    run["compare_target"], run["compare_test"] = name, test
    if beside:
        run["compare_beside"] = beside
    return run


def also_runs() -> tuple[list[dict[str, Any]], list[Spec]]:
    ours, old = "mcp-tornado 2w", "before-2w"
    runs = [
        fake(ours, "relay_w1", deliveries_per_s=40_000.0),
        fake(old, "relay_w1", ours, deliveries_per_s=50_000.0),
        fake(ours, "relay_w8_2procs", deliveries_per_s=100_000.0),
        fake(old, "relay_w8_2procs", ours, deliveries_per_s=98_000.0),
        fake("picows reference", "relay_w8_2procs", deliveries_per_s=80_000.0),
        fake(ours, "connect", joins_per_s=4_000.0),
        fake(old, "connect", ours, joins_per_s=4_000.0),
        fake(ours, "idle", server_kib_per_peer=2.2, held=10_000),
        fake(old, "idle", ours, server_kib_per_peer=2.0, held=10_000),
    ]
    specs = [spec(ours), spec(old, 2, ours), spec("picows reference", 0, kind="reference")]
    return runs, specs


def test_beside_rows_ratio_and_change_with_better_as_plus() -> None:
    runs, specs = also_runs()
    rows = {row[0]: row for row in beside_rows(runs, specs)}
    assert rows["relay w1 deliveries/s"] == [
        "relay w1 deliveries/s",
        "mcp-tornado 2w",
        "40,000",
        "before-2w",
        "50,000",
        "0.800",
        "-20.0%",
    ]
    assert rows["relay w8 2 procs deliveries/s"][5:] == ["1.020", "+2.0%"]
    assert rows["connect storm joins/s"][5:] == ["1.000", "+0.0%"]
    # memory: fewer KiB is better, so 2.2 against 2.0 is 10% worse (-9.1% of the other's)
    assert rows["idle server KiB per peer"][2:] == [
        "2.20",
        "before-2w",
        "2.00",
        "1.100",
        "-9.1%",
    ]
    runs[0]["metrics"]["ready_pairs"] = 10  # of 1,000: no ratio from that relay
    rows = {row[0]: row for row in beside_rows(runs, specs)}
    assert rows["relay w1 deliveries/s"][5:] == ["-", "-"]
    assert beside_rows(runs, specs[:1]) == []


def test_markdown_shows_also_targets_next_to_ours(tmp_path: Path) -> None:
    runs, specs = also_runs()
    md = markdown(runs, specs, [], wall=60.0)
    lines = md.splitlines()
    ours = next(i for i, line in enumerate(lines) if line.startswith("| mcp-tornado 2w | 40,000"))
    assert lines[ours + 1].startswith("| before-2w | 50,000 |")
    w8 = "| relay w8 2 procs deliveries/s / reference ({}) |"
    assert w8.format("mcp-tornado 2w") + " 1.25x (100,000 vs 80,000) | >= 1.2x | met |" in md
    assert w8.format("before-2w") + " 1.23x (98,000 vs 80,000) | >= 1.2x | met |" in md
    # a goal whose runs are missing (no reference connect storm here) is not judged
    assert "| connect storm joins/s / reference (before-2w) | - | >= 1x | - |" in md
    assert "| idle server KiB per peer (mcp-tornado 2w) | 2.20 | <= 2.5 KiB | met |" in md
    assert "Beside the --also targets" in md
    assert "| idle server KiB per peer | mcp-tornado 2w | 2.20 | before-2w | 2.00 |" in md
    # re-rendered from the JSON, the --also target is still known as one
    path = report.write_json(tmp_path / "compare.json", runs)
    assert "Beside the --also targets" in report_from_file(path)


def test_compare_runs_only_the_tests_asked_for() -> None:
    from bench.compare import Sizes, selected, suite, tests_option

    with pytest.raises(argparse.ArgumentTypeError, match="relay_w9"):
        tests_option("relay_w1,relay_w9")
    tests = tests_option("relay_w1, relay_w8_2procs")
    spec = Spec("mcp-tornado 2w", "mcp", "x", workers=2)
    chosen = [test for test, _, _ in suite(spec, Sizes()) if selected(test, tests)]
    assert chosen == ["relay_w1", "relay_w8_2procs"]
    assert selected("relay_w1_500", {"relay_w1_N"}) and selected("calls", None)


def test_also_commands_may_take_a_metrics_port() -> None:
    also = also_option(
        "m=mcp-tornado serve --workers {workers} --port {port} --metrics-port {metrics_port}"
    )
    assert "{metrics_port}" in also.command


def calls_sweep(
    name: str, capacity: float | None, reached: bool, **failures: int
) -> dict[str, Any]:
    lines = [{"offered_calls_per_s": 50.0, "failures": failures}]
    metrics = {"capacity_calls_per_s": capacity, "capacity_reached": reached, "sweep": lines}
    return {"compare_target": name, "compare_test": "calls", "metrics": metrics}


def openloop(name: str, cross: float | None, p99: float) -> dict[str, Any]:
    steps = [{"metrics": {"latency_ms": {"p99": p99}}}]
    sweep = [
        {"offered_msgs_per_s": 5000.0, "p99_ms": p99},
        {"offered_msgs_per_s": 40_000.0, "p99_ms": 40.0},
    ]
    metrics = {"sweep": sweep, "p99_crosses_50ms_at_msgs_per_s": cross}
    return {"compare_target": name, "compare_test": "openloop", "metrics": metrics, "steps": steps}


def test_issue17_targets_ratios_bounds_and_verdicts() -> None:
    from bench.compare import target_rows

    ours, ref = "mcp-tornado 2w", "picows reference"
    runs = [
        calls_sweep(ours, 400.0, True),
        calls_sweep(ref, 566.0, True),
        openloop(ours, 30_000.0, 3.0),
        openloop(ref, None, 2.0),  # never crossed up to 40,000: a lower bound
        fake(ours, "connect", joins_per_s=6_000.0),
        fake(ref, "connect", joins_per_s=5_000.0),
        fake(ours, "idle", server_kib_per_peer=2.6),
        fake(ours, "relay_w1", lost=1, reordered=2),
    ]
    rows = {r[0].removesuffix(f" ({ours})"): r[1:] for r in target_rows(runs, ours, ref)}
    calls = rows["call set-ups/s, p99 <= 100 ms, 0 failed / reference"]
    assert calls == ["0.71x (400 vs 566)", ">= 1x", "NOT met"]
    # ours crossed at 30,000, the reference not even at 40,000: at most 0.75x, not met
    cap = rows["open-loop capacity (p99 crosses 50 ms), msg/s / reference"]
    assert cap == ["<= 0.75x (30,000 vs > 40,000)", ">= 1x", "NOT met"]
    assert rows["open-loop p99 at 1,000 pairs x 5 msg/s / reference"] == [
        "1.50x (3.00 vs 2.00 ms)", "<= 1.2x", "NOT met",
    ]  # fmt: skip
    assert rows["connect storm joins/s / reference"][1:] == [">= 1x", "met"]
    assert rows["relay w8 2 procs deliveries/s / reference"] == ["-", ">= 1.2x", "-"]
    assert rows["idle server KiB per peer"] == ["2.60", "<= 2.5 KiB", "NOT met"]
    assert rows["lost + reordered + duplicated, every run"] == ["3", "0", "NOT met"]
    # ours never stopped, the reference did: a lower bound that meets the goal
    runs[0] = calls_sweep(ours, 800.0, False)
    rows = {r[0].removesuffix(f" ({ours})"): r[1:] for r in target_rows(runs, ours, ref)}
    assert rows["call set-ups/s, p99 <= 100 ms, 0 failed / reference"] == [
        ">= 1.41x (> 800 vs 566)", ">= 1x", "met",
    ]  # fmt: skip
    # ... and a call lost in the step that stopped a sweep is a lost message
    runs[0] = calls_sweep(ours, 50.0, True, lost_message=1)
    rows = {r[0].removesuffix(f" ({ours})"): r[1:] for r in target_rows(runs, ours, ref)}
    assert rows["lost + reordered + duplicated, every run"] == ["4", "0", "NOT met"]


def test_issue17_targets_when_the_reference_failed_at_its_first_rate() -> None:
    """A capacity under the sweep's first rate is an upper bound: ours / it is at least."""
    from bench.compare import target_rows

    ours, ref = "mcp-tornado 2w", "picows reference"
    runs = [
        calls_sweep(ours, 100.0, True),
        calls_sweep(ref, None, True),  # p99 over 100 ms already at 50 calls/s
        openloop(ours, 5_023.0, 40.0),
        openloop(ref, 5_000.0, 1_152.0),  # past 50 ms at the first rate (5,000 msg/s)
    ]
    rows = {r[0].removesuffix(f" ({ours})"): r[1:] for r in target_rows(runs, ours, ref)}
    assert rows["call set-ups/s, p99 <= 100 ms, 0 failed / reference"] == [
        ">= 2.00x (100 vs < 50)", ">= 1x", "met",
    ]  # fmt: skip
    assert rows["open-loop capacity (p99 crosses 50 ms), msg/s / reference"] == [
        ">= 1.00x (5,023 vs <= 5,000)", ">= 1x", "met",
    ]  # fmt: skip
    # both failed at their first rate: bounds pulling both ways, nothing to judge
    runs[0] = calls_sweep(ours, None, True)
    rows = {r[0].removesuffix(f" ({ours})"): r[1:] for r in target_rows(runs, ours, ref)}
    assert rows["call set-ups/s, p99 <= 100 ms, 0 failed / reference"] == [
        "~1.00x (< 50 vs < 50)", ">= 1x", "-",
    ]  # fmt: skip

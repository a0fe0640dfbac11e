"""Result JSON files, summary tables, markdown and PNG plots, on synthetic runs."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench import plots, report
from bench.compare import Spec, cross_text, markdown
from bench.runner import split_pairs
from bench.stats import cdf_points, summarize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_relay(label: str, peers: int, rate: float, window: int = 1) -> dict[str, Any]:
    lat = [0.5 + (i % 100) / 10 for i in range(2000)]
    return {
        "scenario": "relay",
        "label": label,
        "url": "ws://127.0.0.1:1/ws/signal/",
        "params": {"peers": peers, "pairs": peers // 2, "window": window, "procs": 1},
        "metrics": {
            "ready_pairs": peers // 2,
            "deliveries_per_s": rate,
            "round_trips_per_s": rate / 2,
            "latency_ms": summarize(lat),
            "lost": 0,
            "reordered": 0,
            "duplicates": 0,
            "errors": {},
        },
        "cdf": [list(p) for p in cdf_points(lat)],
        "server": {"cpu_pct": 150.0, "cpu_pct_by_label": {"router": 60.0, "worker": 90.0}},
        "client": {"cpu_pct": 80.0, "procs_cpu_pct": [40.0, 40.0]},
    }


def fake_openloop(label: str) -> dict[str, Any]:
    run = fake_relay(label, 2000, 10000.0)
    run["scenario"] = "openloop"
    sweep = [
        {"offered_msgs_per_s": 5000.0, "p99_ms": 5.0},
        {"offered_msgs_per_s": 10000.0, "p99_ms": 30.0},
        {"offered_msgs_per_s": 20000.0, "p99_ms": 70.0},
    ]
    run["metrics"]["sweep"] = sweep
    run["metrics"]["p99_crosses_50ms_at_msgs_per_s"] = 15000.0
    run["steps"] = [{"metrics": run["metrics"]}]
    return run


def test_json_file_is_strict_and_round_trips(tmp_path: Path) -> None:
    run = fake_relay("a", 200, 1234.5)
    run["metrics"]["latency_ms"]["p99"] = math.nan  # NaN must become null
    run["raw"] = b"bytes are dropped"
    path = report.write_json(tmp_path / "sub" / "r.json", [run], argv=["bench", "relay"])
    text = path.read_text()
    doc = json.loads(text)  # strict JSON: no NaN tokens
    assert "NaN" not in text
    assert doc["format"] == report.RESULT_FORMAT
    assert doc["argv"] == ["bench", "relay"]
    assert {"cpu_model", "cores", "ram_gib", "python"} <= set(doc["machine"])
    assert doc["runs"][0]["metrics"]["latency_ms"]["p99"] is None
    assert doc["runs"][0]["raw"] is None
    assert report.read_json(path)["runs"][0]["label"] == "a"


def test_read_json_rejects_other_files(tmp_path: Path) -> None:
    other = tmp_path / "x.json"
    other.write_text('{"hello": 1}')
    with pytest.raises(ValueError):
        report.read_json(other)


def test_summary_table_mentions_the_figures() -> None:
    out = io.StringIO()
    report.print_summary([fake_relay("srv", 2000, 50_000.0), fake_openloop("srv")], out)
    text = out.getvalue()
    assert "deliveries/s (one-way)" in text and "50,000" in text
    assert "router 60%" in text
    assert "p99 crosses 50 ms at" in text and "15,000" in text


def test_fmt() -> None:
    assert report.fmt(None) == "-"
    assert report.fmt(math.nan) == "-"
    assert report.fmt(12345.6) == "12,346"
    assert report.fmt(3.14159, 2) == "3.14"
    assert report.fmt(7) == "7"


def fake_calls_sweep(label: str) -> dict[str, Any]:
    """A call set-up sweep that stopped at 200 calls/s on a failed call."""
    lines = [
        {"offered_calls_per_s": 100.0, "p99_ms": 20.0, "failed": 0},
        {"offered_calls_per_s": 141.0, "p99_ms": 60.0, "failed": 0},
        {"offered_calls_per_s": 200.0, "p99_ms": 80.0, "failed": 1},
    ]
    metrics = {"sweep": lines, "capacity_calls_per_s": 141.0, "capacity_reached": True}
    return {"scenario": "calls_sweep", "label": label, "metrics": metrics, "cdf": []}


def test_plots_write_png_files(tmp_path: Path) -> None:
    runs = [
        fake_relay("one", 500, 20_000.0),
        fake_relay("one", 2000, 30_000.0),
        fake_relay("two", 500, 25_000.0),
        fake_relay("two", 2000, 40_000.0, window=8),
        fake_openloop("one"),
        fake_calls_sweep("one"),
    ]
    made = plots.all_plots(runs, tmp_path / "png")
    names = sorted(p.name for p in made)
    assert names == [
        "calls_sweep.png", "comparison.png", "latency_cdf.png", "openloop_sweep.png", "scaling.png",
    ]  # fmt: skip
    for path in made:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_plots_skip_when_nothing_to_draw(tmp_path: Path) -> None:
    assert plots.latency_cdf([], tmp_path / "x.png") is None
    assert plots.scaling([{"metrics": {}}], tmp_path / "y.png") is None
    assert not (tmp_path / "x.png").exists()


def test_compare_markdown_has_machine_targets_and_ratios() -> None:
    runs = []
    for name, rate in (("mcp-tornado 2w", 40_000.0), ("channels baseline", 400.0)):
        r = fake_relay(name, 2000, rate)
        r["compare_target"], r["compare_test"] = name, "relay_w1"
        runs.append(r)
    ol = fake_openloop("mcp-tornado 2w")
    ol["compare_target"], ol["compare_test"] = "mcp-tornado 2w", "openloop"
    runs.append(ol)
    specs = [
        Spec("mcp-tornado 2w", "mcp", "x", workers=2),
        Spec("channels baseline", "baseline", "y"),
    ]
    md = markdown(runs, specs, ["a note"], wall=60.0)
    assert "Machine:" in md and "cores" in md and "Python" in md
    assert "| mcp-tornado 2w | 40,000 |" in md
    assert "Targets of issue 17" in md and "Targets of issue 4" not in md
    assert "| lost + reordered + duplicated, every run (mcp-tornado 2w) | 0 | 0 | met |" in md
    assert "- a note" in md
    assert cross_text(ol) == "15,000"


def test_compare_markdown_window8_ratios_against_the_reference() -> None:
    """mcp-tornado 2w relay w8 / the reference relay: met at >= 1.2x; no ratio when too
    few pairs of a run got ready."""
    runs = []
    for name, rate in (
        ("mcp-tornado 1w", 80_000.0),
        ("mcp-tornado 2w", 130_000.0),
        ("picows reference", 100_000.0),
    ):
        r = fake_relay(name, 2000, rate, window=8)
        r["compare_target"], r["compare_test"] = name, "relay_w8_2procs"
        runs.append(r)
    specs = [Spec(r["compare_target"], "", "") for r in runs]
    md = markdown(runs, specs, [], wall=60.0)
    w8 = "| relay w8 2 procs deliveries/s / reference (mcp-tornado 2w) |"
    assert w8 + " 1.30x (130,000 vs 100,000) | >= 1.2x | met |" in md
    assert "(mcp-tornado 1w)" not in md  # the goals are the 2-worker server's
    runs[1]["metrics"]["ready_pairs"] = 500  # of 1,000
    md = markdown(runs, specs, [], wall=60.0)
    assert w8 + " - | >= 1.2x | - |" in md


def test_split_pairs() -> None:
    assert split_pairs(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert split_pairs(1, 4) == [(0, 1)]
    assert split_pairs(0, 2) == [(0, 0)]


def test_url_from_spawn_command() -> None:
    from bench.cli import url_from_spawn

    assert url_from_spawn("mcp-tornado serve --workers 2 --port 8765") == (
        "ws://127.0.0.1:8765/ws/signal/"
    )
    assert url_from_spawn("daphne -b 127.0.0.1 -p 9000 mcp_server.asgi:application") == (
        "ws://127.0.0.1:9000/ws/signal/"
    )
    assert url_from_spawn("server --host=127.0.0.2 --port=1") == "ws://127.0.0.2:1/ws/signal/"
    assert url_from_spawn("server") is None
    assert url_from_spawn("mcp-tornado serve --port 1 --certfile c.pem --keyfile k.pem") == (
        "wss://127.0.0.1:1/ws/signal/"
    )


def test_report_rerenders_compare_json(tmp_path: Path) -> None:
    from bench.compare import report_from_file

    run = fake_relay("mcp-tornado 2w", 2000, 40_000.0)
    run["compare_target"], run["compare_test"] = "mcp-tornado 2w", "relay_w1"
    path = report.write_json(tmp_path / "compare.json", [run])
    md = report_from_file(path, tmp_path / "png")
    assert "| mcp-tornado 2w | 40,000 |" in md and "re-rendered" in md
    assert (tmp_path / "png" / "compare_relay_w1_cdf.png").exists()


def test_progress_line() -> None:
    from bench.progress import Progress

    out = io.StringIO()
    bar = Progress("relay[x]", duration=10.0, stream=out)
    bar.update("measure", 500, force=True)
    bar.finish()
    line = out.getvalue()
    assert line.startswith("relay[x] measure") and "count=500" in line and "%" in line
    assert Progress("t", total=100).render("connect", 50).count("#") == 15
    quiet = io.StringIO()
    Progress("t", stream=quiet, enabled=False).update("x", 1, force=True)
    assert quiet.getvalue() == ""


def test_scenario_params_keep_their_names_order_and_defaults() -> None:
    """The params block of every result file (and the summary's params line)."""
    from bench.drivers import SCENARIOS, run_params

    expected = {
        "relay": "pairs peers procs window messages duration concurrency setup_timeout "
        "drain_timeout url_b",
        "openloop": "pairs peers procs rates duration stop_p99_ms concurrency setup_timeout "
        "drain_timeout url_b",
        "churn": "pairs peers procs duration rejoin_delay setup_timeout",
        "connect": "peers pairs procs concurrency wait_joined setup_timeout",
        "idle": "peers pairs procs hold ping_interval settle concurrency setup_timeout",
        "calls": "pairs peers procs rate duration call_timeout arrivals url_b",
    }
    assert {name: " ".join(run_params(name)) for name in SCENARIOS} == expected
    assert run_params("connect", peers=201) == {
        "peers": 200,
        "pairs": 100,
        "procs": 1,
        "concurrency": 64,
        "wait_joined": 0.0,
        "setup_timeout": 30.0,
    }
    assert run_params("churn", pairs=5)["peers"] == 10
    # calls: one "pair" per call (rate x duration)
    assert run_params("calls", rate=20.0, duration=1.5)["pairs"] == 30
    with pytest.raises(TypeError, match="window"):
        run_params("churn", window=2)


def test_cli_scenario_options_and_defaults() -> None:
    from bench.cli import build_parser

    parse = build_parser().parse_args

    def opts(argv: list[str]) -> dict[str, Any]:
        args = vars(parse(argv))
        return {k: args[k] for k in args if k not in ("command", "url", "label", "spawn")}

    common = {
        "spawn_cwd": None,
        "server_pid": None,
        "metrics_url": None,
        "procs": 1,
        "out": None,
        "plot_dir": None,
        "no_progress": False,
        "timeout": 600.0,
        "ca": None,
        "insecure": False,
    }
    assert opts(["relay"]) == {
        **common,
        "peers": [2000],
        "window": 1,
        "messages": 1_000_000,
        "duration": 10.0,
        "concurrency": 200,
        "url_b": "",
    }
    assert opts(["openloop", "--rate", "5,10", "--stop-p99", "20", "--pairs", "7"]) == {
        **common,
        "pairs": 7,
        "rates": [5.0, 10.0],
        "duration": 10.0,
        "stop_p99_ms": 20.0,
        "concurrency": 200,
        "url_b": "",
    }
    assert opts(["churn", "--rejoin-delay", "0.5"]) == {
        **common,
        "pairs": 100,
        "duration": 10.0,
        "rejoin_delay": 0.5,
    }
    assert opts(["connect", "--peers", "10,20", "--wait-joined", "1"]) == {
        **common,
        "peers": [10, 20],
        "concurrency": 64,
        "wait_joined": 1.0,
    }
    assert opts(["idle", "--procs", "2", "--ping-interval", "1"]) == {
        **common,
        "procs": 2,
        "peers": [10000],
        "hold": 20.0,
        "ping_interval": 1.0,
        "concurrency": 64,
    }
    assert opts(["calls", "--arrivals", "even"])["arrivals"] == "even"
    assert opts(["calls"])["arrivals"] == "poisson"
    with pytest.raises(SystemExit):
        parse(["calls", "--arrivals", "bursty"])

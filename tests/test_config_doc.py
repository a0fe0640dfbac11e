"""The README's table of configuration keys is generated from the definitions and matches them."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_tornado import config, config_doc
from mcp_tornado.settings import Flag

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_table_matches_the_definitions() -> None:
    text = README.read_text()
    assert config_doc.splice(text) == text, (
        f"README.md's configuration table is out of date: run `{config_doc.COMMAND}`"
    )


def test_every_key_has_a_row_with_its_flag_variable_and_default() -> None:
    rows = config_doc.table().splitlines()[2:]
    assert len(rows) == len(config.all_keys())
    for row, (key, shared) in zip(rows, config.all_keys().items(), strict=True):
        cells = row.strip("| ").split(" | ")
        flag = shared[0].flag
        assert cells[:2] == [f"`{key}`", f"`{flag.name}`"]
        assert cells[2].startswith(f"`{flag.env}`")
    assert "| `rate_limit` | `--rate-limit` | `MCP_TORNADO_RATE_LIMIT` | 50 | serve, worker |" in (
        config_doc.table()
    )


def test_a_changed_setting_changes_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    before = config_doc.table()
    leaf = config.all_keys()["rate_limit"][0]
    changed = leaf._replace(flag=Flag("--rate-limit", "a *new* | <meaning>"))
    monkeypatch.setattr(config_doc, "all_keys", lambda: {"rate_limit": [changed]})
    after = config_doc.table()
    assert after != before
    assert "a \\*new\\* \\| \\<meaning>" in after


def test_regenerating_rewrites_only_the_table(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{config_doc.BEGIN}\nstale\n{config_doc.END}\nafter\n")
    config_doc.main([str(readme)])
    text = readme.read_text()
    assert text.startswith(f"before\n{config_doc.BEGIN}\n| key |") and text.endswith(
        f"{config_doc.END}\nafter\n"
    )
    assert "stale" not in text
    config_doc.main([str(readme)])
    assert readme.read_text() == text

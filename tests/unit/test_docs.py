"""The documentation cannot drift from the code.

* docs/configuration.md's settings table lists exactly the ``ccs_beat_*``
  settings that :func:`ccs_beat.policy.load_settings` accepts, each with the
  default the code uses;
* every overlap policy and ``on_unknown`` value the code accepts is documented
  (and no other);
* the site builds with ``mkdocs build --strict``: no broken link or anchor, no
  page left out of the nav.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ccs_beat.errors import ConfigurationError
from ccs_beat.identity import KEY_ARGS, KEY_NAME
from ccs_beat.policy import ON_UNKNOWN, OVERLAPS, PREFIX, Settings, known_settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"

#: a row of the settings table: | `ccs_beat_x` | `default` | range | meaning |
SETTING_ROW = re.compile(r"^\|\s*`(ccs_beat_\w+)`\s*\|\s*`([^`]*)`\s*\|")


def _settings_table() -> dict[str, str]:
    """``{setting name: documented default}`` from configuration.md's table."""
    rows: dict[str, str] = {}
    for line in CONFIGURATION.read_text(encoding="utf-8").splitlines():
        match = SETTING_ROW.match(line)
        if match:
            name, default = match.groups()
            assert name not in rows, f"{name} appears twice in the settings table"
            rows[name] = default
    assert rows, "no settings table found in docs/configuration.md"
    return rows


def _accepted_settings() -> set[str]:
    """The ``ccs_beat_*`` names load_settings accepts: the table it validates
    unknown keys against."""
    return set(known_settings())


def _section(path: Path, heading: str) -> str:
    """The text under a markdown heading, up to the next heading of any level
    (lines starting with ``#`` inside code fences are not headings)."""
    body: list[str] = []
    found = in_fence = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        is_heading = line.startswith("#") and not in_fence
        if found:
            if is_heading:
                break
            body.append(line)
        elif is_heading and line.lstrip("#").strip() == heading:
            found = True
    assert found, f"no heading {heading!r} in {path.name}"
    return "\n".join(body)


def _bulleted_values(text: str) -> set[str]:
    """The code-formatted word opening each bullet: "- `skip` (default) — ..."."""
    return set(re.findall(r"^- `([^`]+)`", text, flags=re.MULTILINE))


# -- (a) the settings table --------------------------------------------------------


def test_the_loader_rejects_a_setting_it_does_not_know():
    # the premise of the tests below: known_settings() is what the code accepts
    with pytest.raises(ConfigurationError, match="unknown setting"):
        load_settings({PREFIX + "no_such_setting": 1})


def test_every_settings_field_can_be_set_through_the_loader():
    fields = {PREFIX + field.name for field in dataclasses.fields(Settings)}
    assert fields <= _accepted_settings()


def test_every_setting_the_code_accepts_is_in_the_configuration_table():
    missing = sorted(_accepted_settings() - set(_settings_table()))
    assert not missing, f"docs/configuration.md does not document {missing}"


def test_the_configuration_table_names_no_setting_the_code_does_not_know():
    unknown = sorted(set(_settings_table()) - _accepted_settings())
    assert not unknown, f"docs/configuration.md documents unknown settings {unknown}"


def test_every_documented_default_is_the_default_the_code_uses():
    defaults = Settings()
    fields = {field.name for field in dataclasses.fields(Settings)}
    wrong = []
    for name, documented in _settings_table().items():
        short = name[len(PREFIX):]
        if short not in fields:   # read by another module: no default in Settings
            continue
        expected = getattr(defaults, short)
        # the documented value, fed to the real loader, must give the code's default
        try:
            loaded = getattr(load_settings({name: ast.literal_eval(documented)}), short)
        except (ValueError, SyntaxError, ConfigurationError) as exc:
            wrong.append(f"{name}: documented `{documented}` is not accepted ({exc})")
            continue
        if loaded != expected:
            wrong.append(f"{name}: documented `{documented}`, the code uses {expected!r}")
        elif isinstance(expected, float) and documented != repr(expected):
            # written the way the code writes it: `1.0`, not `1`
            wrong.append(f"{name}: write the default as `{expected!r}`, not `{documented}`")
    assert not wrong, "\n".join(wrong)


# -- (b) policy values -------------------------------------------------------------


def test_the_overlap_section_lists_exactly_the_overlap_policies_of_the_code():
    documented = _bulleted_values(_section(CONFIGURATION, "`overlap`"))
    assert documented == set(OVERLAPS)


def test_the_on_unknown_section_lists_exactly_the_on_unknown_values_of_the_code():
    documented = _bulleted_values(_section(CONFIGURATION, "`on_unknown`"))
    assert documented == set(ON_UNKNOWN)


@pytest.mark.parametrize("page", ["configuration.md", "concepts.md"])
def test_every_overlap_and_on_unknown_value_appears_on_the_page(page):
    text = (DOCS / page).read_text(encoding="utf-8")
    for value in (*OVERLAPS, *ON_UNKNOWN):
        assert f"`{value}`" in text, f"{value!r} is missing from docs/{page}"


def test_the_key_words_of_the_code_are_documented():
    text = _section(CONFIGURATION, '`key`: what "identical" means')
    for word in (KEY_ARGS, KEY_NAME):
        assert f'`"{word}"`' in text, word


# -- (c) the site ------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs is not installed")
def test_the_documentation_site_builds_in_strict_mode(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "index.html").is_file()


# -- (d) the guarantees page -------------------------------------------------------


def test_every_test_the_guarantees_page_names_exists():
    text = (DOCS / "guarantees.md").read_text(encoding="utf-8")
    named = re.findall(r"`([a-z_/]+\.py)::(test_\w+)`", text)
    files = re.findall(r"`([a-z_/]+\.py)`", text)
    assert len(named) > 50
    missing = [f"{path}::{name}" for path, name in named
               if f"def {name}(" not in (ROOT / "tests" / path).read_text(encoding="utf-8")]
    missing += [path for path in files if not (ROOT / "tests" / path).is_file()]
    assert not missing, f"docs/guarantees.md names tests that do not exist: {missing}"

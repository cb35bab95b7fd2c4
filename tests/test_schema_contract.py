"""schema.graphql is the contract frontend teams generate code from: it must match the code, and
changes that would break their clients must be named before they land."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli import SCHEMA_FILE, breaking_changes, current_sdl
from tests.conftest import ROOT

pytestmark = pytest.mark.one_path  # the resolver pass skips it (pyproject.toml: markers)

QUILL = Path(sys.executable).parent / "quill"


def _edited(old: str, new: str) -> str:
    committed = SCHEMA_FILE.read_text()
    assert committed.count(old) == 1, old
    return committed.replace(old, new)


def test_committed_schema_is_current() -> None:
    assert SCHEMA_FILE.read_text() == current_sdl(), "schema.graphql is stale: run `make schema`"


def test_the_committed_schema_has_no_breaking_changes_against_itself() -> None:
    assert breaking_changes(SCHEMA_FILE.read_text(), current_sdl()) == []


def test_a_removed_field_is_named() -> None:
    committed = SCHEMA_FILE.read_text()
    without_title = _edited(
        "  title: String!\n  content: String!\n  datePosted", "  content: String!\n  datePosted"
    )

    changes = breaking_changes(committed, without_title)

    assert [(c.type.name, c.description) for c in changes] == [
        ("FIELD_REMOVED", "Field Post.title was removed.")
    ]


def test_tightened_nullability_is_named() -> None:
    committed = SCHEMA_FILE.read_text()
    # An output that may now be null breaks clients that trusted it; an argument that is now
    # required breaks every call that leaves it out.
    looser_output = _edited("  isSuperuser: Boolean!\n", "  isSuperuser: Boolean\n")
    required_argument = _edited("  user(by: UserBy = null,", "  user(by: UserBy!,")

    output_changes = breaking_changes(committed, looser_output)
    argument_changes = breaking_changes(committed, required_argument)

    assert [(c.type.name, c.description) for c in output_changes] == [
        ("FIELD_CHANGED_KIND", "Field User.isSuperuser changed type from Boolean! to Boolean.")
    ]
    assert [c.type.name for c in argument_changes] == ["ARG_CHANGED_KIND"]
    assert "Query.user(by:) has changed type from UserBy to UserBy!" in argument_changes[0].description


def test_a_removed_enum_value_is_named() -> None:
    committed = SCHEMA_FILE.read_text()
    fewer_kinds = _edited("  CREATED\n  UPDATED\n  DELETED\n", "  CREATED\n  UPDATED\n")

    changes = breaking_changes(committed, fewer_kinds)

    assert [(c.type.name, c.description) for c in changes] == [
        ("VALUE_REMOVED_FROM_ENUM", "Enum value ChangeKind.DELETED was removed.")
    ]


def test_additions_are_not_breaking() -> None:
    committed = SCHEMA_FILE.read_text()
    with_more = _edited("  isSuperuser: Boolean!\n", "  isSuperuser: Boolean!\n  bio: String\n")

    assert breaking_changes(committed, with_more) == []


def _quill(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(QUILL), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_check_schema_command_passes_on_the_committed_schema() -> None:
    done = _quill("check-schema")

    assert done.returncode == 0, done.stderr
    assert "no breaking changes" in done.stdout


def test_check_schema_command_fails_and_names_each_change(tmp_path: Path) -> None:
    older = tmp_path / "schema.graphql"
    # The committed schema had a field and an enum value the code no longer has.
    older.write_text(
        _edited("  CREATED\n  UPDATED\n", "  CREATED\n  ARCHIVED\n  UPDATED\n").replace(
            "  isSuperuser: Boolean!\n", "  isSuperuser: Boolean!\n  karma: Int!\n"
        )
    )

    done = _quill("check-schema", "--committed", str(older))

    assert done.returncode == 1
    assert "BREAKING FIELD_REMOVED: Field User.karma was removed." in done.stdout
    assert "BREAKING VALUE_REMOVED_FROM_ENUM: Enum value ChangeKind.ARCHIVED was removed." in done.stdout
    assert "2 breaking change(s)" in done.stderr


def test_export_schema_command_prints_the_committed_sdl(tmp_path: Path) -> None:
    printed = _quill("export-schema")
    written = _quill("export-schema", "-o", str(tmp_path / "out.graphql"))

    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == SCHEMA_FILE.read_text()
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "out.graphql").read_text() == SCHEMA_FILE.read_text()

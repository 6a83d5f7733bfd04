"""The personal-data map (services/accounts/personal_data.py) covers the schema: a column
that points at a user, or whose name looks personal, cannot be added without a fate."""

from __future__ import annotations

import re

from sqlalchemy import Column

from models import Base
from services.accounts.personal_data import NOT_PERSONAL, PERSONAL_DATA, fates_by_table

# Names that usually hold something about a person. Deliberately broad: a false alarm costs
# one line in NOT_PERSONAL with its reason; a miss leaks data past a deletion.
PERSONAL_LOOKING = re.compile(
    r"email|name|phone|bio|^lat$|^lng$|address|body|comment|note|details|attributes|token"
    r"|^key$|filename|arn$|^ip|reason|title|^data$|payload|value|username|sub$|session"
)


def _points_at_users(column: Column[object]) -> bool:
    return any(fk.column.table.name == "users" for fk in column.foreign_keys)


def test_every_column_that_points_at_a_user_is_a_link_the_purge_follows() -> None:
    missing = [
        f"{table.name}.{column.name}"
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if _points_at_users(column)
        and column.name not in {link.column for link in _links(table.name)}
    ]
    assert missing == [], f"add these to PERSONAL_DATA as links: {missing}"


def test_every_personal_looking_column_has_a_fate_or_a_reason_it_is_not_personal() -> None:
    fates = fates_by_table()
    missing = [
        f"{table.name}.{column.name}"
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if PERSONAL_LOOKING.search(column.name)
        and column.name not in fates.get(table.name, {})
        and column.name not in NOT_PERSONAL.get(table.name, {})
    ]
    assert missing == [], (
        f"give these a fate in PERSONAL_DATA (or a reason in NOT_PERSONAL): {missing}"
    )


def test_the_map_names_only_tables_and_columns_that_exist() -> None:
    tables = Base.metadata.tables
    named = {table: set(columns) for table, columns in fates_by_table().items()}
    for table, columns in NOT_PERSONAL.items():
        named.setdefault(table, set()).update(columns)
    for table, columns in named.items():
        assert table in tables, table
        assert columns <= set(tables[table].columns.keys()), (
            table,
            columns - set(tables[table].columns.keys()),
        )


def test_every_kept_or_not_personal_column_says_why() -> None:
    reasons = [r for entry in PERSONAL_DATA.values() for r in entry.keep.values()]
    reasons += [r for columns in NOT_PERSONAL.values() for r in columns.values()]
    assert reasons and all(len(reason.split()) >= 3 for reason in reasons)


def test_the_users_row_is_emptied_last_and_keeps_only_what_refuses_old_tokens() -> None:
    assert list(PERSONAL_DATA)[-1] == "users"
    fates = fates_by_table()["users"]
    kept = {column for column, fate in fates.items() if fate == "keep"}
    assert kept == {"id", "cognito_sub"}
    for column in ("email", "display_name", "phone", "cognito_username", "avatar_upload_id"):
        assert fates[column] == "anonymise"


def _links(table: str):  # type: ignore[no-untyped-def]
    entry = PERSONAL_DATA.get(table)
    return entry.links if entry else ()

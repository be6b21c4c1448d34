"""DICOM wildcard matching (``*`` any run, ``?`` one character; PS3.4 C.2.2.2.4) in SQL.

A pattern becomes an escaped ``GLOB`` (SQLite) or ``LIKE`` (PostgreSQL, MySQL/MariaDB)
pattern, never a regular expression. A backtracking regex took 25-180 s on a pattern with many
``*`` against a long name and held a worker the whole time (issue 13, finding 5); the
databases' own LIKE/GLOB matchers give up on a ``*`` as soon as the rest of the pattern cannot
match any later position, so the cost stays about (value length x pattern length). Patterns
are capped at ``MAX_PATTERN_LENGTH`` characters and runs of ``*`` are one ``*``.

Two lookups, registered on ``CharField`` and ``TextField`` when this module is imported:

* ``field__dicom_wildcard=pattern``: case-sensitive, as DICOM matches most attributes;
* ``field__dicom_iwildcard=pattern``: case-insensitive (person names): ``LOWER()`` on both
  sides, so it does not depend on the column's collation.
"""

from __future__ import annotations

import re
from typing import Any

from django.db.models import CharField, Lookup, TextField

# Longer than any value a DICOM string attribute can hold (PN: 64 characters per component
# group, LO: 64), so no real query is refused.
MAX_PATTERN_LENGTH = 128


class WildcardError(ValueError):
    """A pattern that is refused (too long): answered with 400 / a C-FIND failure."""


def has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def pattern_normalise(pattern: str) -> str:
    """The pattern with each run of ``*`` as one ``*`` (the same matches); refuses one longer
    than ``MAX_PATTERN_LENGTH``."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise WildcardError(
            f"a wildcard pattern may have at most {MAX_PATTERN_LENGTH} characters "
            f"(this one has {len(pattern)})"
        )
    return re.sub(r"\*{2,}", "*", pattern)


def like_pattern(pattern: str) -> str:
    """The SQL LIKE pattern (escape character ``\\``) for a DICOM wildcard pattern."""
    out = []
    for ch in pattern_normalise(pattern):
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def glob_pattern(pattern: str) -> str:
    """The SQLite GLOB pattern for a DICOM wildcard pattern (GLOB has no escape character:
    a literal ``[`` is written ``[[]``; ``*`` and ``?`` never reach it as literals, since
    DICOM has no way to escape them either)."""
    out = []
    for ch in pattern_normalise(pattern):
        out.append("[[]" if ch == "[" else ch)
    return "".join(out)


class _WildcardLookup(Lookup):  # type: ignore[type-arg]
    case_insensitive = False
    prepare_rhs = False
    can_use_none_as_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        if not isinstance(self.rhs, str):
            raise TypeError(f"{self.lookup_name} takes a pattern string")
        lhs_sql, lhs_params = self.process_lhs(compiler, connection)
        pattern = self.rhs.lower() if self.case_insensitive else self.rhs
        if self.case_insensitive:
            lhs_sql = f"LOWER({lhs_sql})"
        if connection.vendor == "sqlite":
            # SQLite's LIKE ignores ASCII case; GLOB does not, so both lookups use GLOB.
            return f"{lhs_sql} GLOB %s", [*lhs_params, glob_pattern(pattern)]
        if connection.vendor == "mysql":
            # Backslash is MySQL's default LIKE escape; BINARY keeps case (as Django's
            # own ``contains`` does there).
            return f"{lhs_sql} LIKE BINARY %s", [*lhs_params, like_pattern(pattern)]
        # PostgreSQL (and any other backend): LIKE is case-sensitive, escape is backslash.
        return f"{lhs_sql} LIKE %s", [*lhs_params, like_pattern(pattern)]


class DicomWildcard(_WildcardLookup):
    lookup_name = "dicom_wildcard"


class DicomIWildcard(_WildcardLookup):
    lookup_name = "dicom_iwildcard"
    case_insensitive = True


for _field in (CharField, TextField):
    _field.register_lookup(DicomWildcard)
    _field.register_lookup(DicomIWildcard)

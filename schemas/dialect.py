"""The one reading of `format` and `pattern` that the fast and the precise validator share.

Both validators must accept and refuse exactly the same events, so nothing here is left to a
library default:

- Formats: only `date-time` and `uuid` are used by our schemas, and both validators check them
  with the functions below (fastjsonschema through `formats=`, jsonschema through a FormatChecker
  that knows only these). jsonschema's own date-time check needs an optional package and is
  silently skipped without it; fastjsonschema's accepts leap seconds that `datetime` cannot parse.
- `date-time` is RFC 3339 with a mandatory offset, and additionally parseable by
  `datetime.fromisoformat` (so no leap second `:60`): every consumer can parse what we accept.
- `uuid` is the canonical 8-4-4-4-12 hex form, any version, either case.
- `pattern`: `$` means end of string. fastjsonschema rewrites an unescaped `$` to `\\Z`; Python's
  `re` (used by jsonschema) would also match before a trailing newline, letting "acme\\n" through.
  `anchored` applies fastjsonschema's rewrite for the precise validator.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import datetime

_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")  # the same finder fastjsonschema uses


def is_date_time(value: object) -> bool:
    """RFC 3339 date-time with an offset, that `datetime.fromisoformat` also parses."""
    if not isinstance(value, str):
        return True  # formats constrain strings only; `type` judges the rest
    if not _DATE_TIME.fullmatch(value):
        return False
    normalized = value.upper().replace("Z", "+00:00")
    try:
        datetime.fromisoformat(normalized)
    except ValueError:
        return False
    return True


def is_uuid(value: object) -> bool:
    """A UUID in canonical hyphenated hex form."""
    if not isinstance(value, str):
        return True
    return _UUID.fullmatch(value) is not None


FORMATS: dict[str, Callable[[object], bool]] = {"date-time": is_date_time, "uuid": is_uuid}


@functools.lru_cache(maxsize=512)
def anchored(pattern: str) -> re.Pattern[str]:
    """`pattern` compiled with `$` meaning end of string, exactly as fastjsonschema compiles it."""
    return re.compile(_UNESCAPED_DOLLAR.sub(r"\\Z", pattern))

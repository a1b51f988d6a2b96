"""Acquisition dates for the converters: parsing what raw metadata files hold, and Δt in days.

Δt follows the record convention (docs/ARCHITECTURE.md, "Data record and batches"): t_LR − t_HR in days, signed, so an LR taken
before the HR has a negative Δt. Unknown dates stay None all the way into the record.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from satdiffmoe.errors import UserError

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?")


def parse_date(text: object, where: str) -> datetime:
    """ISO date or datetime (`2019-05-01`, `2019-05-01T10:45:55Z`) -> aware UTC datetime."""
    match = _DATE_RE.search(str(text or ""))
    if not match:
        raise UserError(f"no dates: {where} has {text!r}, expected an ISO date like 2019-05-01")
    return _to_utc(match.group(0), where)


def find_dates(text: object, where: str) -> list[datetime]:
    """Every ISO date in `text`, in order (a cell holding a list like "['2019-01-02', '2019-01-07']")."""
    dates = [_to_utc(m.group(0), where) for m in _DATE_RE.finditer(str(text or ""))]
    if not dates:
        raise UserError(f"no dates: {where} has {text!r}, expected ISO dates like 2019-05-01")
    return dates


def _to_utc(token: str, where: str) -> datetime:
    try:
        value = datetime.fromisoformat(token.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        raise UserError(f"no dates: {where} has an invalid date {token!r}") from None
    # naive dates are taken as UTC so that day differences never depend on the machine's time zone
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def delta_days(lr_time: datetime | None, hr_time: datetime | None) -> float | None:
    """t_LR − t_HR in days (fractional, signed); None when either date is unknown."""
    if lr_time is None or hr_time is None:
        return None
    return round((lr_time - hr_time).total_seconds() / 86400.0, 4)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()

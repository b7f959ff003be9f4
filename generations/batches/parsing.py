"""Reading a batch's items: pasted lines or a CSV upload, into :class:`BatchItem` s.

Pure functions, no database. Problems are collected as :class:`RowError` s naming the row
(or line) and the field, so a member can fix them all at once; :class:`BatchInvalid` (a
``GenerationRefused``, ``validation_error``, 422) carries them.

CSV rules (README "What a team can do", "Variants and batches"): UTF-8 (a BOM is fine),
comma-separated, the first row is the header; a ``prompt`` column is required; the optional
columns ``duration``, ``resolution``, ``model``, ``mode`` and ``image_url`` override the
shared settings for that row (an empty cell keeps the shared value); any other column is
refused by name. Rows are numbered as a spreadsheet shows them (the header is row 1); empty
rows are skipped. At most :data:`MAX_BATCH_ROWS` items and :data:`MAX_CSV_BYTES` bytes.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from generations.services.lifecycle import GenerationRefused

#: The most items one batch may hold (pasted lines, CSV rows or API items).
MAX_BATCH_ROWS = 100
#: The largest CSV file accepted.
MAX_CSV_BYTES = 1024 * 1024
#: Columns a CSV may have; every one but ``prompt`` overrides a shared setting for its row.
CSV_COLUMNS = ("prompt", "duration", "resolution", "model", "mode", "image_url")
#: The per-item overrides (the API's item fields and the CSV's optional columns).
OVERRIDES = ("duration", "resolution", "model", "mode", "image_url")

_DURATION = re.compile(r"^(\d{1,4})\s*s?$", re.IGNORECASE)


@dataclass(frozen=True)
class RowError:
    """One problem: ``where`` is ``"row 3"``, ``"line 2"``, ``"items.0"`` or ``""`` (the whole
    batch); ``field`` a column or setting name (``""``: the row as a whole)."""

    where: str
    field: str
    message: str

    @property
    def key(self) -> str:
        """The ``ErrorOut.fields`` key: ``"row 3.duration"``, ``"items.0.prompt"``, ``"items"``."""
        return ".".join(part for part in (self.where, self.field) if part) or "items"

    def __str__(self) -> str:
        """``"Row 3, duration: …"``; an API item is counted from 1 with its key: ``"Item 2
        (items.1), duration: …"``."""
        if self.where.startswith("items.") and self.where[6:].isdigit():
            where = f"Item {int(self.where[6:]) + 1} ({self.where})"
        else:
            where = self.where[:1].upper() + self.where[1:] if self.where else "The batch"
        return f"{where}, {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class BatchInvalid(GenerationRefused):
    """``validation_error`` (422) with every :class:`RowError` found: ``errors`` keeps them in
    order, ``fields`` maps each ``RowError.key`` to its messages."""

    def __init__(self, errors: list[RowError]):
        fields: dict[str, list[str]] = {}
        for error in errors:
            fields.setdefault(error.key, []).append(error.message)
        shown = "; ".join(str(e) for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        count = len({e.where for e in errors})
        lead = "The batch was refused" if count <= 1 else f"{count} rows of the batch were refused"
        super().__init__("validation_error", f"{lead}: {shown}{more}.", fields)
        self.errors = list(errors)


@dataclass
class BatchItem:
    """One prompt of a batch and its overrides of the shared settings (None: keep the shared value).

    ``where`` names it in messages (``"row 3"``, ``"line 2"``, ``"items.0"``, ``"variant 2"``)."""

    where: str
    prompt: str
    duration: int | None = None
    resolution: str | None = None
    model: str | None = None
    mode: str | None = None
    image_url: str | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """JSON-able form (the preview's hidden field, the fingerprint): ``where``, ``prompt`` and the overrides set."""
        out = {"where": self.where, "prompt": self.prompt}
        out.update({name: getattr(self, name) for name in OVERRIDES if getattr(self, name) not in (None, "")})
        return out

    @classmethod
    def from_dict(cls, data: dict) -> BatchItem:
        """The inverse of :meth:`as_dict`; raises ``BatchInvalid`` for a malformed entry."""
        errors: list[RowError] = []
        item = _item(str(data.get("where") or "item"), data, errors)
        if errors:
            raise BatchInvalid(errors)
        return item


def _item(where: str, cells: dict, errors: list[RowError]) -> BatchItem:
    """A BatchItem from string (or already typed) cells, appending to ``errors`` what is wrong."""
    prompt = str(cells.get("prompt") or "").strip()
    if not prompt:
        errors.append(RowError(where, "prompt", "Empty: every row needs a prompt."))
    duration = None
    raw = cells.get("duration")
    if raw not in (None, ""):
        match = _DURATION.match(str(raw).strip())
        if match is None or int(match.group(1)) < 1:
            errors.append(RowError(where, "duration", f"“{raw}” is not a whole number of seconds."))
        else:
            duration = int(match.group(1))

    def text(name: str, *, lower: bool = False) -> str | None:
        value = cells.get(name)
        if value in (None, ""):
            return None
        value = str(value).strip()
        return (value.lower() if lower else value) or None

    image_url = text("image_url")
    if image_url is not None and not image_url.lower().startswith(("http://", "https://")):
        errors.append(RowError(where, "image_url", f"“{image_url[:60]}” is not an http(s) URL."))
    return BatchItem(
        where=where, prompt=prompt, duration=duration, resolution=text("resolution", lower=True), model=text("model"),
        mode=text("mode"), image_url=image_url,
    )


def _check_count(count: int, errors: list[RowError], *, noun: str) -> None:
    if count == 0:
        errors.append(RowError("", "", f"No {noun}: give at least one prompt."))
    elif count > MAX_BATCH_ROWS:
        errors.append(RowError("", "", f"{count} {noun}: one batch holds at most {MAX_BATCH_ROWS}."))


def _finish(items: list[BatchItem], errors: list[RowError], collect: list[RowError] | None) -> list[BatchItem]:
    """Raise the errors found, or hand the row errors to ``collect`` (the caller reports them
    with the provider's, after planning the other rows); a problem of the whole batch always raises."""
    if errors and (collect is None or any(not e.where for e in errors)):
        raise BatchInvalid(errors)
    if collect is not None:
        collect.extend(errors)
    return items


def parse_lines(text: str) -> list[BatchItem]:
    """One prompt per non-blank line (``where``: ``"line N"``, blank lines counted). Raises
    :class:`BatchInvalid` for no prompt or more than :data:`MAX_BATCH_ROWS`."""
    items = [
        BatchItem(where=f"line {number}", prompt=line.strip())
        for number, line in enumerate((text or "").splitlines(), 1)
        if line.strip()
    ]
    errors: list[RowError] = []
    _check_count(len(items), errors, noun="prompts")
    if errors:
        raise BatchInvalid(errors)
    return items


def parse_csv(data: bytes | str, collect: list[RowError] | None = None) -> list[BatchItem]:
    """The rows of a CSV upload (module docstring: header, columns, numbering, caps).

    ``where`` is ``"row N"`` (the header is row 1). Raises :class:`BatchInvalid` with every
    problem found: not UTF-8, no header or no ``prompt`` column, unknown or repeated columns,
    a row with more cells than columns, an empty prompt, a duration that is not whole
    seconds, an image URL that is not http(s), too many rows or none. With ``collect``, the
    errors of single rows are appended to it instead (and those rows returned as read), so they
    can be reported together with the provider's rules (``services.batch.batch_plan``).
    """
    if isinstance(data, bytes):
        if len(data) > MAX_CSV_BYTES:
            raise BatchInvalid([RowError("", "", f"The file is larger than {MAX_CSV_BYTES // 1024} KB.")])
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise BatchInvalid([RowError("", "", "The file is not UTF-8 text: save it as “CSV UTF-8”.")]) from None
    reader = csv.reader(io.StringIO(data.lstrip("\ufeff"), newline=""))
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise BatchInvalid([RowError(f"row {reader.line_num}", "", f"Not readable as CSV ({exc}).")]) from None
    header_at = next((i for i, row in enumerate(rows) if any(cell.strip() for cell in row)), None)
    if header_at is None:
        raise BatchInvalid([RowError("", "", "The file is empty: the first row must be the header (prompt, …).")])
    header = [cell.strip().lower().replace(" ", "_") for cell in rows[header_at]]
    errors: list[RowError] = []
    if "prompt" not in header:
        errors.append(RowError("row 1", "prompt", f"No “prompt” column in the header ({', '.join(header)})."))
    unknown = [name for name in header if name and name not in CSV_COLUMNS]
    if unknown:
        errors.append(RowError(
            "row 1", unknown[0], f"Unknown column{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"the columns are {', '.join(CSV_COLUMNS)}.",
        ))
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    if repeated:
        errors.append(RowError("row 1", repeated[0], f"Column {', '.join(repeated)} appears twice."))
    if errors:
        raise BatchInvalid(errors)
    items: list[BatchItem] = []
    for offset, row in enumerate(rows[header_at + 1:], header_at + 2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"row {offset}"
        if len(row) > len(header) and any(cell.strip() for cell in row[len(header):]):
            errors.append(RowError(where, "", f"{len(row)} cells but {len(header)} columns (a comma in a prompt needs quotes)."))
            continue
        cells = {name: (row[i] if i < len(row) else "") for i, name in enumerate(header) if name}
        items.append(_item(where, cells, errors))
    _check_count(len(items), errors, noun="rows")
    return _finish(items, errors, collect)


def items_from_api(rows: list[dict], collect: list[RowError] | None = None) -> list[BatchItem]:
    """API items (``prompt`` and the overrides, already typed) as BatchItems named ``items.<i>``
    (the index in the body's list, from 0, as the API's own validation errors name them).
    ``collect``: as :func:`parse_csv`."""
    errors: list[RowError] = []
    items = [_item(f"items.{index}", row, errors) for index, row in enumerate(rows)]
    _check_count(len(items), errors, noun="items")
    return _finish(items, errors, collect)

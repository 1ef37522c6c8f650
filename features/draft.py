"""A first config for one's own export: ``crmscore init`` guesses the mapping from column names and types.

The guess is a draft to read, not a decision: every mapped column is named in a comment with what it
was taken for, what could not be found is said, and ``crmscore validate`` checks the result as it
checks any config. Names and types are read, the number of distinct values of the text columns (an
attribute such as ``country`` has few; a free-text ``description`` has many) and two counts that
suggest row rules: for transactions, lines with a price not above 0 (a filter, written with its count),
and for every table, rows that are exact copies of another (a comment beside ``drop_duplicates``).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from features.attributes import MAX_CARDINALITY
from features.config import CANONICAL_COLUMNS, TIMESTAMP_COLUMNS, registry_prefix_for

__all__ = ["Draft", "draft_config", "guess_mapping"]

# Normalised names (lower case, letters and digits only) each canonical column is recognised by, best first.
_CUSTOMER = (
    "customerid custid clientid customerno custno clientno customernumber customerkey customercode customer client "
    "userid memberid accountid accountno buyerid shopperid"
)
_EVENT_TIME = "timestamp eventtime eventdate occurredat happenedat createdat datetime date time ts"
_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    table: {role: tuple(names.split()) for role, names in roles.items()}
    for table, roles in {
        "transactions": {
            "customer_id": _CUSTOMER,
            "timestamp": "timestamp invoicedate orderdate transactiondate purchasedate saledate orderedat createdat "
            "datetime invoicedatetime orderts ordertime orderdatetime invoicets transactionts transactiontime "
            "purchasets saletime date time ts",
            "amount": "amount netamount lineamount totalamount total linetotal revenue sales salesamount value "
            "netvalue totalprice amountpaid",
            "order_id": "invoice invoiceno invoiceid invoicenumber orderid orderno ordernumber order transactionid "
            "receiptid receipt basketid",
            "product_id": "stockcode productid productcode sku itemid itemcode product item article articleid",
            "quantity": "quantity qty units unitssold itemcount",
            "category": "category productcategory categoryname department",
            "channel": "channel saleschannel orderchannel",
        },
        "customers": {
            "customer_id": _CUSTOMER,
            "signup_at": "signupat signupdate signedupat registeredat registrationdate joinedat joined customersince "
            "firstseen createdat",
        },
        "events": {
            "customer_id": _CUSTOMER,
            "timestamp": _EVENT_TIME,
            "event_type": "eventtype event type action activity kind touchpoint interaction",
            "channel": "channel medium source",
            "value": "value amount score",
        },
        "leads": {
            "lead_id": "leadid lead prospectid contactid id",
            "created_at": "createdat created createddate createdon leaddate openedat opened openeddate date timestamp",
            "converted_at": "convertedat converteddate convertedon wonat wondate closedate",
            "converted": "converted isconverted won iswon subscribed outcome y target label",
        },
        "lead_events": {
            "lead_id": "leadid lead prospectid contactid id",
            "timestamp": _EVENT_TIME,
            "event_type": "eventtype event type action activity kind touchpoint interaction",
            "channel": "channel medium source",
        },
    }.items()
}
_PRICE = ("price", "unitprice", "priceeach", "itemprice", "saleprice")
_REQUIRED = {table: spec["required"] for table, spec in CANONICAL_COLUMNS.items()}
# Which tables' rows become attributes (text columns with few values; the customers' numbers too).
_ATTRIBUTE_TABLES = ("transactions", "customers")
# The tables an extra table is read beside.
_NEEDS = {"customers": "transactions", "events": "transactions", "lead_events": "leads"}
_TEXT_TYPES = ("VARCHAR",)
_NUMBER_TYPES = (
    "BIGINT",
    "INTEGER",
    "SMALLINT",
    "TINYINT",
    "HUGEINT",
    "UBIGINT",
    "UINTEGER",
    "DOUBLE",
    "FLOAT",
    "DECIMAL",
)
_TIME_TYPES = ("TIMESTAMP", "DATE", "TIMESTAMP WITH TIME ZONE")


# A currency closing a column's name ("Amount EUR", "Price (USD)", "Total £"): the name says what
# the column is without it.
# A code needs a separator before it ("Chauffeur" is no "Chauff" in euros); a symbol does not.
_CURRENCY = re.compile(
    r"(?<=.)(?:[\s_\-(\[]+(?:eur|usd|gbp|chf|jpy|cad|aud|nzd|sek|nok|dkk|pln|czk|huf|inr|cny|brl|mxn|zar)"
    r"|[\s_\-(\[]*[€$£¥])[)\]]?\s*$",
    re.IGNORECASE,
)


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", _CURRENCY.sub("", name).lower())


def _snake(name: str) -> str:
    """An attribute's canonical name: ``account_manager`` stays so ("accountmanager" until 2026-12-07),
    ``Customer Segment`` and ``customerSegment`` become ``customer_segment``."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    snake = re.sub(r"[^a-z0-9]+", "_", words).strip("_")
    return f"a_{snake}" if snake[:1].isdigit() else snake


def _quoted(name: str) -> str:
    """A column inside a SQL expression: double-quoted unless it is a plain identifier."""
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


# Words in a lead column's name that say it is recorded during or after the outcome (post-outcome
# leakage: the model would learn the answer), with why; ``init`` lists such columns under ``exclude``.
# Whole words of the name only ("poutcome", the previous campaign's outcome, is one word and stays).
_POST_OUTCOME = {
    "duration": "a call's or contact's length is known once it ended",
    "disposition": "a call's disposition is recorded at its end",
    "status": "a lead's status moves with its outcome",
    "outcome": "an outcome is what the model predicts",
    "result": "a result is what the model predicts",
    "won": "won or lost is the outcome",
    "lost": "won or lost is the outcome",
    "closed": "a lead is closed at its outcome",
    "close": "a lead is closed at its outcome",
    "converted": "conversion is the outcome",
    "conversion": "conversion is the outcome",
    "revenue": "revenue follows the conversion",
}


def post_outcome(name: str) -> str | None:
    """Why a column named ``name`` is likely known only after a lead's outcome, or None: a word of the
    name (split at underscores, spaces, dashes and camelCase) in :data:`_POST_OUTCOME`."""
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    return next((_POST_OUTCOME[w] for w in words if w in _POST_OUTCOME), None)


@dataclass
class Draft:
    """The guessed mapping of one table: canonical column -> source column or SQL expression, the
    attributes, and one note per guess (and per miss) for the config's comments."""

    table: str
    source: str
    columns: dict[str, str]
    attributes: dict[str, str] | str
    notes: list[str] = field(default_factory=list)
    # Transactions: the filters suggested by the rows (name, keep, why). Every table: the count of exact copies.
    filters: list[tuple[str, str, str]] = field(default_factory=list)
    duplicates: int = 0
    # Leads: the columns left out of ``attributes: "*"`` because their names say post-outcome, with why.
    exclude: list[tuple[str, str]] = field(default_factory=list)
    # The format of the table's time columns when the file holds them as text ("31/12/2010 14:05").
    timestamp_format: str | None = None


def _reader(path: Path) -> str:
    """The DuckDB table function that reads ``path``."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return f"read_parquet('{path}')"
    if suffix == ".csv":
        return f"read_csv('{path}')"
    raise ValueError(f"{path}: crmscore init reads .parquet or .csv files (write the config by hand for others)")


def _describe(path: Path) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """The (column, type) pairs of a file and the distinct counts of its text columns."""
    reader = _reader(path)
    if any(ch in str(path) for ch in "*?["):  # several files, as a config's source path may name them
        if not glob.glob(str(path)):
            raise ValueError(f"{path}: no file matches")
    elif not path.is_file():
        raise ValueError(f"{path}: no such file")
    con = duckdb.connect()
    try:
        schema = [(str(row[0]), str(row[1])) for row in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()]
        text = [c for c, t in schema if t in _TEXT_TYPES]
        counts: dict[str, int] = {}
        if text:
            select = ", ".join('approx_count_distinct("' + c.replace('"', '""') + '")' for c in text)
            counts = dict(zip(text, con.execute(f"SELECT {select} FROM {reader}").fetchone(), strict=True))
    finally:
        con.close()
    return schema, counts


# Text formats of a time column that exports use, tried in this order; a day-first and a month-first
# format that both read every value (no day above 12) are ambiguous, and the draft says so. The 12-hour
# clock ("05/20/2024 05:14 PM", a US CRM's export) is DuckDB's %I and %p, which takes "pm" and "5:14"
# too and refuses "13:14 PM"; a 24-hour format does not read such a value (the "PM" is left over).
_TIME_FORMATS = tuple(
    f"{day}{sep}{time}"
    for day in (
        "%Y-%m-%d",
        "%d/%m/%Y",
        "%m/%d/%Y",
        "%d.%m.%Y",
        "%d-%m-%Y",
        "%Y/%m/%d",
        "%d/%m/%y",
        "%m/%d/%y",
    )
    for sep, time in (
        (" ", "%H:%M:%S"),
        (" ", "%H:%M"),
        ("T", "%H:%M:%S"),
        (" ", "%I:%M:%S %p"),
        (" ", "%I:%M %p"),
        ("", ""),
    )
    if not (sep == "T" and not day.startswith("%Y"))
)


# A format that reads all but this share of a column's values is the export's, with a few typos:
# the draft maps the column through try_strptime, which drops those rows (counted by validate).
_NEARLY_ALL = 0.99


# The loader's own reading of a time column held as text when the table has no timestamp_format
# (features.sources.map_table): ISO 8601, with or without fractions of a second, an offset or "Z" (read
# as UTC). A column it reads whole needs no format; DuckDB's %z would not even take the "Z".
_LOADER_CAST = "TRY_CAST(v AS TIMESTAMPTZ)"


def _time_format(draft: Draft, path: Path, schema: Sequence[tuple[str, str]]) -> None:
    """Read the table's time columns held as text, every value (a sorted export's first rows may all
    have days of 12 or less). One the loader's own cast reads whole (ISO 8601, offsets too) is left as
    it is. Those that one of :data:`_TIME_FORMATS` reads set ``draft.timestamp_format``, saying which
    and when another format reads them too; since the loader applies that format to every time column
    of the table, they are mapped through ``try_strptime`` instead when another time column needs none.
    A column that one format reads all but a few values of (:data:`_NEARLY_ALL`) is mapped through
    ``try_strptime`` in that format, with a note of the rows it will drop.

    A column no format reads is named with examples: an optional one (a lead's ``converted_at``, a
    customer's ``signup_at``) is left unmapped with a note, so the draft still loads and is written;
    until 2026-12-07 the loader stopped init with "set timestamp_format in the config", a config that
    was never written.

    Raises
    ------
    ValueError
        A required time column (a transaction's ``timestamp``, a lead's ``created_at``) that no format reads.
    """
    types = dict(schema)
    timed = {role: c for role, c in draft.columns.items() if role in TIMESTAMP_COLUMNS and c in types}
    text = {role: c for role, c in timed.items() if types[c] in _TEXT_TYPES}
    if not text:
        return
    reader, con = _reader(path), duckdb.connect()
    tries = ", ".join(f"count(try_strptime(v, '{fmt}'))" for fmt in _TIME_FORMATS)
    reads: dict[str, tuple[int, list[int]]] = {}
    values = {
        role: f"SELECT {_quoted(c)} AS v FROM {reader} WHERE {_quoted(c)} IS NOT NULL" for role, c in text.items()
    }
    try:
        for role, column in text.items():
            n, cast, *parsed = con.execute(
                f"SELECT count(*), count({_LOADER_CAST}), {tries} FROM ({values[role]})"
            ).fetchone()
            if cast < n:
                reads[role] = (n, parsed)
            elif n:
                draft.notes.append(
                    f"{column}: ISO 8601 text, read as it is (an offset or Z converted to UTC): no timestamp_format"
                )
        fits = [fmt for i, fmt in enumerate(_TIME_FORMATS) if reads and all(k[i] == n for n, k in reads.values())]
        if fits:
            columns = ", ".join(text[role] for role in reads)
            also = (
                f"; the values read as {', '.join(repr(f) for f in fits[1:])} too: check which the export means"
                if fits[1:]
                else ""
            )
            if len(reads) == len(timed):
                draft.timestamp_format = fits[0]
                draft.notes.append(f"{columns}: text dates, read as timestamp_format {fits[0]!r}{also}")
                return
            for role in reads:
                draft.columns[role] = f"try_strptime({_quoted(text[role])}, '{fits[0]}')"
            draft.notes.append(
                f"{columns}: text dates, read as {fits[0]!r} by try_strptime (a timestamp_format would apply to "
                f"the table's other time columns too, which need none){also}"
            )
            return
        for role, (n, parsed) in reads.items():
            column = text[role]
            best = max(range(len(_TIME_FORMATS)), key=lambda i: parsed[i])
            if parsed[best] >= _NEARLY_ALL * n:
                fmt = _TIME_FORMATS[best]
                draft.columns[role] = f"try_strptime({_quoted(column)}, '{fmt}')"
                draft.notes.append(
                    f"{column}: text dates, read as {fmt!r} but for {n - parsed[best]:,} of {n:,} values, whose rows "
                    f"try_strptime drops (counted by validate under 'no {role}'); fix them at the source to keep them"
                )
                continue
            known = ", ".join(f"'{fmt}'" for fmt in _TIME_FORMATS)
            unknown = f"try_strptime(v, [{known}]) IS NULL AND {_LOADER_CAST} IS NULL"
            (bad,) = con.execute(f"SELECT count(*) FROM ({values[role]}) WHERE {unknown}").fetchone()
            if bad:
                which = f"{bad:,} of its {n:,} values are in no date format init knows"
            else:  # each value reads in some format, but no one format reads the column
                fmt = _TIME_FORMATS[best]
                which = f"its values mix formats; the commonest, {fmt!r}, reads {parsed[best]:,} of {n:,}"
                unknown = f"try_strptime(v, '{fmt}') IS NULL"
            query = f"SELECT DISTINCT v FROM ({values[role]}) WHERE {unknown} ORDER BY v LIMIT 3"
            rows = con.execute(query).fetchall()
            _unreadable_time(draft, role, column, f"{which}, e.g. {', '.join(repr(v) for (v,) in rows)}")
    finally:
        con.close()


def _unreadable_time(draft: Draft, role: str, column: str, which: str) -> None:
    """Leave out of the draft an optional time column that no format init knows reads (``which``
    counts its values and shows a few), saying so; a lead's unread ``converted_at`` goes under
    ``exclude`` too, lest ``attributes: "*"`` make the outcome's time a feature.

    Raises
    ------
    ValueError
        The column is required: the tables cannot be read without it, so no draft would load.
    """
    how = (
        'timestamp_format, the export\'s strftime format ("%m/%d/%Y %H:%M" reads 12/31/2010 14:05; ISO 8601 '
        "text, with an offset or Z, needs none)"
    )
    required = role in _REQUIRED[draft.table] or (role == "converted_at" and "converted" not in draft.columns)
    if required:
        raise ValueError(
            f"{draft.table}: {column} (taken for {role}) is text init cannot read as dates: {which}; "
            f"map it in the config by hand with {how} (README, 'Your own data: the config'), or export the "
            "dates as ISO 8601 (2010-12-31 14:05:00)"
        )
    del draft.columns[role]
    draft.notes = [note for note in draft.notes if note != f"{role} <- {column!r}"]
    draft.notes.append(
        f"{column}: not mapped as {role}, text init cannot read as dates: {which}; map {role}: {column} "
        f"by hand with {how}"
    )
    if draft.table == "leads" and role == "converted_at":
        draft.exclude.append((column, "the time of the conversion is the outcome"))


# The numeric roles a text column may hold with a currency symbol, thousands separators or a decimal comma.
_NUMBER_ROLES = ("amount", "quantity", "value", "price")


def _bare(column: str) -> str:
    """SQL for ``column``'s text without blanks and currency symbols ("$1,234.00" -> "1,234.00")."""
    out = f"TRIM({_quoted(column)})"
    for symbol in ("$", "€", "£", "¥", " ", "\u00a0"):
        out = f"REPLACE({out}, '{symbol}', '')"
    return out


def _number_format(draft: Draft, path: Path, schema: Sequence[tuple[str, str]]) -> None:
    """Map a numeric role held as text with a currency symbol ("$1,234.00", "12,50 €") through an
    expression that reads it: thousands separators dropped, a decimal comma read as the point, chosen
    as the one of the two that reads all (or all but 1%: :data:`_NEARLY_ALL`) of the column's values,
    and when both do, by the values with one or two digits after the last separator. Until 2026-12-07
    ``init`` stopped with "values must parse as a number" and wrote nothing."""
    types = dict(schema)
    text = {r: c for r, c in draft.columns.items() if r in _NUMBER_ROLES and types.get(c) in _TEXT_TYPES}
    if not text:
        return
    reader, con = _reader(path), duckdb.connect()
    try:
        for role, column in text.items():
            bare = _bare(column)
            styles = {
                "point": f"TRY_CAST(REPLACE({bare}, ',', '') AS DOUBLE)",
                "comma": f"TRY_CAST(REPLACE(REPLACE({bare}, '.', ''), ',', '.') AS DOUBLE)",
            }
            counts = ", ".join(f"count({sql})" for sql in styles.values())
            hints = (
                f"count(*) FILTER (WHERE regexp_matches({bare}, '\\.[0-9]{{1,2}}$')), "
                f"count(*) FILTER (WHERE regexp_matches({bare}, ',[0-9]{{1,2}}$'))"
            )
            n, point, comma, dotted, commaed = con.execute(
                f"SELECT count({_quoted(column)}), {counts}, {hints} FROM {reader} WHERE {_quoted(column)} IS NOT NULL"
            ).fetchone()
            reads = {"point": point, "comma": comma}
            fits = [style for style, k in reads.items() if n and k >= _NEARLY_ALL * n]
            if len(fits) == 2:  # "1,234" reads either way: the decimals decide
                fits = ["comma"] if commaed > dotted else ["point"]
            if not fits:
                draft.notes.append(
                    f"{column}: text that is no number init can read (a currency or thousands format it does not know); "
                    f"map {role} to an expression that reads it, e.g. TRY_CAST(... AS DOUBLE)"
                )
                continue
            style = fits[0]
            draft.columns[role] = styles[style]
            lost = n - reads[style]
            what = (
                "a decimal comma, '.' between thousands"
                if style == "comma"
                else "a decimal point, ',' between thousands"
            )
            draft.notes.append(
                f"{column}: text numbers read with {what}, currency symbols and blanks dropped"
                + (
                    f"; {lost:,} of {n:,} values do not read so and their rows are dropped (counted by validate)"
                    if lost
                    else ""
                )
            )
    finally:
        con.close()


def _check_rows(draft: Draft, path: Path, schema: Sequence[tuple[str, str]]) -> None:
    """What a table's rows suggest: the count of rows that are exact copies of another (validate
    counts them on every table, and ``drop_duplicates`` is for a person to decide), and for
    transactions a filter for lines whose unit price is not positive (not a sale: free lines,
    adjustments, written-off debt), when a price column has such rows."""
    reader = _reader(path)
    price = None
    if draft.table == "transactions":
        price = next((c for c, t in schema if _normal(c) in _PRICE and t.startswith(_NUMBER_TYPES)), None)
    not_positive = f"count(*) FILTER (WHERE {_quoted(price)} <= 0)" if price is not None else "0"
    con = duckdb.connect()
    try:
        total, n = con.execute(f"SELECT count(*), {not_positive} FROM {reader}").fetchone()
        (distinct,) = con.execute(f"SELECT count(*) FROM (SELECT DISTINCT * FROM {reader})").fetchone()
    finally:
        con.close()
    if n:
        why = f"{n:,} rows of the file have {price} <= 0 (free lines, adjustments, written-off debt: not sales)"
        draft.filters.append(("price not positive", f"{_quoted(price)} > 0", why))
    draft.duplicates = total - distinct


def _pick(role: str, wanted: Sequence[str], schema: Sequence[tuple[str, str]], taken: set[str]) -> str | None:
    by_name = {_normal(c): c for c, _ in schema if c not in taken}
    candidates = [by_name[w] for w in wanted if w in by_name]
    if role in ("timestamp", "created_at", "converted_at"):  # a typed time column beats a name alone
        typed = [c for c in candidates if dict(schema)[c] in _TIME_TYPES]
        candidates = typed or candidates
        if not candidates:
            candidates = [c for c, t in schema if t in _TIME_TYPES and c not in taken][:1]
    return candidates[0] if candidates else None


def guess_mapping(table: str, schema: Sequence[tuple[str, str]], distinct: Mapping[str, int]) -> Draft:
    """The canonical columns of ``table`` (a canonical table: ``transactions``, ``leads``, ...) guessed from a schema.

    Raises
    ------
    ValueError
        A required column matches no source column; the message names it and lists the columns.
    """
    columns: dict[str, str] = {}
    notes: list[str] = []
    taken: set[str] = set()
    for role, wanted in _NAMES[table].items():
        found = _pick(role, wanted, schema, taken)
        if found is not None:
            columns[role] = found
            taken.add(found)
    if table == "transactions" and "amount" not in columns:
        price = _pick("price", _PRICE, schema, taken)
        if price is not None and "quantity" in columns:
            columns["amount"] = f"{_quoted(columns['quantity'])} * {_quoted(price)}"
            taken.add(price)
            notes.append(
                f"amount = {columns['amount']}: no amount column, so quantity times price (a negative quantity is a refund)"
            )
    missing = [role for role in _REQUIRED[table] if role not in columns]
    if table == "leads" and not {"converted", "converted_at"} & set(columns):
        missing.append("converted or converted_at")
    if missing:
        listed = ", ".join(f"{c} ({t.lower()})" for c, t in schema)
        raise ValueError(
            f"{table}: no column looks like {', and none like '.join(missing)}{',' if len(missing) > 1 else ''} "
            f"among {listed}; map {'it' if len(missing) == 1 else 'them'} in the config by hand "
            "(README, 'Your own data: the config')"
        )
    for role, source in columns.items():
        if source in dict(schema):
            notes.append(f"{role} <- {source!r}")
    if table == "leads":
        exclude = [(c, why) for c, _ in schema if c not in taken and (why := post_outcome(c)) is not None]
        if exclude:
            notes.append(
                "exclude (the name says post-outcome; delete from exclude a column known before the outcome): "
                + ", ".join(c for c, _ in exclude)
            )
        return Draft(table, "", columns, "*", notes, exclude=exclude)
    attributes: dict[str, str] = {}
    if table in _ATTRIBUTE_TABLES:
        attributes = {
            _snake(c) or c: c
            for c, t in schema
            if c not in taken
            and (
                (t in _TEXT_TYPES and 2 <= distinct.get(c, 0) <= MAX_CARDINALITY)
                or (table == "customers" and t.startswith(_NUMBER_TYPES))  # a static number: age, credit limit
            )
        }
    skipped = [(c, t) for c, t in schema if c not in taken and c not in attributes.values()]
    if attributes:
        kinds = f"text columns with at most {MAX_CARDINALITY} values" + (" and numbers" if table == "customers" else "")
        notes.append(f"attributes ({kinds}): {', '.join(attributes.values())}")
    if skipped:
        notes.append(_not_mapped(table, skipped, columns))
    return Draft(table, "", columns, attributes, notes)


def _not_mapped(table: str, skipped: Sequence[tuple[str, str]], columns: Mapping[str, str]) -> str:
    """The note on the columns left out, by kind: a number apart from text, so that a second money
    column (a local-currency ``amount`` beside the ``amount_usd`` mapped) reads as the number it is,
    and one named as a mapped role is said to be; until 2026-12-07 all were "free text, numbers or ids"."""
    kinds: dict[str, list[str]] = {"numbers": [], "text (free text or ids)": [], "times": [], "other": []}
    for column, kind in skipped:
        if kind.startswith(_NUMBER_TYPES):
            alike = next(
                (r for r in columns if r in _NUMBER_ROLES and _normal(column) in _NAMES[table].get(r, ())), None
            )
            also = (
                f" (named as {alike} is, beside the mapped {columns[alike]!r}: check which to score)" if alike else ""
            )
            kinds["numbers"].append(column + also)
        elif kind in _TEXT_TYPES:
            kinds["text (free text or ids)"].append(column)
        else:
            kinds["times" if kind.startswith(("DATE", "TIME")) else "other"].append(column)
    listed = "; ".join(f"{kind} {', '.join(names)}" for kind, names in kinds.items() if names)
    return f"not mapped (add what you want as features): {listed}"


# What the exact copies of a table's rows are when they are real, for the comment beside drop_duplicates.
_COPIES_KEPT = {
    "transactions": "a product entered twice in one order",
    "customers": "the features take one row of a customer anyway",
    "events": "two touchpoints alike to the second",
    "leads": "each row is trained on as a lead of its own",
    "lead_events": "two touchpoints alike to the second",
}


# Plain words YAML reads as something other than text (a column named "No" would be False).
_YAML_WORDS = frozenset({"yes", "no", "true", "false", "on", "off", "null", "y", "n"})


def _yaml_scalar(value: str) -> str:
    """``value`` as YAML: bare when plain, else single-quoted (double-quoted if it holds a single quote)."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_ .]*", value) and value.lower() not in _YAML_WORDS:
        return value
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def draft_config(out: Path, files: Mapping[str, Path], *, name: str | None = None) -> tuple[str, list[Draft]]:
    """The text of a config for the exports ``files`` (canonical table -> file), to be written at
    ``out`` (source paths relative to it when the files are near it).

    Models are left at their defaults but ``test_cutoff``, which the caller sets once the tables
    can be read (:func:`serving.cli`'s ``init`` puts the latest complete cut-off there).

    Raises
    ------
    ValueError
        No transactions or leads file, a table without the one it goes with (events without
        transactions), a file that is not Parquet or CSV, or a required column that matches none.
    """
    files = {table: Path(path) for table, path in files.items() if path is not None}
    if not {"transactions", "leads"} & set(files):
        raise ValueError("give --transactions or --leads (or both): the export to map")
    for table, needed in _NEEDS.items():
        if table in files and needed not in files:
            raise ValueError(f"--{table.replace('_', '-')} goes with --{needed}: give both")
    drafts = []
    for table in CANONICAL_COLUMNS:  # the contract's order
        if table not in files:
            continue
        path = files[table]
        schema, distinct = _describe(path)
        draft = guess_mapping(table, schema, distinct)
        _time_format(draft, path, schema)
        _number_format(draft, path, schema)
        _check_rows(draft, path, schema)
        # Relative to the config when the export sits beside it (or a folder up), so the two move together.
        relative = os.path.relpath(path.resolve(), Path(out).resolve().parent)
        draft.source = str(path.resolve()) if relative.startswith(f"..{os.sep}..") else relative
        drafts.append(draft)
    lines = [
        f"# Drafted by crmscore init from {', '.join(str(p) for p in files.values())}: read it, then",
        f"# crmscore validate --config {out}",
        f"name: {_yaml_scalar(name or Path(out).stem)}",
        "engine: duckdb",
        "tracking_uri: sqlite:///mlflow.db",
        "# Registered models <prefix>-churn, -next_purchase, -lead: apart from another project's on the same store",
        f"registry_prefix: {registry_prefix_for(name or Path(out).stem)}",
        "output_dir: outputs",
        "",
        "tables:",
    ]
    for draft in drafts:
        lines += [
            f"  {draft.table}:",
            "    # " + "\n    # ".join(draft.notes),
            "    source:",
            f"      path: {_yaml_scalar(draft.source)}",
            "    columns:",
        ]
        lines += [f"      {role}: {_yaml_scalar(source)}" for role, source in draft.columns.items()]
        if draft.timestamp_format:
            lines.append(f'    timestamp_format: "{draft.timestamp_format}"')
        if draft.attributes == "*":
            lines += [
                '    attributes: "*"',
                "    # Columns known only after the outcome (a call's duration, a closing note) must never be features;",
                "    # those whose names say so are listed (delete one known before the outcome, add any other):",
            ]
            lines += [f"    # {column}: {why}" for column, why in draft.exclude]
            lines.append("    exclude:" if draft.exclude else "    exclude: []")
            lines += [f"      - {_yaml_scalar(column)}" for column, _ in draft.exclude]
        elif draft.attributes:
            lines.append("    attributes:")
            lines += [f"      {key}: {_yaml_scalar(source)}" for key, source in draft.attributes.items()]
        if draft.table == "transactions":
            lines.append("    # Rows to leave out, each counted by name (delete a filter to keep its rows):")
            lines += [f"    # {why}" for _, _, why in draft.filters]
            lines.append("    filters:" if draft.filters else "    filters: []")
            for filter_name, keep, _ in draft.filters:
                lines += [f"      - name: {_yaml_scalar(filter_name)}", f"        keep: {_yaml_scalar(keep)}"]
        if draft.duplicates:
            lines.append(
                f"    # {draft.duplicates:,} rows of the file are exact copies of another: true drops the copies (an export"
                f" that repeats rows); false keeps them ({_COPIES_KEPT[draft.table]})"
            )
        if draft.duplicates or draft.table == "transactions":
            lines.append("    drop_duplicates: false")
    return "\n".join(lines) + "\n", drafts

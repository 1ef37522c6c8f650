"""Ranked lists, filtered, as rows or CSV: the at-risk list (customers by value at risk, P(churn) x
expected spend), the campaign list (next purchase, by expected value) and the call list (leads, by
P(convert)): :data:`RANKED_BY`.

Pure functions over a scored frame (one row per customer or lead with the model's
:func:`list_columns`, e.g. ``customer_id``, ``probability``, ``tier``, ``expected_spend``,
``value_at_risk``, and any attribute columns); the service and the ``crmscore at-risk`` and
``crmscore top`` commands all use them.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.timebase import as_of_text
from models.scorer import rows_at
from serving.schemas import id_text

__all__ = [
    "SCORE_COLUMNS",
    "THEN_COLUMNS",
    "FilterError",
    "ListFilters",
    "RANKED_BY",
    "at_risk_rows",
    "attribute_columns",
    "check_tiers",
    "excluded_note",
    "filterable",
    "explained_rows",
    "clean_ids",
    "file_stamp",
    "list_columns",
    "moved_up",
    "Suppression",
    "match_suppression",
    "with_suppression",
    "rank_population",
    "read_ids",
    "ranked_rows",
    "scored_for_list",
    "select_at_risk",
    "select_top",
    "to_csv",
    "unmatched_filters",
    "seasonal_move",
    "with_scores_then",
]

SCORE_COLUMNS = ("customer_id", "probability", "tier", "expected_spend", "value_at_risk")
# A numeric attribute with more values than this is a measure, not a group for `per`.
MAX_PER_VALUES = 100
# What each task's list is ranked by, highest first (ties by probability, then id).
RANKED_BY = {"churn": "value_at_risk", "next_purchase": "expected_value", "lead": "probability"}


def list_columns(scorer: Any) -> tuple[str, ...]:
    """The score columns of the model's lists: its id, probability, tier (grade, for leads) and money
    fields (:data:`SCORE_COLUMNS` for churn)."""
    return (scorer.entity, "probability", scorer.tier_key, *scorer.value_names)


class FilterError(ValueError):
    """A filter that cannot be applied; ``field`` names the request field, the message the rule."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class ListFilters:
    """The filters of a list, as the commands' options and the API's fields give them (each one is
    described at :func:`select_at_risk`): they travel together from there to the selection."""

    min_value: float | None = None
    tiers: Sequence[str] | None = None
    where: Mapping[str, Any] | None = None
    exclude: Collection[str] | None = None
    per: str | None = None

    @property
    def named(self) -> list[str]:
        """The attributes the filters name (``where``'s and ``per``): the rows carry them."""
        return [*(self.where or {}), *([self.per] if self.per else [])]

    def selection(self) -> dict[str, Any]:
        """The filters as :func:`select_at_risk`'s keyword arguments."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


# A ``where`` entry is a value (equal to it; None: missing), a list (any of them) or a mapping of
# operators to operands: {"=": [...]}, {"!=": [...]} (none of them; a missing value passes unless
# None is one of them), and comparisons of numbers ({">=": 40, "<": 60}; a missing value fails).
COMPARISONS = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}
OPERATORS = ("=", "!=", *COMPARISONS)


def conditions(name: str, spec: Any, column: pd.Series | None = None) -> list[tuple[str, Any]]:
    """The ``(operator, operand)`` pairs of the ``where`` entry of attribute ``name``: a list of
    values for ``=`` and ``!=``, a number for a comparison.

    Raises
    ------
    FilterError
        An operator not in :data:`OPERATORS`, a comparison of ``column`` (when given) that is not
        numeric, or a comparison with anything but one number.
    """
    field = f"where.{name}"
    items = list(spec.items()) if isinstance(spec, Mapping) else [("=", spec)]
    if not items:
        raise FilterError(field, f"no condition; give a value, a list of values or operators ({', '.join(OPERATORS)})")
    out: list[tuple[str, Any]] = []
    for op, operand in items:
        if op not in OPERATORS:
            raise FilterError(field, f"unknown operator {op!r}; one of {', '.join(OPERATORS)}")
        if op in COMPARISONS and column is not None and not _numeric(column):
            raise FilterError(field, f"{op!r} compares numbers and {name} is text; use a value, a list or '!='")
        if op in COMPARISONS:
            number = None if isinstance(operand, (bool, list, tuple, Mapping)) or operand is None else operand
            try:
                number = float(number)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                number = None
            if number is None or np.isnan(number):
                raise FilterError(field, f"{op!r} compares with one number, got {operand!r}")
            out.append((op, number))
        else:
            values = list(operand) if isinstance(operand, (list, tuple)) else [operand]
            if not values:  # {"job": []} matched no one, and the warning named an empty value
                raise FilterError(field, f"an empty list of values for {op!r}; give at least one")
            out.append((op, values))
    return out


def _condition_mask(column: pd.Series, op: str, operand: Any) -> np.ndarray:
    if op in COMPARISONS:
        with np.errstate(invalid="ignore"):
            return COMPARISONS[op](column.to_numpy(dtype=float, na_value=np.nan), operand)
    hit = _matches_any(column, operand)
    return hit if op == "=" else ~hit


def _matches_any(column: pd.Series, values: Sequence[Any]) -> np.ndarray:
    """Rows of ``column`` equal to any of ``values`` (None: missing; a number column compares numbers,
    a text column text), in one pass: a segment of 2,000 customer ids took 26 s one value at a time (each a pass over the
    population), and 200,000 values kept a worker busy for minutes after its client had gone."""
    hit = column.isna().to_numpy() if any(v is None for v in values) else np.zeros(len(column), dtype=bool)
    given = [v for v in values if v is not None]
    if not given:
        return hit
    if _numeric(column):
        numbers = [n for n in (_number(v) for v in given) if n is not None]
        return hit | np.isin(column.to_numpy(dtype=float, na_value=np.nan), numbers)
    texts = {str(v) for v in given}
    return hit | column.astype("string").isin(texts).fillna(False).to_numpy(dtype=bool)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def where_mask(column: pd.Series, pairs: Sequence[tuple[str, Any]]) -> np.ndarray:
    """Rows of ``column`` that pass every condition of :func:`conditions`."""
    keep = np.ones(len(column), dtype=bool)
    for op, operand in pairs:
        keep &= _condition_mask(column, op, operand)
    return keep


def describe(name: str, pairs: Sequence[tuple[str, Any]]) -> str:
    """The conditions in words, as the messages name them: ``country 'France'``, ``age >= 40 and
    age < 60``, ``country not 'UK'``."""

    def one(op: str, operand: Any) -> str:
        if op in COMPARISONS:
            return f"{name} {op} {operand:g}"
        values = " or ".join("missing" if v is None else repr(v) for v in operand)
        return f"{name} {values}" if op == "=" else f"{name} not {values}"

    return " and ".join(one(op, operand) for op, operand in pairs)


def scored_for_list(
    scorer: Any,
    features: pd.DataFrame,
    matrix: np.ndarray | None = None,
    *,
    as_of: Any = None,
    raw: np.ndarray | None = None,
) -> pd.DataFrame:
    """Score a feature table without reasons: the frame lists select from, with :func:`list_columns`.

    Keeps every non-score column of ``features`` (e.g. ``country``) so lists can filter on it.
    ``matrix`` is ``scorer.prepare(features)`` and ``raw`` ``scorer.raw_score(matrix, as_of)`` when
    the caller already has them; ``as_of`` (the features' cut-off) picks the seasonal prior shift,
    ``None`` the training-time one. The table is the population, so it gets its own anchor
    (``Scorer.population_shift``).
    """
    if matrix is None:
        matrix = scorer.prepare(features)
    if raw is None:
        raw = scorer.raw_score(matrix, as_of)
    shift = scorer.population_shift(matrix, as_of=as_of, raw=raw)
    results = scorer.score_matrix(matrix, k=0, explain=False, as_of=as_of, population_shift=shift, raw=raw)
    entity, *score_columns = list_columns(scorer)
    scored = pd.DataFrame(
        {
            entity: features[entity].astype(str).to_numpy(),
            **{column: [r.get(column) for r in results] for column in score_columns},
        }
    )
    attributes = [c for c in features.columns if c not in ("as_of", *scored.columns)]
    return pd.concat([scored, features[attributes].reset_index(drop=True)], axis=1)


def select_at_risk(
    scored: pd.DataFrame,
    *,
    top: int,
    min_value: float | None = None,
    tiers: Sequence[str] | None = None,
    where: Mapping[str, Any] | None = None,
    tier_names: Sequence[str] | None = None,
    columns: Sequence[str] = SCORE_COLUMNS,
    rank: str = "value_at_risk",
    exclude: Collection[str] | None = None,
    per: str | None = None,
) -> tuple[np.ndarray, int]:
    """Pick the top rows by ``rank`` among those that pass the filters, the filters checked first:
    the at-risk list by default, any task's list with its :func:`list_columns` and :data:`RANKED_BY`.

    Parameters
    ----------
    scored
        One row per customer (or lead) with ``columns`` and any attribute columns.
    top
        How many rows to return at most.
    min_value
        Keep rows whose ``rank`` value (value at risk, expected value, P(convert)) is at least this.
    tiers
        Keep rows in one of these tiers (``columns[2]``: tier, or grade for leads).
    where
        Attribute name -> condition (:func:`conditions`): a value (numbers compare as numbers,
        anything else as text; None matches a missing value), a list of values (any of them), or
        operators to operands (``{">=": 40, "<": 60}``, ``{"!=": "UK"}``); every attribute's
        condition must hold.
    tier_names
        The model's tiers: a tier in ``tiers`` that is not one of them is an error rather than
        an empty list.
    exclude
        Ids never to list (a suppression list: opted out, already in a campaign); they do not
        count as matched.
    per
        An attribute (or the tier): ``top`` rows for each of its values (a missing value is a
        group of its own), in the order of the whole list; e.g. each country's or each sales
        region's best.
    columns, rank
        The score columns (id, probability, tier, money fields) and the one the list ranks by.

    Returns
    -------
    The row positions of the selected rows in ``scored``, highest ``rank`` first (ties by
    probability, then id), and how many rows passed the filters.

    Raises
    ------
    FilterError
        ``top`` is not positive, ``tiers`` names a tier the model does not have, ``where`` or
        ``per`` names a column that ``scored`` does not have or (``per``) a score column, or ``where`` has
        an unknown operator or compares a text column or with something other than a number.
    """
    entity, tier_column = columns[0], columns[2]
    if top < 1:
        raise FilterError("top", f"must be at least 1, got {top}")
    tiers = check_tiers(tiers, tier_names, tier_column)
    where = where_case(tier_case(id_spelling(where, scored, entity)[0], tier_names, tier_column), scored)
    for name, spec in (where or {}).items():  # a score too: value_at_risk < 2000, probability >= 0.5
        _check_attribute(scored, name, f"where.{name}", (), entity)
        conditions(name, spec, scored[name])
    if per is not None:
        _check_attribute(scored, per, "per", set(columns[1:]) - {tier_column}, entity)
        n_values = scored[per].nunique()
        if _numeric(scored[per]) and n_values > MAX_PER_VALUES:
            raise FilterError(
                "per",
                f"{per} is a number with {n_values:,} values, which would list the top of each: per groups by "
                f"a category (at most {MAX_PER_VALUES} values); for a range of {per}, use where",
            )
    if min_value is not None and rank == "probability" and min_value > 1:
        raise FilterError("min_value", f"the list ranks by a probability, at most 1; {min_value:g} would list no one")
    return select_top(
        scored,
        top=top,
        rank=rank,
        entity=entity,
        tier_column=tier_column,
        min_value=min_value,
        tiers=tiers,
        where=where,
        exclude=exclude,
        per=per,
    )


def filterable(
    scored: pd.DataFrame, columns: Sequence[str], tier_names: Sequence[str], *, max_values: int = 50
) -> dict[str, Any]:
    """What a list of ``scored`` can filter on, for a tool that builds the filters: ``tiers``, the
    text ``attributes`` (``where``, ``per``) with their values, commonest first (at most
    ``max_values``), and the numeric columns (``numbers``) that ``where`` compares: the scores
    (probability, the money fields) first, then the features."""
    text = attribute_columns(scored, columns)
    return {
        "tiers": list(tier_names),
        "attributes": {
            name: [str(v) for v in scored[name].dropna().astype(str).value_counts().index[:max_values]] for name in text
        },
        "numbers": [c for c in columns[1:] if c != columns[2]]
        + [c for c in scored.columns if c not in columns and c not in text],
    }


def _check_attribute(scored: pd.DataFrame, name: str, field: str, scores: Collection[str], entity: str) -> None:
    """Refuse a ``where`` or ``per`` attribute that ``scored`` does not have (or a score column),
    naming the attributes there are."""
    if name in scored.columns and name not in scores:
        return
    allowed = sorted(c for c in scored.columns if c not in scores)
    # The attributes (country, job...) first: a list of every feature would bury them.
    text = attribute_columns(scored[allowed], ())
    numbers = [c for c in allowed if c not in text]
    # `Country` (as a spreadsheet's header writes it) was refused without a word of `country`.
    like = closest(name, allowed, n=1, cutoff=0.8)  # a name that near (at 0.6, `planet` was like `loan`)
    raise FilterError(
        field,
        f"unknown {_noun(entity)} attribute" + (f" (did you mean {like[0]!r}?)" if like else "") + "; "
        f"filterable: {', '.join(text)}"
        + (f"; or one of the {len(numbers)} numeric columns ({', '.join(numbers[:4])}, ...)" if numbers else ""),
    )


# A one-column file's first line that names the column rather than holding an id ("Customer", "ID",
# "lead_id"): read as an id, it was reported as one the population does not hold.
_HEADER_WORD = re.compile(r"(customer|client|contact|account|lead)?[\s_-]*(ids?|numbers?|no|code)?", re.IGNORECASE)


def read_ids(path: str | Path, entity: str) -> frozenset[str]:
    """The ids of a suppression file (``--exclude``): a CSV with an ``entity`` column (``customer_id``,
    ``lead_id``; other columns are ignored), or one id per line (a first line such as ``Customer ID``
    is its header). Ids are text, as the data contract makes them (``12346.0``, a number written by a
    spreadsheet, is ``12346``). UTF-8 (with or without Excel's byte order mark), UTF-16 (Excel's
    "Unicode text") or, failing those, Windows-1252 (Excel's "CSV (Comma delimited)" on Windows).

    Raises
    ------
    ValueError
        The file is missing or unreadable, an Excel workbook, or has several columns and none named
        ``entity``.
    """
    try:
        text = _decoded(Path(path).read_bytes(), path)
        try:  # a spreadsheet's export may separate by ";" or tabs
            dialect: Any = csv.Sniffer().sniff(text[:65_536], delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel
        table = [row for row in csv.reader(io.StringIO(text), dialect) if any(cell.strip() for cell in row)]
    except (OSError, csv.Error) as exc:
        raise ValueError(f"--exclude {path}: cannot read it ({exc})") from exc
    header = [cell.strip() for cell in table[0]] if table else []
    # "Customer ID", "customerId", "LEAD_ID": the entity's column, however the export spells it.
    names, wanted = [re.sub(r"[^a-z0-9]", "", cell.lower()) for cell in header], entity.replace("_", "")
    if wanted in names:
        column, table = names.index(wanted), table[1:]
    elif len(header) <= 1:
        column = 0
        if header and header[0] and _HEADER_WORD.fullmatch(header[0]):
            table = table[1:]
    else:
        raise ValueError(
            f"--exclude {path}: a file with several columns needs one named {entity!r} (the ids); "
            f"it has {', '.join(map(repr, header[:8]))}"
        )
    return clean_ids(row[column] if column < len(row) else "" for row in table)


def _decoded(data: bytes, path: str | Path) -> str:
    if data.startswith(b"PK\x03\x04"):
        raise ValueError(
            f"--exclude {path}: an Excel workbook (.xlsx), not a CSV: save it as 'CSV UTF-8' and pass that file"
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:  # Excel's CSV on Windows: an accented name in another column
        return data.decode("cp1252", errors="replace")


def clean_ids(ids: Iterable[str]) -> frozenset[str]:
    """Ids of a suppression list as the tables hold them: without surrounding blanks, and a whole
    number written by a spreadsheet (``12346.0``, or ``12346,0`` with a decimal comma) as its digits
    (``12346``); blank ones dropped. The file of ``--exclude`` and the API's ``exclude_ids`` both go
    through it."""
    stripped = (i.strip() for i in ids)
    return frozenset(_clean_id(i) for i in stripped if i)


def _clean_id(value: str) -> str:
    """One id as :func:`clean_ids` takes it: without blanks, ``12346.0`` (``12346,0``) as ``12346``."""
    return re.sub(r"^(-?\d+)[.,]0+$", r"\1", value.strip())


def _id_value(value: Any) -> str:
    """A ``where`` value of the id attribute as a suppression list's id: a whole number posted as JSON
    (``12346.0``) as its digits, as the API's ``exclude_ids`` takes it (:func:`serving.schemas.id_text`),
    then as :func:`clean_ids` takes text."""
    return _clean_id(str(id_text(value)))


_THOUSANDS = re.compile(r"\d{1,3}(,\d{3})+")
_NUMBER = re.compile(r"\+?\d+(\.\d+)?(e\+?\d{1,2})?")


def _loose(value: str) -> str:
    """An id as a spreadsheet or another system may have respelt it, reduced to what they keep: the
    case folded, a number's value (``016000``, ``16,000``, ``1.6E+04`` are ``16000``)."""
    text = value.strip().casefold()
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    if _NUMBER.fullmatch(text):
        number = Decimal(text)
        if number == number.to_integral_value():
            return str(int(number))
    return text


def _loose_keys(ids: pd.Series) -> pd.Series:
    """:func:`_loose` of a population's ids, at once: the case folded, and leading zeros off digits."""
    keys = ids.str.strip().str.casefold()
    digits = keys.str.fullmatch(r"\d+").fillna(False).to_numpy(dtype=bool)
    return keys.where(~digits, keys.str.lstrip("0").replace("", "0"))


@dataclass(frozen=True)
class Suppression:
    """A suppression list matched against a population (:func:`match_suppression`)."""

    entity: str
    given: int  # ids in the list
    mask: np.ndarray  # the population's rows it leaves off
    near: Mapping[str, str]  # ids matched only as spelt otherwise: as given -> the population's
    missing: Sequence[str]  # ids the population does not hold, in order
    ids: frozenset[str] = frozenset()  # the population's ids it leaves off, as the population spells them
    source: str = "the file"  # where the ids came from, as the note names it: "the file", "the ids sent"

    @property
    def rows(self) -> int:
        return int(self.mask.sum())

    @property
    def unmatched(self) -> bool:
        """Ids were respelt to match, or match none: worth a warning, since an opted-out customer
        whose id is spelt otherwise again would be listed."""
        return bool(self.near or self.missing)

    @property
    def note(self) -> str:
        """What the list did: how many rows it left off, which ids it matched only as spelt
        otherwise, and which the population does not hold (an old export, another system's ids)."""
        noun = _noun(self.entity)
        note = f"excluded {self.rows:,} {noun}{'' if self.rows == 1 else 's'} of the population"
        if not self.given:
            return note + "; the suppression list holds no ids, so no one was left off (an export that failed?)"
        if self.near:
            pairs = [f"{given!r} as {found!r}" for given, found in self.near.items()]
            note += f"; {len(pairs):,} of its ids matched only as spelt otherwise, and were excluded: {_some(pairs)}"
        if self.missing and not self.rows:
            note += (
                f"; none of its {self.given:,} ids is in it: check that {self.source} "
                f"{'holds' if self.source == 'the file' else 'are'} {self.entity} values of this "
                f"data ({_some(list(map(repr, self.missing)))})"
            )
        elif self.missing:
            n = len(self.missing)
            note += (
                f"; {n:,} of the {self.given:,} ids to exclude {'is' if n == 1 else 'are'} not in it: "
                f"{_some(list(map(repr, self.missing)))}"
            )
        return note


def _some(items: Sequence[str], shown: int = 5) -> str:
    """The first ``shown`` of ``items``, and how many more."""
    more = len(items) - shown
    return ", ".join(items[:shown]) + (f" and {more:,} more" if more > 0 else "")


def match_suppression(
    scored: pd.DataFrame, entity: str, exclude: Collection[str], source: str = "the file"
) -> Suppression:
    """The rows of ``scored`` a suppression list ``exclude`` leaves off: those whose id it holds, and
    those whose id it holds only as spelt otherwise (:func:`_loose`: ``l41099`` for ``L41099``,
    ``016000`` or ``1.6E+04`` for ``16000``), which an opted-out customer should not escape by;
    each is named in the :attr:`Suppression.note`."""
    population = scored[entity].astype(str)
    mask = population.isin(list(exclude)).to_numpy()
    held = set(population[mask])
    rest = sorted(i for i in exclude if i not in held)
    respelt = _respelt(population, rest)
    if respelt:
        mask = mask | population.isin([found for ids in respelt.values() for found in ids]).to_numpy()
    near = {given: ids[0] for given, ids in sorted(respelt.items())}
    missing = [i for i in rest if i not in near]
    return Suppression(entity, len(exclude), mask, near, missing, frozenset(population[mask]), source)


def _respelt(population: pd.Series, given: Iterable[str]) -> dict[str, list[str]]:
    """The ids of ``population`` (text) that each of ``given`` matches only as spelt otherwise
    (:func:`_loose`: ``l41099`` for ``L41099``, ``016000`` or ``1.6E+04`` for ``16000``), for those of
    ``given`` that match some; pass the ids the population does not hold as given. A suppression list
    (:func:`match_suppression`) and the id attribute of ``where`` (:func:`id_spelling`) match ids so."""
    wanted: dict[str, list[str]] = {}
    for value in given:
        wanted.setdefault(_loose(value), []).append(value)
    if not wanted:
        return {}
    keys = _loose_keys(population)
    hit = keys.isin(list(wanted)).to_numpy()
    found: dict[str, list[str]] = {}
    for key, held in zip(keys[hit], population[hit], strict=True):
        for value in wanted[key]:
            found.setdefault(value, []).append(held)
    return found


def id_spelling(
    where: Mapping[str, Any] | None, scored: pd.DataFrame, entity: str
) -> tuple[Mapping[str, Any] | None, dict[str, list[str]]]:
    """``where`` with the values of the id attribute (``customer_id``, ``lead_id``) as ``scored`` spells
    them, matched as a suppression list's ids are (:func:`match_suppression`): ``12346.0`` (a JSON number
    or a spreadsheet's text) is ``12346``, and ``012346``, ``12,346`` or ``l41099`` match ``12346`` and
    ``L41099`` only as spelt otherwise; and those: as given (as :func:`clean_ids` takes it) -> the ids
    they matched, for the warning. ``customer_id=12346.0`` listed no one, while ``--exclude`` of the same
    id left the customer off. Other attributes, and a value that matches nothing, stay as given."""
    if not where or entity not in where or entity not in scored.columns:
        return where, {}
    spec = where[entity]
    items = list(spec.items()) if isinstance(spec, Mapping) else [("=", spec)]
    # The values of = and != as ids; a comparison stays, for conditions() to refuse on a text column.
    listed = {
        op: operand if isinstance(operand, (list, tuple)) else [operand] for op, operand in items if op in ("=", "!=")
    }
    given = {op: [None if v is None else _id_value(v) for v in values] for op, values in listed.items()}
    wanted = {v for values in given.values() for v in values if v is not None}
    population = scored[entity].astype(str)
    held = set(population[population.isin(list(wanted))])
    respelt = _respelt(population, sorted(wanted - held))
    spelt = {op: [found for v in values for found in respelt.get(v, [v])] for op, values in given.items()}
    out = {op: spelt.get(op, operand) for op, operand in items}
    return {**where, entity: out if isinstance(spec, Mapping) else out["="]}, respelt


def with_suppression(
    filters: ListFilters, scored: pd.DataFrame, entity: str, source: str = "the file"
) -> tuple[ListFilters, Suppression | None]:
    """``filters`` whose suppression list is matched against ``scored`` once (:func:`match_suppression`),
    its ``exclude`` the population's ids it leaves off, as the selection takes them; and the match, for
    the count and the note (None without a suppression list). The lists matched the list twice, the
    respelt ids' search included. ``source``: where the ids came from, as the note names it (the API's
    are "the ids sent": its note said "check that the file holds", and no file was sent)."""
    if filters.exclude is None:
        return filters, None
    suppression = match_suppression(scored, entity, filters.exclude, source)
    return replace(filters, exclude=suppression.ids), suppression


def excluded_note(scored: pd.DataFrame, entity: str, exclude: Collection[str] | None) -> str | None:
    """:attr:`Suppression.note` of ``exclude`` on ``scored`` (None without a suppression list)."""
    return None if exclude is None else match_suppression(scored, entity, exclude).note


def _noun(entity: str) -> str:
    """What a list's rows are, by their id column."""
    return "lead" if entity == "lead_id" else "customer"


def _by_case(tier_names: Sequence[str]) -> dict[str, str]:
    """The model's tier (grade) names by their case-folded spelling: how a tier given in any case is found."""
    return {name.casefold(): name for name in tier_names}


def tier_case(
    where: Mapping[str, Any] | None, tier_names: Sequence[str] | None, tier_column: str = "tier"
) -> Mapping[str, Any] | None:
    """``where`` with its tier (grade) values as the model spells them, as ``tiers`` takes them
    (``{"tier": "HIGH"}`` is ``high``; it matched no one, where ``tiers: ["High"]`` listed the tier); other
    values, and a tier name the model does not have, stay as given (the warning names those)."""
    if not where or tier_column not in where or not tier_names:
        return where
    by_case = _by_case(tier_names)

    def spell(spec: Any) -> Any:
        if isinstance(spec, Mapping):
            return {op: spell(operand) for op, operand in spec.items()}
        if isinstance(spec, (list, tuple)):
            return [spell(value) for value in spec]
        return by_case.get(spec.casefold(), spec) if isinstance(spec, str) else spec

    return {**where, tier_column: spell(where[tier_column])}


def where_case(where: Mapping[str, Any] | None, scored: pd.DataFrame) -> Mapping[str, Any] | None:
    """``where`` with each text value of a text attribute as ``scored`` spells it (``france`` is
    ``France``; every spelling there is, when the data has several), as tiers are matched: such a value
    listed no one, with a warning naming the value it meant. An exact value, a number, and an attribute
    ``scored`` does not have stay as given."""
    if not where:
        return where
    out = dict(where)
    for name, spec in where.items():
        if name not in scored.columns or _numeric(scored[name]):
            continue
        spellings: dict[str, list[str]] = {}
        for value in sorted(map(str, scored[name].dropna().unique())):
            spellings.setdefault(value.casefold(), []).append(value)

        def spell(value: Any, spellings: dict[str, list[str]] = spellings) -> list[Any]:
            if not isinstance(value, str) or value in spellings.get(value.casefold(), [value]):
                return [value]
            return spellings.get(value.casefold(), [value])

        def values(operand: Any) -> Any:
            given = operand if isinstance(operand, (list, tuple)) else [operand]
            respelt = [found for value in given for found in spell(value)]
            return respelt if isinstance(operand, (list, tuple)) or len(respelt) > 1 else respelt[0]

        if isinstance(spec, Mapping):
            out[name] = {op: values(operand) if op in ("=", "!=") else operand for op, operand in spec.items()}
        else:
            out[name] = values(spec)
    return out


def check_tiers(
    tiers: Sequence[str] | None, tier_names: Sequence[str] | None, tier_column: str = "tier"
) -> list[str] | None:
    """``tiers`` as the model's ``tier_names`` spell them (``High`` is ``high``, ``a`` is ``A``); a tier
    (grade, for leads) that is none of them is refused rather than listing nobody for it (None: not
    checked)."""
    if tiers is None or tier_names is None:
        return None if tiers is None else list(tiers)
    by_case = _by_case(tier_names)
    unknown = [t for t in tiers if t.casefold() not in by_case]
    if unknown:
        raise FilterError(
            "tiers", f"unknown {tier_column} {unknown[0]!r}; the model's {tier_column}s: {list(tier_names)}"
        )
    return [by_case[t.casefold()] for t in tiers]


def select_top(
    scored: pd.DataFrame,
    *,
    top: int,
    rank: str,
    entity: str = "customer_id",
    tier_column: str = "tier",
    min_value: float | None = None,
    tiers: Sequence[str] | None = None,
    where: Mapping[str, Any] | None = None,
    exclude: Collection[str] | None = None,
    per: str | None = None,
) -> tuple[np.ndarray, int]:
    """The row positions of the ``top`` rows of ``scored`` by ``rank`` (ties by probability, then
    ``entity``; with ``per``, the ``top`` of each of its values) among those with a ``rank`` value
    (at least ``min_value``), in ``tiers``, matching ``where`` and not in ``exclude``, and how many
    passed. The filters are taken as checked (:func:`select_at_risk` checks
    the at-risk list's)."""
    keep = np.ones(len(scored), dtype=bool)
    value = scored[rank].to_numpy(dtype=float, na_value=np.nan)
    keep &= ~np.isnan(value)
    if min_value is not None:
        keep &= value >= min_value
    if tiers:
        keep &= scored[tier_column].isin(list(tiers)).to_numpy()
    for name, spec in (where or {}).items():
        keep &= where_mask(scored[name], conditions(name, spec))
    if exclude:
        keep &= ~match_suppression(scored, entity, exclude).mask
    positions = np.flatnonzero(keep)
    order = np.lexsort(
        (
            scored[entity].to_numpy()[positions].astype(str),
            -scored["probability"].to_numpy(dtype=float)[positions],
            -value[positions],
        )
    )
    ranked = positions[order]
    if per is None:
        return ranked[:top], int(len(positions))
    groups = scored[per].iloc[ranked].astype("string").fillna("\0missing")
    place = groups.groupby(groups.to_numpy(), sort=False).cumcount().to_numpy()
    return ranked[place < top], int(len(positions))


def closest(wanted: str, values: Sequence[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The values most like ``wanted``, ignoring case ("Uk" is close to "UK"), likest first."""
    by_case = {v.casefold(): v for v in values}
    return [by_case[c] for c in difflib.get_close_matches(wanted.casefold(), list(by_case), n=n, cutoff=cutoff)]


# The values of one ``where`` attribute that no row has named one by one in the warnings; the rest are counted.
NAMED_ABSENT = 5


def unmatched_filters(
    scored: pd.DataFrame,
    where: Mapping[str, Any] | None,
    tier_names: Sequence[str] | None = None,
    *,
    min_value: float | None = None,
    rank: str | None = None,
    tiers: Sequence[str] | None = None,
) -> list[str]:
    """A sentence for each ``where`` value that no customer (or lead) of ``scored`` (the whole population,
    before any filter) has: a typo (``Netherland``) or a value absent at this date, with the closest
    values there are; and for an attribute whose conditions together match no one (``age > 200``),
    the range of values there is. The list is still made (empty for such a filter); this says why.
    With the model's ``tier_names``, a tier (grade) is matched whatever its case, as the list selects it.
    ``min_value`` above every row's ``rank`` value, and a tier of ``tiers`` no row is in, are said
    the same way (the range there is, the tiers there are): `--min-value 5000` wrote "the top 0 of 0"
    without a word, where ``value_at_risk >= 5000`` in ``where`` said why."""
    entity = "lead_id" if "lead_id" in scored.columns else "customer_id"
    where, respelt = id_spelling(where, scored, entity)
    where = where_case(tier_case(where, tier_names, "grade" if "grade" in scored.columns else "tier"), scored)
    out, what = [], _noun(entity)
    if respelt:  # as a suppression list's note names them: such an id spelt otherwise again would match no one
        pairs = [f"{given!r} as {' or '.join(map(repr, found))}" for given, found in sorted(respelt.items())]
        out.append(
            f"where.{entity}: {len(pairs):,} of its ids matched only as spelt otherwise, and were taken as the data "
            f"spells them: {_some(pairs)}"
        )
    for name, spec in (where or {}).items():
        if name not in scored.columns:
            continue
        column, pairs, said = scored[name], conditions(name, spec), len(out)
        values = sorted({str(v) for v in column.dropna().unique()})
        # What a wanted value is compared as, and the values there are: numbers in a number column, else text.
        key, known = (_number, set(column.dropna().to_numpy(dtype=float))) if _numeric(column) else (str, set(values))
        for op, operand in pairs:
            absent = (
                [wanted for wanted in operand if wanted is not None and key(wanted) not in known] if op == "=" else []
            )
            for wanted in absent[:NAMED_ABSENT]:
                close = closest(str(wanted), values)
                out.append(
                    f"where.{name}: no {what} in the population has {name} {wanted!r} ({_values_hint(values, close)})"
                    + _several_hint(name, wanted, values)
                )
            if len(absent) > NAMED_ABSENT:  # one sentence each made a CSV's warnings header of 33 KB
                out.append(
                    f"where.{name}: {len(absent) - NAMED_ABSENT:,} more of its values are not in the population "
                    f"({len(absent):,} of {len(operand):,} in all)"
                )
        if len(out) == said and not where_mask(column, pairs).any():
            if not values:
                there = f"no {what} has a value"
            elif _numeric(column):
                there = f"{name} runs from {column.min():g} to {column.max():g}"
            else:
                there = _values_hint(values, [])
            out.append(f"where.{name}: no {what} in the population has {describe(name, pairs)} ({there})")
    tier_column = "grade" if "grade" in scored.columns else "tier"
    if min_value is not None and rank in scored.columns:
        value = scored[rank].to_numpy(dtype=float, na_value=np.nan)
        if not (value >= min_value).any():
            there = (
                f"{rank} runs from {np.nanmin(value):g} to {np.nanmax(value):g}"
                if (~np.isnan(value)).any()
                else f"no {what} has a value"
            )
            out.append(f"min_value: no {what} in the population has {describe(rank, [('>=', min_value)])} ({there})")
    by_case = _by_case(tier_names or ())
    counts = scored[tier_column].value_counts() if tiers and tier_column in scored.columns else pd.Series()
    for tier in tiers or ():
        if counts.get(by_case.get(tier.casefold(), tier), 0) == 0:
            held = [f"{name} {counts[name]:,}" for name in (tier_names or counts.index) if counts.get(name, 0)]
            out.append(
                f"tiers: no {what} in the population is in {tier_column} {tier!r} ("
                + (f"{tier_column}s there: {', '.join(held)}" if held else f"no {what} has a {tier_column}")
                + ")"
            )
    return out


def _several_hint(name: str, wanted: Any, values: Sequence[str]) -> str:
    """For ``France,Germany``, values there are joined by commas into one: how to give several."""
    parts = [part.strip() for part in str(wanted).split(",")]
    known = {value.casefold() for value in values}
    if len(parts) < 2 or not all(part.casefold() in known for part in parts):
        return ""
    repeated = " ".join(f"--where {name}={part}" for part in parts)
    return f"; for several values, repeat the filter ({repeated}) or post a list ({parts!r})"


def _values_hint(values: Sequence[str], close: Sequence[str]) -> str:
    if close:
        return f"closest: {', '.join(map(repr, close))}"
    return f"{len(values)} values, e.g. {', '.join(map(repr, values[:5]))}"


def at_risk_rows(
    scored: pd.DataFrame,
    positions: np.ndarray,
    *,
    reasons: Sequence[list[dict[str, Any]] | None] | None = None,
    counter_reasons: Sequence[list[dict[str, Any]] | None] | None = None,
    attributes: Sequence[str] = (),
    columns: Sequence[str] = SCORE_COLUMNS,
) -> list[dict[str, Any]]:
    """Plain rows for the selected customers (or leads): ``columns`` (the id first), reasons and
    counter-reasons (when given) and the chosen attributes."""
    rows = []
    picked = scored.iloc[positions]
    records = picked[list(columns)].to_dict("records")
    attrs = picked[list(attributes)].to_dict("records") if attributes else [{}] * len(picked)
    for i, record in enumerate(records):
        row = {k: (None if _missing(v) else v) for k, v in record.items()}
        row[columns[0]] = str(row[columns[0]])
        row["reasons"] = None if reasons is None else reasons[i]
        row["counter_reasons"] = None if counter_reasons is None else counter_reasons[i]
        row["attributes"] = {k: (None if _missing(v) else _plain(v)) for k, v in attrs[i].items()}
        rows.append(row)
    return rows


# A list gives a reason (or counter-reason) only when it moves the row's probability by this much:
# in the bundled at-risk list half the reasons moved it by less (a customer at P(churn) 0.06 read
# "Based in Australia (raises churn risk)" for 0.6 points and "0% of purchase days at weekends" for 0.01).
MIN_LIST_CHANGE = 0.01


def none_material(scorer: Any) -> tuple[str, str]:
    """What a list's CSV says in its first reason (and counter-reason) cell of a row that has none
    moving the probability by :data:`MIN_LIST_CHANGE`: "No reason raises churn risk by 1 point or more"."""
    points = f"{MIN_LIST_CHANGE * 100:g} point{'' if MIN_LIST_CHANGE * 100 == 1 else 's'}"
    return (
        f"No reason {scorer.reasons.direction} by {points} or more",
        f"No reason {scorer.reasons.counter_label()} by {points} or more",
    )


def material(reasons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``reasons`` (largest first) down to those whose ``probability_change`` is at least
    :data:`MIN_LIST_CHANGE` either way; a reason without one (a scorer's output from before it) stays."""
    return [r for r in reasons if abs(r.get("probability_change", MIN_LIST_CHANGE)) >= MIN_LIST_CHANGE]


def explained_rows(
    scorer: Any,
    scored: pd.DataFrame,
    matrix: np.ndarray,
    positions: np.ndarray,
    *,
    k: int,
    counter_k: int,
    attributes: Sequence[str] = (),
    as_of: Any = None,
    contrib: Any = None,
    unseen: Mapping[int, Mapping[str, str]] | None = None,
    columns: Sequence[str] = SCORE_COLUMNS,
) -> list[dict[str, Any]]:
    """:func:`at_risk_rows` for the selected customers with up to ``k`` reasons and ``counter_k``
    counter-reasons each (``None`` when 0), those that move the probability by at least
    :data:`MIN_LIST_CHANGE` (:func:`material`), explained from ``matrix`` (the rows of ``scored``), or
    from ``contrib`` when the caller has their SHAP values already (an array, or the service's
    ``runtime.SnapshotContributions``: anything indexed by the rows of ``matrix``).
    ``unseen`` is ``Scorer.unseen_rows`` of ``matrix``: the category values its reasons name."""
    reasons = counter = None
    if (k > 0 or counter_k > 0) and len(positions):
        explained = scorer.score_matrix(
            matrix[positions],
            k=k,
            counter_k=counter_k,
            explain=True,
            as_of=as_of,
            contrib=None if contrib is None else contrib[positions],
            unseen=rows_at(unseen, positions) if unseen else None,
        )
        reasons = [material(r["reasons"]) for r in explained] if k > 0 else None
        counter = [material(r["counter_reasons"]) for r in explained] if counter_k > 0 else None
    return at_risk_rows(
        scored, positions, reasons=reasons, counter_reasons=counter, attributes=attributes, columns=columns
    )


@dataclass(frozen=True)
class RankedPopulation:
    """What :func:`rank_population` gives a command: the listed rows and what it says beside them."""

    rows: list[dict[str, Any]]
    matched: int  # rows of the population that passed the filters
    drift: tuple[Any, ...]  # the population's feature drift (models.drift.FeatureDrift)
    scored: pd.DataFrame  # the whole population scored, for the filters' warnings
    suppression: Suppression | None = None  # the suppression list as matched (None: none given)


def rank_population(
    population: Any,
    task: str,
    *,
    top: int,
    counter_k: int,
    filters: ListFilters = ListFilters(),
    moved_up_from: pd.DataFrame | None = None,
    only_moved_up: bool = False,
) -> RankedPopulation:
    """A command's list from a champion's population at one date (``training.score.champion_population``):
    scored as the service scores its snapshot (:func:`scored_for_list`), ranked by :data:`RANKED_BY`
    among the rows that pass ``filters`` (:func:`select_at_risk` checks them), the listed rows
    explained with the model's ``top_k_reasons`` reasons and ``counter_k`` counter-reasons and
    carrying the population's :func:`attribute_columns`. ``only_moved_up``: list only the rows in a
    higher tier than in ``moved_up_from``, the same model's :func:`scored_for_list` at an earlier
    date (None: nobody was in the population then; :func:`moved_up`)."""
    scorer, features, as_of = population.scorer, population.features, population.as_of
    matrix = scorer.prepare(features)
    scored = scored_for_list(scorer, features, matrix, as_of=as_of)
    filters, suppression = with_suppression(filters, scored, scorer.entity)
    if only_moved_up:
        filters = moved_up_only(filters, scorer, scored, moved_up_from)
    rows, matched = ranked_rows(
        scorer,
        scored,
        matrix,
        task,
        top=top,
        k=population.model_config.top_k_reasons,
        counter_k=counter_k,
        filters=filters,
        as_of=as_of,
        unseen=scorer.unseen_rows(features, matrix),
    )
    return RankedPopulation(rows, matched, tuple(scorer.drift(matrix, features)), scored, suppression)


def ranked_rows(
    scorer: Any,
    scored: pd.DataFrame,
    matrix: np.ndarray,
    task: str,
    *,
    top: int,
    k: int,
    counter_k: int,
    filters: ListFilters = ListFilters(),
    as_of: Any = None,
    contrib: Any = None,
    unseen: Mapping[int, Mapping[str, str]] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """The rows of ``task``'s list from a scored population (:func:`scored_for_list` of ``matrix``):
    the top ``top`` by :data:`RANKED_BY` among those that pass ``filters`` (:func:`select_at_risk`),
    explained (:func:`explained_rows`, from ``contrib`` when the caller has the SHAP values) and
    carrying the :func:`attribute_columns`; and how many rows passed the filters. The commands
    (:func:`rank_population`) and the service (its snapshots) make their lists with it."""
    columns = list_columns(scorer)
    positions, matched = select_at_risk(
        scored, top=top, tier_names=scorer.tier_names, columns=columns, rank=RANKED_BY[task], **filters.selection()
    )
    rows = explained_rows(
        scorer,
        scored,
        matrix,
        positions,
        k=k,
        counter_k=counter_k,
        attributes=attribute_columns(scored, columns, filters.named),
        as_of=as_of,
        contrib=contrib,
        unseen=unseen,
        columns=columns,
    )
    return rows, matched


def attribute_columns(scored: pd.DataFrame, columns: Sequence[str], named: Collection[str] = ()) -> list[str]:
    """The columns a list's rows carry besides ``columns`` (the score columns, :func:`list_columns`):
    the population's non-numeric ones, its attributes (country; a lead's job, contact...), and the
    numeric ones ``named`` (those a ``where`` filters on or ``per`` groups by: ``age >= 40``, the
    rows show the age), in ``scored``'s order. The commands' CSVs and the API's lists carry the same."""
    return [
        c
        for c in scored.columns
        if c not in columns
        and (c in named or pd.api.types.is_bool_dtype(scored[c]) or not pd.api.types.is_numeric_dtype(scored[c]))
    ]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value is pd.NaT


def _plain(value: Any) -> str | float:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    return str(value)


# The columns with_scores_then adds to listed rows: the same model's score at an earlier date.
THEN_COLUMNS = ("probability_then", "tier_then")


def _rose(tier: Any, tier_then: Any, rank: Mapping[str, int]) -> bool:
    """Whether ``tier`` is higher than ``tier_then`` (None: not in the population then)."""
    return tier_then is not None and tier in rank and tier_then in rank and rank[tier] < rank[tier_then]


def moved_up(
    scored: pd.DataFrame, then: pd.DataFrame | None, tier_names: Sequence[str], columns: Sequence[str] = SCORE_COLUMNS
) -> np.ndarray:
    """Rows of ``scored`` in a higher tier than in ``then`` (the same model's :func:`scored_for_list`
    at an earlier date; None: an empty population); a row not in ``then`` did not move up."""
    entity, _, tier = columns[:3]
    before = {} if then is None else dict(zip(then[entity].astype(str), then[tier], strict=True))
    rank = {name: i for i, name in enumerate(tier_names)}  # 0: the highest tier
    return np.array(
        [_rose(now, before.get(key), rank) for key, now in zip(scored[entity].astype(str), scored[tier], strict=True)],
        dtype=bool,
    )


def moved_up_only(filters: ListFilters, scorer: Any, scored: pd.DataFrame, then: pd.DataFrame | None) -> ListFilters:
    """``filters`` that also leave out every row of ``scored`` not in a higher tier than in ``then``
    (:func:`moved_up`): the newly at risk. They are left out as a suppression list's ids are, not
    listed and not matched (``n_excluded`` still counts the caller's ``exclude`` alone)."""
    columns = list_columns(scorer)
    stayed = scored[columns[0]][~moved_up(scored, then, scorer.tier_names, columns)]
    return replace(filters, exclude={*(filters.exclude or ()), *stayed.astype(str)})


def with_scores_then(
    rows: Sequence[dict[str, Any]],
    then: pd.DataFrame | None,
    *,
    tier_names: Sequence[str],
    since: Any,
    columns: Sequence[str] = SCORE_COLUMNS,
    rule: str = "",
    season: str = "",
) -> str:
    """Add :data:`THEN_COLUMNS` to listed rows (in place) from ``then``, the same model's
    :func:`scored_for_list` at the earlier date ``since`` (None: its population was empty); a row
    outside that population gets None. Returns a sentence of how the listed rows moved: how many
    are in a higher tier than then, how many in a lower one, and how many were not in the population
    then (``rule``: who is), and ``season`` (:func:`seasonal_move`) after it."""
    entity, _, tier = columns[:3]
    earlier = (
        {} if then is None else dict(zip(then[entity], zip(then["probability"], then[tier], strict=True), strict=True))
    )
    rank = {name: i for i, name in enumerate(tier_names)}  # 0: the highest tier
    new = up = down = 0
    for row in rows:
        probability, tier_then = earlier.get(str(row[entity]), (None, None))
        row["probability_then"] = None if probability is None else float(probability)
        row["tier_then"] = tier_then
        new += tier_then is None
        up += _rose(row[tier], tier_then, rank)
        down += tier_then is not None and _rose(tier_then, row[tier], rank)
    if then is None:  # a date before the data, or in a gap of it: nothing to compare with, said as such
        return (
            f"since {as_of_text(since)}: the population was empty then"
            + (f" ({rule})" if rule else "")
            + f", so none of the {len(rows):,} listed has a score to compare with (is the date before the data?)"
        )
    return (
        f"since {as_of_text(since)}: {up:,} of the {len(rows):,} listed moved up a tier, "
        f"{down:,} down, {new:,} {'was' if new == 1 else 'were'} not in the population then"
        + (f" ({rule})" if rule else "")
        + (f"; {season}" if season else "")
    )


def seasonal_move(scorer: Any, since: Any, as_of: Any) -> str:
    """How the model's seasonal correction alone moves probabilities from ``since`` to ``as_of``, at each
    tier threshold ("" for a model without one, or a move under half a point): a weekly "newly at risk"
    list from 2011-11-09 to 2011-12-09 held customers whose every reason said nothing raised their risk,
    moved by the season's shift (log-odds +0.17 to +0.48), which the list did not say."""
    calibrator = scorer.calibrator
    if not getattr(calibrator, "seasonal_intercepts", None):
        return ""
    (scale_then, shift_then), (scale_now, shift_now) = calibrator.correction_at(since), calibrator.correction_at(as_of)
    moves = []
    for name, threshold in scorer.tiers:
        if not 0.0 < threshold < 1.0:
            continue
        raw = (np.log(threshold / (1.0 - threshold)) - shift_now) / scale_now
        before = float(1.0 / (1.0 + np.exp(-(scale_then * raw + shift_then))))
        if abs(before - threshold) >= 0.005:
            moves.append((before, threshold, name))
    if not moves:
        return ""
    said = [f"{before:.2f} into {threshold:.2f} ({name})" for before, threshold, name in moves]
    said[0] = said[0].replace(" into ", " then into ", 1) + " now"
    return (
        "features unchanged, the model's seasonal correction alone turns a probability of "
        + " and ".join(said)
        + ": a row near a threshold may have moved by the season, not by what the customer did"
    )


# The CSV is read by people, in a spreadsheet: probabilities to 4 decimals, money to 2, truncated (the
# JSON list keeps full precision for the systems that compute with it; the order is the same). Rounded, a
# customer at P(churn) 0.69997, tier medium, showed 0.7000, the threshold of high; truncated, a figure never
# shows a threshold it does not reach (tiers have at most 4 decimals: features.config.ModelConfig) nor a
# --min-value of 2 decimals a row does not pass.
CSV_DECIMALS = {"probability": 4, "probability_then": 4, "expected_spend": 2, "value_at_risk": 2, "expected_value": 2}


def _cell(column: str, value: Any) -> Any:
    if value is None:
        return ""
    decimals = CSV_DECIMALS.get(column)
    if decimals is None:
        return value
    number = float(value)
    if not np.isfinite(number):
        return f"{number}"
    scaled = number * 10**decimals
    whole = math.floor(scaled)
    if 1e-6 < scaled - whole < 1 - 1e-6:  # far from a step: the float's floor is the figure's (faster)
        return f"{whole / 10**decimals:.{decimals}f}"
    # Near one, through the shortest text of the float: 0.29 is 0.28999999999999998 in binary, and flooring that
    # lost a cent.
    shown = Decimal(repr(number)).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_FLOOR)
    return f"{shown:.{decimals}f}"


def _attribute_cell(value: Any) -> Any:
    """An attribute as a spreadsheet shows it: a number to at most 4 decimals, without trailing
    zeros (age 41, recency_days 1.0264), anything else as it is."""
    if value is None:
        return ""
    if isinstance(value, float):
        return np.format_float_positional(round(value, 4), trim="-")
    return value


def to_csv(
    rows: Sequence[Mapping[str, Any]],
    *,
    k: int,
    counter_k: int = 0,
    columns: Sequence[str] = SCORE_COLUMNS,
    stamp: Mapping[str, str] | None = None,
    attributes: Collection[str] | None = None,
    none_said: tuple[str, str] | None = None,
) -> str:
    """Render list rows as CSV: one line per customer (or lead), ``columns`` (the at-risk list's
    :data:`SCORE_COLUMNS` by default), the attributes, then ``reason_1..k`` and
    ``counter_reason_1..counter_k`` columns with the sentences; numbers truncated for reading
    (:data:`CSV_DECIMALS`). ``stamp`` adds constant columns last, on every row: the date and model
    of a list that is passed around as a file (:func:`file_stamp`). ``attributes``: the attribute
    columns (:func:`attribute_columns`), so that a list with no row has the header of one with rows
    (default: those the rows carry). ``none_said`` (:func:`none_material`): what the first reason and
    counter-reason cells of a row without one say, rather than nothing."""
    stamp = dict(stamp or {})
    attribute_names = sorted(
        {name for row in rows for name in (row.get("attributes") or {})} if attributes is None else attributes
    )
    header = [
        *columns,
        *attribute_names,
        *(f"reason_{i}" for i in range(1, k + 1)),
        *(f"counter_reason_{i}" for i in range(1, counter_k + 1)),
        *stamp,
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(map(spreadsheet_safe, header))
    for row in rows:
        attributes = row.get("attributes") or {}
        cells = [
            *(_cell(c, row.get(c)) for c in columns),
            *(_attribute_cell(attributes.get(a)) for a in attribute_names),
            *_texts(row.get("reasons"), k, none_said and none_said[0]),
            *_texts(row.get("counter_reasons"), counter_k, none_said and none_said[1]),
            *stamp.values(),
        ]
        writer.writerow(map(spreadsheet_safe, cells))
    return out.getvalue()


# What a spreadsheet reads as the start of a formula (OWASP's list): `=HYPERLINK(...)`, `@SUM(...)`,
# `+cmd|...` in an id or attribute of the source data ran when the list was opened.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, with a leading apostrophe (shown as text,
    the apostrophe hidden); numbers, negative ones written as text included (``-12.5``), as they are."""
    if not isinstance(cell, str) or not cell.startswith(_FORMULA_START):
        return cell
    try:
        float(cell)
    except ValueError:
        return "'" + cell
    return cell


def file_stamp(scorer: Any, as_of: Any) -> dict[str, str]:
    """The ``as_of`` and ``model`` columns of a list written to a file: the scoring date and the
    registered model and version that scored it (``crmscore-churn v3``)."""
    return {"as_of": as_of_text(as_of), "model": f"{scorer.model_name} v{scorer.version}"}


def _texts(reasons: Sequence[Mapping[str, Any]] | None, k: int, none: str | None = None) -> list[str]:
    """The first ``k`` sentences, padded with empty cells to ``k``; ``none`` in the first when the row
    was explained and has none."""
    texts = [r["text"] for r in (reasons or [])][:k]
    if not texts and reasons is not None and none and k > 0:
        texts = [none]
    return texts + [""] * (k - len(texts))

"""Readable reasons from SHAP values: the top-k features that push one score up (or down), as sentences.

LightGBM's ``predict(X, pred_contrib=True)`` returns exact TreeSHAP values on the raw
(log-odds) scale, one column per feature plus the bias. A reason is a feature whose value
raises the score (churn risk, purchase or conversion odds); its sentence is written from the
customer's own values by the model's templates, e.g. "No purchase for 143 days; usually buys
every 21 days". A feature without a template, or whose template needs a missing value, gets
a generic sentence built from its name. *Counter-reasons* are the same for the features that
pull the score down ("... (lowers churn risk)"): what keeps a low score low, which the reasons
alone do not say.

A feature that takes one value, or nearly, across each training cut-off's population (for the bundled
leads: the month's economic indicators, and the lead's age, since ``created_at`` has month
precision) says *when* a row was scored, not what sets it apart from its peers; it is a
*context* feature and never becomes a reason, though it still counts in the score.

Features that state one fact in several ways (the days since the last purchase, that gap over
the usual one, the purchase days of the last 30 and 90 days, ...) form a reason *group*: their
SHAP values are summed, which TreeSHAP's additivity makes the group's joint contribution, and the
group is one reason, written as the sentence of the member that pushes hardest its way. Without
groups, one customer could read "Bought on 2 days in the last 90 days (raises churn risk)" and
"No purchase for 2 days, 0.1x the usual gap (lowers churn risk)": two halves of one fact pulling
against each other, where the sum says which half wins and by how much. A very low score whose every
feature and group lowers it thus has counter-reasons only.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from features.seasonality import horizon_span
from features.touchpoints import touchpoint_column
from models.texts import touchpoint_groups, touchpoint_templates

__all__ = ["DATE_FIELDS", "ReasonWriter", "dated_values", "format_value", "humanize", "singularize", "tidy"]

# Fields a template may name besides the model's features: facts of the scoring date, given to
# ReasonWriter.explain(dated=...) by dated_values. Without them (no date) the next template is used.
DATE_FIELDS = ("coming_months",)
# Reasons weighed beyond k per row, to take the place of one that states a fact the row already gave.
SPARE_REASONS = 4

_WORDS = {"days": "days", "avg": "average", "pct": "%", "num": "number of", "n": "number of", "cnt": "count"}


_PLURALS = {
    "days": "day",
    "orders": "order",
    "products": "product",
    "categories": "category",
    "contacts": "contact",
    "interactions": "interaction",
    "months": "month",
    "weeks": "week",
    "lines": "line",
    "units": "unit",
    "times": "time",
    "items": "item",
    "events": "event",
}
# The words of an event type between a count and "events" ("1 support ticket events"): the data's own
# (features.touchpoints names its columns in lower-case letters and digits; models.texts says the
# underscores as spaces), so any such words, but only before "events".
_TYPE_WORDS = r"(?:[a-z\d]+ )+(?=events\b)"
# "1 days", "1 different products", "1 purchase days", "1 login events": a count of exactly one (not
# 11, 0.1 or 1.5) before a plural noun, or an average of exactly one ("1.0 different items per order").
# One product is not "different" from anything: "Bought 1 product". An event type's words are tried
# first: "1 days since events" counts events of a type "days since", not days.
_ONE_PLURAL = re.compile(
    r"(?<![\w.,])1(?:\.0+)? (" + _TYPE_WORDS + r"|(?:different |purchase )?)(" + "|".join(_PLURALS) + r")\b"
)


def singularize(text: str) -> str:
    """``"Bought on 1 days"`` -> ``"Bought on 1 day"``: templates write plurals, one thing is singular."""
    return _ONE_PLURAL.sub(lambda m: f"1 {m.group(1).replace('different ', '')}{_PLURALS[m.group(2)]}", text)


# "the latest 0 days ago", "No purchase for 0 days": an event on the scoring day itself.
_ZERO_AGO = re.compile(r"(?<![\w.,])0 days ago\b")
_ZERO_FOR = re.compile(r"^No purchase for 0 days\b")
# "Bought on 0 days in the last 90 days", "Bought in 0 of the last 13 weeks", "Bought 0 different
# products in the last 365 days": none at all.
_ZERO_BOUGHT = re.compile(r"^Bought (?:on 0 days in|in 0 of|0 different products in) the last\b")
# "0 orders in the last 30 days", "0 orders with a refund or return", "0 login events in the last 30
# days": a sentence opening on no count.
_ZERO_COUNT = re.compile(r"^0 ((?:" + _TYPE_WORDS + r")?(?:" + "|".join(_PLURALS) + r"))\b")
_ZERO_OPENINGS = ("0 ", "Bought on 0 ", "Bought in 0 ", "Bought 0 ")


# "Net spend of -13 in the last 180 days": refunds outweighed purchases.
_NEGATIVE_SPEND = re.compile(r"^Net spend of -([\d,.]+)")
# "0.0x the usual gap": a ratio that rounds to 0 but is not.
_TINY_RATIO = re.compile(r"\b0\.0x the usual gap\b")


# A signed whole that rounds to zero ("changed by -0 against the 90 days before", for -0.31): "0".
_SIGNED_ZERO = re.compile(r"(?<![\w.,])[-+]0(?![\d.,])")


def _stable(value: Any) -> Any:
    """A float to 10 significant digits: the engines' parallel sums differ in the last ones (DuckDB's
    -0.310000000001 is Spark's -0.31), which a reason's ``value`` should not show."""
    return float(f"{value:.10g}") if type(value) is float and math.isfinite(value) else value


def tidy(text: str) -> str:
    """A filled template as a person would write it: singular counts of one, "today" for 0 days ago,
    "No purchase in the last 90 days" for "Bought on 0 days in the last 90 days", refunds that
    outweigh purchases for a negative net spend, "well within the usual gap" for "0.0x" of it."""
    if text.startswith(_ZERO_OPENINGS):  # most sentences open otherwise: skip both substitutions
        text = _ZERO_COUNT.sub(r"No \1", _ZERO_BOUGHT.sub("No purchase in the last", text))
    elif text.startswith("Net spend of -"):
        text = _NEGATIVE_SPEND.sub(r"Refunds outweighed purchases by \1", text)
    if "0.0x" in text:
        text = _TINY_RATIO.sub("well within the usual gap", text)
    if text.startswith(("under 1%", "over 99%")):  # a share (_Share) that opens the sentence
        text = text[0].upper() + text[1:]
    if "-0" in text or "+0" in text:
        text = _SIGNED_ZERO.sub("0", text)
    return singularize(_ZERO_FOR.sub("Last purchase today", _ZERO_AGO.sub("today", text)))


class _Share(float):
    """A number whose whole-percent format (``{x:.0%}``) never rounds a part to 0% or 100%: a
    refund share of 0.3% reads "under 1%", one of 99.7% "over 99%"."""

    def __format__(self, spec: str) -> str:
        if spec == ".0%" and 0 < self < 0.005:
            return "under 1%"
        if spec == ".0%" and 0.995 <= self < 1:
            return "over 99%"
        return float.__format__(self, spec)


# Counts that weigh every purchase by its age (models.texts): above 0 whenever there was a purchase,
# so their sentence never opens on a window without one.
_WEIGHTED = ("decayed_",)
_NONE_IN_WINDOW = ("No purchase in the last", "No orders in the last")

# A sentence's fact, for telling two sentences of one row that state the same one: its first number
# outside the windows it is counted in, and the unit after it ("1 day" in "Bought on 1 day in the last
# 365 days" and in "Bought on 1 day since the first purchase 4 days ago"; "6,069" in "Net spend of
# 6,069 in the last 180 days" and in "Spend in the last 90 days changed by +6,069 ...").
_WINDOWS = re.compile(
    r"\b(?:in|of) the (?:last|first) \d[\d,]* (?:days?|weeks?|months?)\b|\b\d+-day\b"
    r"|\bin the \d[\d,]* days after this date last year\b"
)
_FIRST_NUMBER = re.compile(
    r"[+-]?(\d[\d,]*(?:\.\d+)?)(%?)"
    r"(?:\s+((?:[a-z\d]+ )*?events?|days?|orders?|products?|weeks?|months?|times?|units?|lines?)\b)?"
)
_DIRECTION = re.compile(r" \((?:raises|lowers) [^()]*\)$")


def _fact(text: str) -> tuple[float, str | None] | None:
    """The first number of ``text`` outside its windows and the unit after it; None for none, a
    zero, a percentage or a small number without a unit (too common to tell one fact)."""
    match = _FIRST_NUMBER.search(_WINDOWS.sub("", text))
    if match is None:
        return None
    number, unit = float(match.group(1).replace(",", "")), (match.group(3) or "").removesuffix("s") or None
    if match.group(2) or number == 0 or (unit is None and number < 10):
        return None
    return number, unit


def _states_again(text: str, earlier: Sequence[str], elsewhere: Sequence[str] = ()) -> bool:
    """Whether an earlier sentence of the row says ``text`` again, or states its fact: the same
    sentence, or the same count of the same unit, or the same amount of 10 or more; the sentences
    ``elsewhere`` (of another :func:`_subject`) only by being the same sentence. Groups
    (:data:`models.texts.CUSTOMER_REASON_GROUPS`) keep each fact's features together; across groups
    a new customer's one purchase day is "in the last 365 days" and "since the first purchase" at
    once, which read as one fact pulling both ways (775 of the demo's 4,269 churn rows did)."""
    if any(_DIRECTION.sub("", other) == text for other in elsewhere):
        return True
    fact = _fact(text)
    for other in earlier:
        other = _DIRECTION.sub("", other)
        if other == text:
            return True
        said = _fact(other) if fact is not None else None
        if (
            said is not None
            and said[0] == fact[0]
            and (said[1] == fact[1] or fact[0] >= 10 and None in (said[1], fact[1]))
        ):
            return True
    return False


# What a sentence tells of (_subject): None for the purchases (or the lead), else an events table's events.
Subject = tuple[str, str, str] | None


@functools.lru_cache(maxsize=4096)
def _subject(feature: str | None) -> Subject:
    """What a feature's sentence tells of, where that is not the purchases (or the lead): the events of
    one type, of one channel or of every kind, of one events table (:func:`features.touchpoints.touchpoint_column`).
    Facts of unrelated subjects (_related) are never one: "Last login 20 days ago" beside "No purchase for 20 days", or
    "12 login events" beside "12 support ticket events"; nor does a login date the last purchase."""
    column = touchpoint_column(feature) if feature else None
    return None if column is None else (column.prefix, column.kind, column.value)


def _related(subject: Subject, other: Subject) -> bool:
    """Whether a fact of ``subject`` may be one of ``other``: the same subject, or every event of an
    events table and one type or channel of it ("Last interaction 2 days ago", "Last webinar view 2
    days ago": one event; "14 interactions so far", "14 login events so far": the same 14)."""
    if subject == other:
        return True
    return subject is not None and other is not None and subject[0] == other[0] and "" in (subject[1], other[1])


def _none_again(text: str, subject: Subject, earlier: Sequence[tuple[str, Subject]]) -> bool:
    """Whether an earlier sentence already said there were none of the events ``text`` says there
    were none of: of one type, "No login events so far" beside "No login events in the last 30 days"
    (either first: in a lead's reasons they pulled both ways, one fact); every event's "No interactions
    so far" before any type's or channel's none. A zero states no fact of its own (_fact)."""
    if subject is None or not text.startswith("No "):
        return False
    every = (subject[0], "", "")
    for other, of in earlier:
        other = _DIRECTION.sub("", other)
        if not other.startswith("No "):
            continue
        if of == subject and (other.endswith(" so far") or text.endswith(" so far")):
            return True
        if of == every and other.endswith(" so far"):
            return True
    return False


# The clause several sentences end on to date the counts they give (", the latest 235 days ago").
_LATEST = re.compile(r", the latest ((\d[\d,]*) days? ago|today)$")


# A sentence that dates the last purchase itself.
_DATES_LAST = re.compile(r"^(?:No purchase for (\d[\d,]*) days?\b|Last purchase (\d[\d,]*) days? ago)")


def _said_already(clause: re.Match[str], earlier: Sequence[str]) -> bool:
    """Whether an earlier sentence of the row already dates the latest purchase as ``clause`` does:
    "... the latest 235 days ago", "Last purchase 235 days ago", "No purchase for 235 days"."""
    when, days = clause.group(1), clause.group(2)
    said = (when,) if days is None else (when, f"No purchase for {days} day")  # "today" has no count
    # Not "11 days ago" inside "211 days ago".
    pattern = re.compile("|".join(rf"(?<![\d,.]){re.escape(phrase)}" for phrase in said))
    return any(pattern.search(text) for text in earlier)


def dated_values(as_of: Any, horizon_days: int | None) -> dict[str, str]:
    """The :data:`DATE_FIELDS` of a scoring date: ``coming_months``, the calendar months the
    ``horizon_days`` days after ``as_of`` touch ("December-March"), as the feature
    ``horizon_month_share`` counts them; none without a date or when those days cover every month."""
    if as_of is None or not horizon_days:
        return {}
    months = _coming_months(pd.Timestamp(as_of), horizon_days)
    return {"coming_months": months} if months else {}


@functools.lru_cache(maxsize=64)
def _coming_months(as_of: pd.Timestamp, horizon_days: int) -> str | None:
    return horizon_span(as_of, horizon_days)  # the API asks on every request, for one date or a few


def humanize(feature: str) -> str:
    """A feature name as words: ``orders_90d`` -> ``Orders 90d``."""
    words = [_WORDS.get(w, w) for w in feature.replace("__", "_").split("_") if w]
    text = " ".join(words) or feature
    return text[:1].upper() + text[1:]


def format_value(value: Any) -> str:
    """A feature value for a sentence: whole numbers without decimals, others to two decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return f"{value:,.0f}" if value.is_integer() or abs(value) >= 100 else f"{value:,.2f}"
    return str(value)


def _unseen_sentence(feature: str, value: str) -> str:
    """The reason text of a category value no training row had: the booster scored it as missing."""
    return f"{humanize(feature)} {value!r}: new to the model, scored as missing"


def _opposite(direction: str) -> str:
    """``"raises churn risk"`` -> ``"lowers churn risk"``; any other wording -> ``"against: ..."``."""
    head, _, rest = direction.partition(" ")
    return f"lowers {rest}" if head == "raises" and rest else f"against: {direction}"


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _with_touchpoints(groups: Mapping[str, Sequence[str]], feature_names: Sequence[str]) -> dict[str, Sequence[str]]:
    """``groups`` and the touchpoint groups of ``feature_names`` (:func:`models.texts.touchpoint_groups`)
    whose members no group of ``groups`` holds."""
    taken = {feature for members in groups.values() for feature in members}
    free = [feature for feature in feature_names if feature not in taken]
    return {**touchpoint_groups(free), **groups}


def _present_groups(
    groups: Mapping[str, Sequence[str]], feature_names: Sequence[str], context: set[str]
) -> dict[str, list[str]]:
    """The groups of :class:`ReasonWriter` as the model has them: members in column order, without
    context features or features the model lacks; groups of fewer than two such members dropped."""
    owner: dict[str, str] = {}
    for name, members in groups.items():
        for feature in members:
            if owner.setdefault(feature, name) != name:
                raise ValueError(f"reason groups: feature '{feature}' is in both '{owner[feature]}' and '{name}'")
    present = {}
    for name, members in groups.items():
        wanted = set(members) - context
        kept = [f for f in feature_names if f in wanted]
        if len(kept) > 1:
            present[name] = kept
    return present


class ReasonWriter:
    """Turns SHAP rows into reason dicts; plain data, so it pickles with the scorer.

    Parameters
    ----------
    feature_names
        Column order of the matrix the SHAP values belong to.
    templates
        Per feature, ``str.format`` templates tried in order; fields name feature columns. A
        touchpoint feature's (named after the data's event types and channels) are followed by
        those of :func:`models.texts.touchpoint_templates`.
    direction
        What a positive contribution means (``"raises churn risk"``); appended to each sentence.
    counter_direction
        What a negative contribution means (``"lowers churn risk"``), appended to each
        counter-reason; by default ``direction`` with its first word "raises" turned into "lowers".
    categories
        Category lists of categorical features, to write a label instead of a code.
    context
        Features never given as reasons (see the module docstring); their contributions stay in
        the score.
    codes
        Per feature, sentences for values that are codes rather than quantities, used instead of its
        templates (``{"pdays": {999: "Not contacted in a previous campaign"}}``, not "999 days").
    groups
        Group name -> features that state one fact (see the module docstring); each feature in one
        group at most. Members the model does not have, and context features, are left out; a
        group left with one member is that feature alone.
    activity
        The sign of a contribution that means a more active customer: -1 for churn (lowers the
        risk), +1 for next purchase, 0 for none (leads; writers pickled before it existed).
    """

    def __init__(
        self,
        feature_names: Sequence[str],
        templates: Mapping[str, Sequence[str]],
        direction: str,
        categories: Mapping[str, Sequence[Any]] | None = None,
        context: Sequence[str] = (),
        counter_direction: str | None = None,
        codes: Mapping[str, Mapping[Any, str]] | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
        activity: int = 0,
    ) -> None:
        self.feature_names = list(feature_names)
        self.activity = int(np.sign(activity))
        self.codes = {k: dict(v) for k, v in (codes or {}).items()}
        unknown = [c for c in context if c not in self.feature_names]
        if unknown:
            raise ValueError(f"context feature '{unknown[0]}' is not a model feature")
        context = set(context)
        self.context = [c for c in self.feature_names if c in context]
        self.groups = _present_groups(_with_touchpoints(groups or {}, self.feature_names), self.feature_names, context)
        self.direction = direction
        self.counter_direction = counter_direction or _opposite(direction)
        self.categories = {k: list(v) for k, v in (categories or {}).items()}
        self.templates: dict[str, list[tuple[str, list[str]]]] = {}
        self._add_templates(templates.items())

    def _add_templates(self, templates: Iterable[tuple[str, Sequence[str]]]) -> None:
        """Adds ``templates`` to :attr:`templates`, each feature's after those it has, and then those
        of the touchpoint features (:func:`models.texts.touchpoint_templates`) they lack."""
        index = {name: i for i, name in enumerate(self.feature_names)}
        touchpoints = ((f, touchpoint_templates(f)) for f in self.feature_names)
        for feature, options in chain(templates, touchpoints):
            known = self.templates.get(feature, [])
            usable = []
            for template in options:
                fields = [f for _, f, _, _ in string.Formatter().parse(template) if f]
                # Templates whose fields are not all model features can never be filled; dropped once here.
                if all(f in index or f in DATE_FIELDS for f in fields) and (template, fields) not in known:
                    usable.append((template, fields))
            if usable:
                self.templates[feature] = known + usable

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Attributes added after writers were first pickled into registered models, as a writer
        # pickled before each of them means: no coded values, no context features, the opposite
        # direction for counter-reasons, no groups. Filled once here, so no method tests for them.
        self.__dict__.update(
            {"codes": {}, "context": [], "counter_direction": None, "groups": {}, "activity": 0, **state}
        )
        # A writer pickled before the touchpoint templates existed speaks its event features' names, and
        # gives each of a type's counts as a reason of its own.
        self._add_templates(())
        grouped = _with_touchpoints(self.groups, self.feature_names)
        self.groups = _present_groups(grouped, self.feature_names, set(self.context))

    def __getstate__(self) -> dict[str, Any]:
        return {name: value for name, value in self.__dict__.items() if name != "_units"}

    def units(self) -> list[tuple[str | None, list[int]]]:
        """What can be one reason, in column order: ``(name, columns)`` of each group (its members'
        columns) and ``(None, [column])`` of every feature in no group. Worked out once per writer
        (a writer's features and groups do not change once built): the API explains every request."""
        if "_units" not in self.__dict__:
            first = {self.feature_names.index(features[0]): name for name, features in self.groups.items()}
            grouped = {f for features in self.groups.values() for f in features}
            self._units = [
                (first[j], [self.feature_names.index(f) for f in self.groups[first[j]]]) if j in first else (None, [j])
                for j, feature in enumerate(self.feature_names)
                if j in first or feature not in grouped
            ]
        return self._units

    def unit_sums(self, contributions: np.ndarray) -> np.ndarray:
        """SHAP values per unit of :meth:`units`: a group's members summed per row, which TreeSHAP's
        additivity makes the group's contribution; ``contributions`` itself when there is no group."""
        if not self.groups:
            return contributions
        units = self.units()
        summed = contributions[:, [columns[0] for _, columns in units]]  # a copy: a feature in no group is its own unit
        for u, (group, columns) in enumerate(units):
            if group:
                summed[:, u] = contributions[:, columns].sum(axis=1)
        return summed

    def counter_label(self) -> str:
        """What a counter-reason says (``counter_direction``)."""
        return self.counter_direction or _opposite(self.direction)

    def value(self, X: np.ndarray, row: int, feature: str, rows: Sequence[Mapping[str, Any]] | None = None) -> Any:
        """The value of ``feature`` for one row: from ``rows`` when given, else decoded from ``X``."""
        if rows is not None and feature in rows[row]:
            value = rows[row][feature]
            if isinstance(value, (np.floating, np.integer)):
                value = value.item()
            return None if _is_missing(value) else value
        value = float(X[row, self.feature_names.index(feature)])
        if math.isnan(value):
            return None
        cats = self.categories.get(feature)
        if cats is not None:
            code = int(value)
            return cats[code] if 0 <= code < len(cats) else None
        return value

    def sentence(self, feature: str, values: Mapping[str, Any], *, active: bool = False) -> str:
        """The sentence for one feature given the values its templates need. ``active``: the feature
        pushes the way of a more active customer (:attr:`activity`), where a decayed count never
        reads "No purchase in the last 90 days": the older purchases it weighs are what push so."""
        coded = self.codes.get(feature)
        if coded and values.get(feature) in coded:
            return coded[values[feature]]
        templates = self.templates.get(feature, ())
        for n, (template, fields) in enumerate(templates, start=1):
            if any(_is_missing(values.get(f)) for f in fields):
                continue
            try:
                filled = {f: values[f] for f in fields}
                if "%}" in template:  # a share: whole percents never round a part to 0% or 100%
                    filled = {f: _Share(v) if type(v) is float else v for f, v in filled.items()}
                text = tidy(template.format(**filled))
            except (ValueError, TypeError):  # a numeric format applied to a category label
                continue
            if active and n < len(templates) and feature.startswith(_WEIGHTED) and text.startswith(_NONE_IN_WINDOW):
                continue  # a weighted count of older purchases is not "none in the last 90 days": a longer window
            return text
        return f"{humanize(feature)}: {format_value(values.get(feature))}"

    def explain(
        self,
        contributions: np.ndarray,
        X: np.ndarray,
        *,
        k: int,
        rows: Sequence[Mapping[str, Any]] | None = None,
        counter: bool = False,
        unseen: Mapping[int, Mapping[str, str]] | None = None,
        dated: Mapping[str, Any] | None = None,
        said: Sequence[Sequence[Mapping[str, Any]]] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Top-k reasons per row (with ``counter``, top-k counter-reasons).

        Parameters
        ----------
        contributions
            SHAP values, shape ``(n, n_features)`` (the bias column already removed).
        X
            The matrix that was scored, same column order.
        k
            Maximum reasons per row; only features with a positive contribution qualify (with
            ``counter``, a negative one), and no context feature.
        rows
            Optional original feature values per row (used for the sentences when given).
        counter
            The features that lower the score instead, largest pull first.
        unseen
            Row -> ``{feature: value}`` of the category values no training row had, which ``X``
            holds as missing (``Scorer.unseen_rows``): such a reason names the value it was
            given, "Default 'yes': new to the model, scored as missing", not "Default: missing".
        dated
            The :data:`DATE_FIELDS` of the scoring date (:func:`dated_values`), for the templates
            that name them.
        said
            Per row, the reasons already given beside these (the counter-reasons are written after
            the reasons): a sentence's closing ", the latest N days ago" is left out when one of
            them, or an earlier sentence here, already dates the latest purchase; and a sentence
            here that dates it in full ("No purchase for N days") cuts that clause from them (their
            dicts are changed in place), as from an earlier sentence here.

        Returns
        -------
        Per row, a list of ``{"text", "feature", "value", "impact"}`` dicts, largest ``|impact|``
        first; ``impact`` keeps its sign (negative for counter-reasons). A group's reason also has
        ``"group"``, its name; its ``impact`` is the group's sum, its ``feature``, ``value`` and
        ``text`` those of the member shown.
        """
        n = contributions.shape[0]
        if n == 0:
            return []
        sign = -1.0 if counter else 1.0
        direction = self.counter_label() if counter else self.direction
        context = self.context
        if counter or context:
            contributions = sign * np.asarray(contributions, dtype=np.float64)
        if context:  # never in a group, so their -inf stays in their own unit
            contributions[:, [self.feature_names.index(c) for c in context]] = -np.inf
        units = self.units()
        summed = self.unit_sums(contributions)
        m = summed.shape[1]
        k = max(0, min(k, m))
        if k == 0:
            return [[] for _ in range(n)]
        # argpartition picks the largest per row without sorting all units: k, and a few more to take
        # the place of one that states a fact the row has already given.
        fetch = min(k + SPARE_REASONS, m)
        top = np.argpartition(-summed, fetch - 1, axis=1)[:, :fetch] if fetch < m else np.tile(np.arange(m), (n, 1))
        top_values = np.take_along_axis(summed, top, axis=1)
        order = np.argsort(-top_values, axis=1)
        top = np.take_along_axis(top, order, axis=1)
        top_values = np.take_along_axis(top_values, order, axis=1)
        # A group speaks in the sentence of the member that pushes hardest its way: worked out for all
        # rows at once, for the groups some row gives as a reason. (Python lists: the loop reads items.)
        speaker: dict[int, list[int]] = {}
        needs: dict[str, set[str]] = {}
        out: list[list[dict[str, Any]]] = []
        for i, (row_top, row_values) in enumerate(zip(top.tolist(), top_values.tolist(), strict=True)):
            reasons: list[dict[str, Any]] = []
            before = said[i] if said is not None else ()
            for u, impact in zip(row_top, row_values, strict=True):
                if not round(impact, 6) > 0 or len(reasons) == k:  # a pull that rounds to 0 is no reason
                    break
                group, columns = units[u]
                if group and u not in speaker:
                    speaker[u] = np.asarray(columns)[np.argmax(contributions[:, columns], axis=1)].tolist()
                feature = self.feature_names[speaker[u][i] if group else columns[0]]
                if feature not in needs:
                    needs[feature] = {feature} | {f for _, fields in self.templates.get(feature, ()) for f in fields}
                needed = needs[feature]
                values = {f: self.value(X, i, f, rows) for f in needed if f not in DATE_FIELDS}
                if dated:
                    values.update({f: dated[f] for f in needed if f in dated})
                new = unseen.get(i, {}).get(feature) if unseen else None
                if new is not None:
                    values[feature] = new
                if new is not None:
                    text = _unseen_sentence(feature, new)
                else:
                    text = self.sentence(feature, values, active=sign * self.activity > 0)
                # A fact is compared with those of the row's sentences of its subject (_subject, _related):
                # the purchases', or one kind of event's.
                subject = _subject(feature)
                earlier = [(r["text"], _subject(r.get("feature"))) for r in (*before, *reasons)]
                same = [other for other, of in earlier if _related(subject, of)]
                elsewhere = [other for other, of in earlier if not _related(subject, of)]
                if _states_again(text, same, elsewhere) or _none_again(text, subject, earlier):
                    continue  # the next reason takes its place
                clause = _LATEST.search(text)
                if clause and _said_already(clause, same):
                    # Two of a row's reasons would date the same last purchase; the first one says it.
                    text = text[: clause.start()]
                dates = _DATES_LAST.match(text) if subject is None else None  # an event type may be "purchase"
                if dates:
                    # This one dates the last purchase in full: an earlier reason's closing clause of the
                    # same date goes ("..., the latest 15 days ago" beside "No purchase for 15 days").
                    # The reasons given beside these too: a counter-reason "No purchase for 18 days" cuts
                    # the clause of a reason "Bought on 2 days in the last 365 days, the latest 18 days ago".
                    days = dates.group(1) or dates.group(2)
                    for r in (*reasons, *before):
                        cut = _LATEST.search(_DIRECTION.sub("", r["text"]))  # the direction is a suffix
                        if cut and cut.group(2) == days:
                            r["text"] = r["text"][: cut.start()] + r["text"][cut.end() :]
                reason = {
                    "text": f"{text} ({direction})",
                    "feature": feature,
                    "value": _stable(values[feature]),
                    "impact": round(sign * impact, 6),
                }
                if group:
                    reason["group"] = group
                reasons.append(reason)
            out.append(reasons)
        return out

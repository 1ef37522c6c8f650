"""Request and response bodies of the scoring API; their annotations become the served OpenAPI schema.

Bounds live here so that a malformed request is refused with a 400 naming the field before any
scoring code runs. The per-call maximum batch size is configuration (``serving.max_batch``), so it
is checked by the service, not here.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

__all__ = [
    "AtRiskItem",
    "Moment",
    "AtRiskResponse",
    "CounterK",
    "CustomerHistory",
    "ErrorItem",
    "Id",
    "LeadEvent",
    "LeadRecord",
    "ModelInfo",
    "ModelsResponse",
    "Purchase",
    "Reason",
    "ScoreItem",
    "ScoreResponse",
    "TopItem",
    "TopK",
    "TopResponse",
    "Touchpoint",
    "not_bool",
]

MAX_K = 10


def id_text(value: object) -> object:
    """A whole number posted as an id is its digits (``12346`` or ``12346.0``, as a spreadsheet's JSON
    writes it -> ``"12346"``), as the tables hold ids; anything else but text (``12346.5``, a bool) is
    left for the ``str`` check to refuse."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


# Dates the feature code can compute with: pandas' nanosecond timestamps end in April 2262, and an
# as_of needs its horizon after it. A number is refused rather than read as Unix seconds.
EARLIEST, LATEST = dt.datetime(1900, 1, 1), dt.datetime(2199, 12, 31, 23, 59, 59)


def _iso_text(value: object) -> object:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(
            f"{value!r} is a number: post the date as ISO 8601 text, e.g. '2011-12-09' or '2011-12-09T14:30:00Z'"
        )
    if isinstance(value, str):
        try:
            # Handed on parsed: pydantic reads a string of digits ("20110601", ISO 8601's basic form) as
            # Unix seconds, 1970-08-21, where this reads it as the date it writes.
            return dt.datetime.fromisoformat(value.strip())
        except ValueError:  # pydantic's own message ("invalid character in year") names no format
            raise ValueError(
                f"{value!r} is not an ISO 8601 date: post '2011-12-09' or '2011-12-09T14:30:00Z' (07/12/2011 reads "
                "as the 7th of December or the 12th of July)"
            ) from None
    return value


def not_bool(value: object) -> object:
    """Refuse ``true``/``false`` where a number is asked for: pydantic reads them as 1 and 0."""
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a number")
    return value


def _in_range(value: dt.date) -> dt.date:
    moment = value if isinstance(value, dt.datetime) else dt.datetime.combine(value, dt.time())
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    if not EARLIEST <= moment <= LATEST:
        raise ValueError(
            f"{value.isoformat()} is outside the dates scores are computed for ({EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d})"
        )
    return value


_MOMENT_SCHEMA = {
    "type": "string",
    "description": "ISO 8601 date ('2011-12-09', a day's midnight) or date-time ('2011-12-09T14:30:00Z'); "
    "without a UTC offset it is UTC",
    "example": "2011-12-09",
}
Moment = Annotated[
    dt.datetime,
    BeforeValidator(_iso_text),
    AfterValidator(_in_range),
    # The schema says what is accepted: a date alone too, which "format: date-time" refused on paper.
    WithJsonSchema(_MOMENT_SCHEMA),
]


# What is accepted (text, or a whole number read as its digits), where the type alone said text only.
_TEXT_OR_WHOLE = {"anyOf": [{"type": "string", "minLength": 1, "maxLength": 128}, {"type": "integer"}]}
Id = Annotated[
    str,
    BeforeValidator(id_text),
    Field(min_length=1, max_length=128),
    WithJsonSchema({**_TEXT_OR_WHOLE, "description": "customer_id or lead_id: text, or a whole number (its digits)"}),
]
TopK = Annotated[
    int | None,
    BeforeValidator(not_bool),
    Field(
        ge=0,
        le=MAX_K,
        description="number of reasons per item; default 3 for roles entitled to reasons (marketer, admin), "
        "0 for scorer. A scorer asking for k > 0 gets 403.",
    ),
]
CounterK = Annotated[
    int,
    BeforeValidator(not_bool),
    Field(
        ge=0,
        le=MAX_K,
        description="number of counter-reasons per item: the features that lower the score most "
        "(what keeps a churn risk, a purchase probability or a lead's chance from being higher); default 0. "
        "Roles as for k.",
    ),
]
Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e12, le=1e12)]
# A whole number stays one: a numeric code posted for a text attribute is "42", not "42.0".
Whole = Annotated[int, Field(ge=-(10**12), le=10**12)]
Attribute = str | Whole | Finite | None
# Attribute names become table columns: plain identifiers that are not canonical or feature-table columns.
AttributeName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
Attributes = Annotated[
    dict[AttributeName, Attribute],
    Field(max_length=200, description="static attributes by name, e.g. {'country': 'United Kingdom'}"),
]
Text = Annotated[str, Field(min_length=1, max_length=128)]
# An order or product code: text, or a whole number as an export writes it (489434 -> "489434"), as ids are.
Code = Annotated[
    str,
    BeforeValidator(id_text),
    Field(min_length=1, max_length=128),
    WithJsonSchema({**_TEXT_OR_WHOLE, "description": "text, or a whole number (its digits)"}),
]
# The most purchases (or events) one record may post; every call is also held to serving.max_posted_rows.
MAX_RECORD_ROWS = 100_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reason(BaseModel):
    """One reason behind a score: a readable sentence and the SHAP impact behind it."""

    text: str
    feature: str
    value: float | str | None
    impact: float = Field(description="SHAP contribution on the model's raw (log-odds) scale")
    probability_change: float | None = Field(
        None,
        description="the probability less the probability without this reason's impact, calibrated as the score "
        "is: what the reason adds (a counter-reason: takes away), e.g. 0.04 for 4 points. The lists (/at_risk, "
        "/top/...) leave out reasons that change the probability by less than 0.01",
    )
    group: str | None = Field(
        None,
        description="set when the reason stands for a group of features that state one fact: the group's"
        " name; impact is then the members' summed SHAP value, and feature, value and text those of the"
        " member that pushes hardest the same way",
    )


class ScoreItem(BaseModel):
    """The score of one customer or lead."""

    id: str
    probability: float
    tier: str | None = Field(None, description="risk tier (churn, next purchase)")
    grade: str | None = Field(None, description="grade A-D (lead)")
    expected_spend: float | None = None
    expected_value: float | None = None
    value_at_risk: float | None = None
    reasons: list[Reason] | None = Field(None, description="present when k > 0")
    counter_reasons: list[Reason] | None = Field(None, description="present when counter_k > 0; impacts are negative")
    warnings: list[str] | None = Field(
        None,
        description="present when the score rests on an input the model could not read as given: a category "
        "value no training row had (a typo, a new segment), which the model scored as missing, or posted events "
        "a model trained without an events table does not use",
    )
    model_name: str
    model_version: str | None


class ErrorItem(BaseModel):
    """An item of a batch that could not be scored; the other items still are."""

    id: str
    error: str


class ScoreResponse(BaseModel):
    task: Literal["churn", "next_purchase", "lead"]
    as_of: str = Field(
        description="cut-off of the features the scores use, in UTC without a zone: the day alone at midnight "
        "('2011-09-10'), else with its time of day ('2011-12-09 12:50:00'); a posted as_of with an offset is "
        "converted to UTC"
    )
    items: list[ScoreItem | ErrorItem]


class Purchase(_Body):
    """One transaction line; a negative amount is a refund or return."""

    timestamp: Moment
    amount: Finite
    order_id: Code | None = None
    product_id: Code | None = None
    quantity: Finite | None = None
    category: Text | None = None
    channel: Text | None = None


class Touchpoint(_Body):
    """One interaction: email, web visit, call, ticket, complaint..."""

    timestamp: Moment
    event_type: Text
    channel: Text | None = None
    value: Finite | None = None


class CustomerHistory(_Body):
    customer_id: Id
    attributes: Attributes = Field(default_factory=dict)
    purchases: Annotated[list[Purchase], Field(max_length=MAX_RECORD_ROWS)]
    events: Annotated[list[Touchpoint], Field(max_length=MAX_RECORD_ROWS)] = Field(default_factory=list)


class LeadEvent(_Body):
    timestamp: Moment
    event_type: Text
    channel: Text | None = None


class LeadRecord(_Body):
    lead_id: Id
    created_at: Moment
    attributes: Attributes = Field(default_factory=dict)
    events: Annotated[list[LeadEvent], Field(max_length=MAX_RECORD_ROWS)] = Field(default_factory=list)


class DriftInfo(BaseModel):
    max_psi: float = Field(description="largest population stability index of a feature against the training rows")
    alert: list[str] = Field(description="features with PSI >= 0.25, worst first")
    unseen: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="category values no training row had, scored as missing: {feature: {value: rows}}, "
        "the commonest 10 per feature",
    )
    warning: str | None = Field(
        description="sentences naming the shifted features, the numeric features missing where no training "
        "row was (the model reads those as 0) and the unseen category values; null when none applies"
    )


# What the lists' columns mean, said once for the items of /at_risk and /top/... (the README's glossary says the
# same): a marketer who pulled a list into a spreadsheet read `probability`, `expected_spend` and `value_at_risk`
# with empty descriptions, and expected_spend means another thing in each list.
_HORIZON = "the model's horizon after as_of (models.<task>.horizon_days of its config: 90 days in the bundled one)"
_CURRENCY = "in the source data's currency, as the transactions' amounts are"
_FULL = "full precision (the CSV truncates it to {} decimals)"
_REASONS = (
    "what raises the score most, largest first (up to k; null when k is 0), each moving the probability by 0.01 or more"
)
_COUNTER_REASONS = "what lowers the score most (up to counter_k; null when counter_k is 0), by the same rule"
_ATTRIBUTES = (
    "the row's text attributes (country; a lead's job, contact...) and the numeric ones `where` filters on or `per` "
    "groups by (e.g. frequency_365d: orders with a purchase in the last 365 days)"
)


class AtRiskItem(BaseModel):
    """One row of the at-risk list: a customer by value at risk."""

    customer_id: str = Field(description="the customer's id, as the data spells it")
    probability: float = Field(
        description=f"P(churn): the calibrated probability that the customer makes no purchase (or cancels) within "
        f"{_HORIZON}; {_FULL.format(4)}"
    )
    tier: str | None = Field(
        description="the risk tier of probability, by the thresholds of models.churn.tiers (by default high from "
        "0.70, medium from 0.40, low below)"
    )
    expected_spend: float | None = Field(
        description="what the customer would spend over the horizon if they stayed: their net spend of the last 365 "
        f"days scaled to the horizon, the spend the churn puts at risk (not a forecast); {_CURRENCY}; "
        f"{_FULL.format(2)}. Not the next-purchase list's expected_spend, which is a spend given a purchase"
    )
    value_at_risk: float = Field(
        description=f"probability x expected_spend: the spend over the horizon the churn risk puts at risk, what the "
        f"list ranks by (and min_value bounds); {_CURRENCY}; {_FULL.format(2)}"
    )
    reasons: list[Reason] | None = Field(description=f"{_REASONS}: here, what raises the churn risk")
    counter_reasons: list[Reason] | None = Field(
        None, description=f"{_COUNTER_REASONS}: here, what lowers the churn risk (why a large customer's risk is low)"
    )
    attributes: dict[str, str | float | None] = Field(description=_ATTRIBUTES)
    probability_then: float | None = Field(
        None, description="with `since`: P(churn) at that date (null: not in the population then)"
    )
    tier_then: str | None = Field(None, description="with `since`: the tier at that date")


class AtRiskResponse(BaseModel):
    task: Literal["churn"] = "churn"
    ranked_by: Literal["value_at_risk"] = Field(
        "value_at_risk", description="what the list is ranked by, highest first: P(churn) x expected spend"
    )
    as_of: str
    model_name: str
    model_version: str
    n_matched: int = Field(description="customers matching the filters, before the top-N cut")
    n_excluded: int = Field(default=0, description="rows of the snapshot left off for `exclude_ids` (0: none given)")
    items: list[AtRiskItem]
    drift: DriftInfo = Field(
        description="how far the churn snapshot the list ranks has moved from the model's training rows "
        "(the figure of /models and of `crmscore at-risk`)"
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="a sentence for each `where` value no customer of the snapshot has (a typo, or a value absent "
        "at this date), with the closest values there are; and one when ids of `exclude_ids` are not in it or "
        "matched only as spelt otherwise, naming them",
    )
    since_note: str = Field(
        default="",
        description="with `since`: how many listed rows moved up a tier since then, how many down, and how many were not in the "
        "population then (empty without `since`)",
    )


class ListFilterInfo(BaseModel):
    tiers: list[str] = Field(description="the values `tiers` takes (grades, for leads), highest first")
    attributes: dict[str, list[str]] = Field(
        description="text attributes `where` and `per` take, each with its values in the snapshot, commonest first "
        "(at most 50)"
    )
    numbers: list[str] = Field(description='numeric columns `where` compares with operators ({">=": 3})')


class PostedFilterInfo(BaseModel):
    applied: dict[str, str] = Field(description="'tables.TABLE: filter name' -> the filter as SQL on posted fields")
    not_applied: dict[str, str] = Field(
        description="'tables.TABLE: filter name' -> why posted lines cannot be held to it"
    )


class ModelInfo(BaseModel):
    task: str
    model_name: str
    version: str | None
    alias: str | None
    run_id: str | None
    trained_at: str | None
    test_cutoff: str | None
    metrics: dict[str, float | None]
    warnings: list[str] = Field(
        default_factory=list,
        description="what the training run could not do as the model's spec asks (e.g. no seasonal prior shift, "
        "for lack of training cut-offs a year back), each with its fix",
    )
    promotion: str | None = Field(
        None, description="the promotion gate's decision when this version was trained (why it is champion, or was not)"
    )
    manual_promotion: str | None = Field(
        None, description="when and from which version it was made champion by hand (crmscore promote), and why"
    )
    code: str | None = Field(
        None,
        description="the crmscore code that trained it: the package version and git commit, and whether that "
        "commit's code had uncommitted changes (None for versions trained before this was recorded)",
    )
    config_name: str | None = Field(None, description="name of the configuration the model was trained with")
    loaded_at: str | None = Field(
        None,
        description="when this champion and its snapshot were loaded (UTC); a reload keeps a model whose champion "
        "version and snapshot file are unchanged, so its loaded_at stays",
    )
    snapshot_as_of: str | None
    snapshot_rows: int
    snapshot_rows_explained: int = Field(
        0,
        description="rows of the snapshot whose SHAP values are computed: the service computes them after a load, in "
        "the background, and a request with reasons for a row not reached yet computes its own (about 1 ms a row)",
    )
    snapshot_drift: DriftInfo | None = Field(
        None, description="how far the snapshot's features have moved from the model's training rows"
    )
    list_filters: ListFilterInfo | None = Field(
        None, description="what the lists (/at_risk, /top/...) of this snapshot filter on: for a tool building filters"
    )
    posted_filters: PostedFilterInfo | None = Field(
        None,
        description="the training config's row filters as /score/{task}/history holds posted lines to them: those "
        "rewritten onto posted fields (name: the SQL on them; a posted line failing one is dropped and named in the "
        "item's warnings, as the stored data drops such rows) and those no posted field can express (name: why)",
    )
    snapshot_anchor: float | None = Field(
        None,
        description="log-odds shift that sets the snapshot's mean probability to the base rate of the model's latest "
        "training fold (fixed at training: a later rate moves it only once the model is retrained) "
        "(lead model; 0 for models without an anchor); applied to every score of the snapshot and to posted records",
    )


class MissingModel(BaseModel):
    task: str
    error: str


class ModelsResponse(BaseModel):
    loaded_at: str
    models: list[ModelInfo]
    missing: list[MissingModel]
    workers: int = Field(
        description="worker processes of the server that have loaded their models (serving.workers; right after a "
        "start some may still be loading); /reload answers once every one has reloaded, and gives how many did"
    )


class TopItem(BaseModel):
    """One row of a campaign (next purchase) or call (lead) list."""

    id: str = Field(description="customer_id (next purchase) or lead_id (lead), as the data spells it")
    probability: float = Field(
        description=f"next purchase: P(buy), the calibrated probability of a purchase within {_HORIZON}; lead: "
        "P(convert), that the lead converts within the horizon of its creation (models.lead.horizon_days: 30 days "
        f"in the bundled config); what the lead list ranks by; {_FULL.format(4)}"
    )
    tier: str | None = Field(
        None, description="next purchase: the tier of probability, by the thresholds of models.next_purchase.tiers"
    )
    grade: str | None = Field(
        None,
        description="lead: the grade of probability, by models.lead.tiers (bundled: A from 0.50, B 0.25, C 0.10, D)",
    )
    expected_spend: float | None = Field(
        None,
        description="next purchase: the model's estimate of the customer's net spend over the horizon given that "
        f"they buy (not the at-risk list's expected_spend, a spend if they stay); {_CURRENCY}; {_FULL.format(2)}; "
        "null for leads",
    )
    expected_value: float | None = Field(
        None,
        description="next purchase: probability x expected_spend, the expected net spend over the horizon whether or "
        f"not they buy; what the list ranks by (and min_value bounds); {_CURRENCY}; {_FULL.format(2)}; null for leads",
    )
    reasons: list[Reason] | None = Field(description=f"{_REASONS}: here, what raises P(buy) or P(convert)")
    counter_reasons: list[Reason] | None = Field(None, description=f"{_COUNTER_REASONS}: here, what lowers it")
    attributes: dict[str, str | float | None] = Field(description=_ATTRIBUTES)
    probability_then: float | None = Field(None, description="with `since` (next purchase): P(buy) at that date")
    tier_then: str | None = Field(None, description="with `since` (next purchase): the tier at that date")


class TopResponse(BaseModel):
    task: Literal["next_purchase", "lead"]
    ranked_by: Literal["expected_value", "probability"] = Field(
        description="what the list is ranked by, highest first: expected value (next purchase), P(convert) (lead)"
    )
    as_of: str
    model_name: str
    model_version: str
    n_matched: int = Field(description="rows matching the filters, before the top-N cut")
    n_excluded: int = Field(default=0, description="rows of the snapshot left off for `exclude_ids` (0: none given)")
    items: list[TopItem]
    drift: DriftInfo = Field(description="how far the snapshot the list ranks has moved from the model's training rows")
    warnings: list[str] = Field(
        default_factory=list,
        description="a sentence for each `where` value no row of the snapshot has, with the closest values there "
        "are; and one when ids of `exclude_ids` are not in it or matched only as spelt otherwise, naming them",
    )
    since_note: str = Field(
        default="",
        description="with `since`: how many listed rows moved up a tier since then, how many down, and how many were not in the "
        "population then (empty without `since`)",
    )

"""Reason sentences for the customer features of ``features/`` (shared by churn and next purchase).

Fields in braces name feature columns; the sentence is written from the customer's values.
Templates are tried in order: the first whose fields are all present and not missing wins,
so a customer with a single purchase (no gap yet) still gets a sentence.
"""

from __future__ import annotations

from collections.abc import Sequence

from features.touchpoints import touchpoint_column

__all__ = [
    "CUSTOMER_REASON_GROUPS",
    "NO_PURCHASE",
    "RECENCY_FEATURES",
    "customer_templates",
    "touchpoint_groups",
    "touchpoint_templates",
]

# Time since the last purchase, raw or relative to the customer's cycle: churn risk may only
# rise with them, purchase likelihood only fall.
RECENCY_FEATURES = ("recency_days", "days_since_last", "recency_over_gap", "recency_over_max_gap")

_WINDOWS = (30, 90, 180, 365)

# Features that state one fact in several ways, each group one reason (models.reasons): how recently
# the customer bought, how often over the last year, over their whole history, what they spent lately,
# their rhythm, the trend, last year's season, this season's share and their refunds. Without them the
# demo's churn reasons set "Bought on 2 days in the last 90 days" (raises) against "No purchase for 2
# days, 0.1x the usual gap" (lowers) for 765 of 4,269 customers.
CUSTOMER_REASON_GROUPS: dict[str, tuple[str, ...]] = {
    "recency": (
        *RECENCY_FEATURES,
        "days_since_2nd_last",
        "days_since_3rd_last",
        "decayed_purchase_days_30d",
        "decayed_purchase_days_90d",
        "frequency_30d",
        "frequency_90d",
        "purchase_days_90d",
        "active_weeks_90d",
    ),
    "frequency": (
        "decayed_purchase_days_365d",
        "purchase_days_365d",
        "frequency_180d",
        "frequency_365d",
        "active_weeks_365d",
        "active_months_180d",
        "active_months_365d",
    ),
    "history": ("tenure_days", "purchase_days", "frequency_all", "active_months_all", "purchase_rate_30d"),
    "spend": ("monetary_30d", "monetary_90d", "monetary_180d", "monetary_365d"),
    "lifetime_spend": ("monetary_all", "spend_per_30d"),
    "rhythm": ("gap_mean", "gap_median", "gap_std", "gap_max", "gap_last", "gap_first", "gap_last_over_mean"),
    "trend": ("order_trend", "spend_trend", "order_trend_ratio"),
    "last_year": ("ly_orders", "ly_spend", "ly_orders_before"),
    "season": ("q4_share", "horizon_month_share"),
    "refunds": ("refund_count", "refund_share"),
    "range": ("distinct_products", "distinct_products_365d"),
}
# The denominators of the rates and shares below, so that a reader sees what they divide.
_SINCE_FIRST = "since the first purchase {tenure_days:.0f} days ago"
_OF_PURCHASE_DAYS = "of the {purchase_days:.0f} purchase days so far"


# The purchase-day counts of ever longer windows, for the decayed counts' sentences.
_DAYS_BOUGHT = (
    "Bought on {purchase_days_90d:.0f} days in the last 90 days",
    "Bought on {purchase_days_365d:.0f} days in the last 365 days",
    "Bought on {purchase_days:.0f} days " + _SINCE_FIRST,
)


def customer_templates(horizon_days: int) -> dict[str, tuple[str, ...]]:
    """The reason templates of the customer features for a model of horizon ``horizon_days``.

    The year-ago features (``features.seasonality``) cover the ``horizon_days`` days after (and
    before) the scoring date one year earlier; their sentences say so with the model's horizon
    (the window after is cut at the scoring date itself: at most 365 days).
    """
    templates = dict(_TEMPLATES)
    after, before = (
        f"the {days} days {side} this date last year"
        for days, side in ((min(horizon_days, 365), "after"), (horizon_days, "before"))
    )
    templates["ly_orders"] = (f"{{ly_orders:.0f}} orders in {after}",)
    templates["ly_spend"] = (f"Net spend of {{ly_spend:,.0f}} in {after}",)
    templates["ly_orders_before"] = (f"{{ly_orders_before:.0f}} orders in {before}",)
    return {feature: _with_fallbacks(feature, options) for feature, options in templates.items()}


_TEMPLATES: dict[str, tuple[str, ...]] = {
    "days_since_last": (
        "No purchase for {days_since_last:.0f} days; usually buys every {gap_mean:.0f} days",
        "No purchase for {days_since_last:.0f} days",
    ),
    "recency_days": (
        "No purchase for {recency_days:.0f} days; usually buys every {gap_mean:.0f} days",
        "Last purchase {recency_days:.0f} days ago",
    ),
    "recency_over_gap": (
        "No purchase for {days_since_last:.0f} days, {recency_over_gap:.1f}x the usual gap of {gap_mean:.0f} days",
        "{recency_over_gap:.1f}x the usual gap between purchases since the last one",
    ),
    "recency_over_max_gap": (
        "No purchase for {days_since_last:.0f} days; the longest gap so far was {gap_max:.0f} days",
    ),
    "gap_mean": ("Usually buys every {gap_mean:.0f} days",),
    # "Typical gap" beside "the usual gap of 36 days" (the mean) read as two answers to one question.
    "gap_median": ("Half the gaps between purchases are {gap_median:.0f} days or shorter",),
    "gap_std": ("Gaps between purchases vary by {gap_std:.0f} days",),
    "gap_max": ("Longest gap between purchases: {gap_max:.0f} days",),
    "gap_last": ("Last gap between purchases was {gap_last:.0f} days",),
    "purchase_days": ("Bought on {purchase_days:.0f} different days",),
    "tenure_days": ("First purchase {tenure_days:.0f} days ago",),
    # The rates per 30 days of tenure, said as the counts they divide: "Buys on 10.0 days per month"
    # of a customer whose one purchase was two days ago reads as a habit; the counts do not.
    "purchase_rate_30d": (
        f"Bought on {{purchase_days:.0f}} days {_SINCE_FIRST}",
        "Buys on {purchase_rate_30d:.1f} days per month on average",
    ),
    "spend_per_30d": (
        f"Net spend of {{monetary_all:,.0f}} {_SINCE_FIRST}",
        "Net spend of {spend_per_30d:,.0f} per month on average",
    ),
    "active_months_365d": ("Bought in {active_months_365d:.0f} of the last 12 months",),
    "active_months_all": ("Bought in {active_months_all:.0f} different months in total",),
    "order_trend": ("Orders in the last 90 days changed by {order_trend:+.0f} against the 90 days before",),
    "spend_trend": ("Spend in the last 90 days changed by {spend_trend:+,.0f} against the 90 days before",),
    "order_trend_ratio": ("Orders in the last 90 days are {order_trend_ratio:.1f}x those of the 90 days before",),
    "frequency_all": ("{frequency_all:.0f} orders in total",),
    "monetary_all": ("Net spend of {monetary_all:,.0f} in total",),
    "avg_order_value": ("Average order value {avg_order_value:,.0f} after refunds",),
    "refund_count": ("{refund_count:.0f} orders with a refund or return",),
    "refund_share": ("Refunds and returns worth {refund_share:.0%} of the value bought",),
    "lines_per_order": ("{lines_per_order:.1f} different items per order on average",),
    "distinct_products": ("Bought {distinct_products:.0f} different products",),
    "distinct_products_365d": ("Bought {distinct_products_365d:.0f} different products in the last 365 days",),
    "quantity_per_order": ("{quantity_per_order:,.0f} units per order after returns",),
    "distinct_categories": ("Bought from {distinct_categories:.0f} categories",),
    "top_category_share": ("{top_category_share:.0%} of spend in one category",),
    # Shares of purchase days name how many days they are shares of: 100% of one day is no pattern.
    "horizon_month_share": (
        f"{{coming_months}} held {{horizon_month_share:.0%}} {_OF_PURCHASE_DAYS}",
        f"The coming months held {{horizon_month_share:.0%}} {_OF_PURCHASE_DAYS}",
        "{horizon_month_share:.0%} of past purchase days fall in the coming months",
    ),
    "weekend_share": ("{weekend_share:.0%} of purchase days at weekends",),
    "country": ("Based in {country}",),
    "days_since_2nd_last": ("Second-to-last purchase {days_since_2nd_last:.0f} days ago",),
    "days_since_3rd_last": ("Third-to-last purchase {days_since_3rd_last:.0f} days ago",),
    "gap_first": ("First gap between purchases was {gap_first:.0f} days",),
    "gap_last_over_mean": ("Last gap between purchases was {gap_last_over_mean:.1f}x the usual one",),
    "active_months_180d": ("Bought in {active_months_180d:.0f} of the last 6 months",),
    "active_weeks_90d": ("Bought in {active_weeks_90d:.0f} of the last 13 weeks",),
    "active_weeks_365d": ("Bought in {active_weeks_365d:.0f} of the last 52 weeks",),
    "purchase_days_90d": ("Bought on {purchase_days_90d:.0f} days in the last 90 days",),
    "purchase_days_365d": ("Bought on {purchase_days_365d:.0f} days in the last 365 days",),
    "q4_share": (
        f"October-December held {{q4_share:.0%}} {_OF_PURCHASE_DAYS}",
        "{q4_share:.0%} of past purchase days were in October-December",
    ),
    "avg_unit_price": ("Average unit price {avg_unit_price:,.2f}",),
    "lines_per_product": ("Bought each product {lines_per_product:.1f} times on average",),
    # The decayed counts weigh each purchase day by its age; the sentence names the counts and the
    # latest purchase they summarise, and the weighted count itself only when those are missing.
    # A decayed count still weighs purchases older than its window, so a window with none is not what
    # it measures: models.reasons skips such a count for the next, longer one ("Bought on 3 days in the
    # last 365 days, ..."), not "No purchase in the last 90 days" as what lowers the churn risk.
    **{
        f"decayed_purchase_days_{tau}d": (
            *(f"{count}, the latest {{days_since_last:.0f}} days ago" for count in counts),
            f"Recent buying activity of {{decayed_purchase_days_{tau}d:.2f}} "
            f"(purchase days, each counted less the older it is; {tau}-day decay)",
        )
        for tau, counts in (
            (30, ("{frequency_30d:.0f} orders in the last 30 days", *_DAYS_BOUGHT)),
            (90, _DAYS_BOUGHT),
            (365, _DAYS_BOUGHT[1:]),
        )
    },
    **{f"frequency_{w}d": (f"{{frequency_{w}d:.0f}} orders in the last {w} days",) for w in _WINDOWS},
    **{f"monetary_{w}d": (f"Net spend of {{monetary_{w}d:,.0f}} in the last {w} days",) for w in _WINDOWS},
}

# When a value is missing, the next template is tried. The gap features are missing below two
# purchase days (``gap_std`` and the third-to-last purchase below three), and every purchase
# feature is missing for a customer whose history holds only returns or refunds: their last
# templates say so instead of "Gap std: missing". A template naming ``purchase_days`` (a feature of
# every customer model, from features.cycle) is skipped for that customer too, having no purchase
# day, so the field-less sentence is reached only then.
NO_PURCHASE = "No purchase on record, only returns or refunds"
_NO_GAP = "Bought on {purchase_days:.0f} day so far: no gap between purchases yet"
_NO_RHYTHM = "Purchase days so far: {purchase_days:.0f}, too few to show a buying rhythm"
_GAP_FEATURES = (
    "gap_mean",
    "gap_median",
    "gap_max",
    "gap_last",
    "gap_first",
    "gap_last_over_mean",
    "days_since_2nd_last",
    "recency_over_gap",
    "recency_over_max_gap",
)
_NOT_FROM_PURCHASES = ("country",)


def _with_fallbacks(feature: str, options: tuple[str, ...]) -> tuple[str, ...]:
    if feature in _GAP_FEATURES:
        options += (_NO_GAP,)
    if feature in ("gap_std", "days_since_3rd_last"):
        options += (_NO_RHYTHM,)
    if feature not in _NOT_FROM_PURCHASES:
        options += (NO_PURCHASE,)
    return options


def touchpoint_templates(feature: str) -> tuple[str, ...]:
    """The reason templates of a touchpoint feature (:func:`features.touchpoints.touchpoint_features`),
    none for another feature: "2 login events in the last 30 days", "Last login 20 days ago".

    Those features are named after the event types and channels of the data, of customers'
    events and of leads' alike, so no fixed list can hold them: :class:`models.reasons.ReasonWriter`
    asks here for each feature of its model, after that model's own templates. The type or
    channel is read from the column name (lower-case letters, digits and underscores: never a
    brace), its underscores said as spaces. A value is missing where there was no such event at
    or before the scoring date in the history read (a customer without events has no count either):
    the last template says so ("No login events so far") instead of "Events login days since last: missing".
    """
    column = touchpoint_column(feature)
    if column is None:
        return ()
    field, name = f"{{{feature}:.0f}}", column.value.replace("_", " ")
    # What is counted, and what the days since the last one name.
    many, last = {
        "": ("interactions", "interaction"),
        "type": (f"{name} events", name),
        "channel": (f"events on the {name} channel", None),
    }[column.kind]
    # The count of every event so far reads as the leads' "3 interactions so far"; none, or none on
    # record, as a count of 0 reads (models.reasons.tidy): one sentence, given once (_states_again).
    none = f"No {many} so far"
    if column.measure == "days_since_last":
        return (f"Last {last} {field} days ago", none)
    if column.measure in ("all", "total"):
        return (f"{field} {many} so far", none)
    window = f"in the last {column.measure.removesuffix('d')} days"
    return (f"{field} {many} {window}", f"No {many} {window}")


def touchpoint_groups(features: Sequence[str]) -> dict[str, list[str]]:
    """The touchpoint features of ``features`` as reason groups (:class:`models.reasons.ReasonWriter`),
    one per events table and event type, channel, or every event: a type's counts over each window and
    its days since the last are one fact, as a purchase's recency and counts are one
    (:data:`CUSTOMER_REASON_GROUPS`). Without them 606 of 1,700 churn rows of a SaaS export read "4 login
    events in the last 30 days (raises churn risk)" beside "65 login events in the last 365 days (lowers
    churn risk)"."""
    groups: dict[str, list[str]] = {}
    for feature in features:
        column = touchpoint_column(feature)
        if column is not None:
            groups.setdefault(f"{column.prefix} {column.kind or 'every'} {column.value}".rstrip(), []).append(feature)
    return groups

"""The config's row filters, rewritten onto the fields of posted lines.

A table's ``filters`` are SQL on the *source's* columns (``Price > 0``, ``StockCode NOT IN (...)``);
a posted purchase carries canonical fields (``amount``, ``quantity``, ``product_id``) and the
record's attributes. A filter is applied to posted lines when every source column it reads is one
of those under another name:

- a column the config maps as it is (``product_id: StockCode``: ``StockCode`` is ``product_id``;
  ``country: Country``: the record's attribute ``country``);
- the other factor of a product the config maps, when one factor is mapped as it is
  (``amount: Quantity * Price`` with ``quantity: Quantity``: ``Price`` is ``amount / quantity``).

Any other filter (one reading a column nothing maps) is not applied, and :func:`posted_rules` says
why, for ``/models`` and the README's advice to send the lines an export would keep.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlglot
import sqlglot.expressions as sge

from features.config import Config, TableConfig

# The line tables a posted record carries, by task: (table, the record's field holding its lines).
LINE_TABLES = {
    "churn": (("transactions", "purchases"), ("events", "events")),
    "next_purchase": (("transactions", "purchases"), ("events", "events")),
    "lead": (("lead_events", "events"),),
}
# The canonical fields a posted line of each table has (serving.schemas: Purchase, Touchpoint, LeadEvent),
# with its record's id.
POSTED_FIELDS = {
    "transactions": ("customer_id", "timestamp", "amount", "order_id", "product_id", "quantity", "category", "channel"),
    "events": ("customer_id", "timestamp", "event_type", "channel", "value"),
    "lead_events": ("lead_id", "timestamp", "event_type", "channel"),
}


@dataclass(frozen=True)
class PostedRule:
    """One config filter of a line table, as posted lines are held to it.

    ``sql`` is a DuckDB boolean expression over ``fields`` (posted line fields and record attributes,
    by their canonical or attribute names), or None when the filter reads a source column no posted
    field stands for; ``why_not`` then says which.
    """

    table: str
    key: str
    name: str
    sql: str | None
    fields: tuple[str, ...] = ()
    why_not: str | None = None


def _plain_column(expression: str, dialect: str) -> str | None:
    """The source column a mapping names as it is, else None (an expression)."""
    text = expression.strip()
    try:
        parsed = sqlglot.parse_one(text, read=dialect)
    except sqlglot.errors.ParseError:
        parsed = None
    if isinstance(parsed, sge.Column) and not parsed.table:
        return parsed.name
    # ``Customer ID`` (a space) or a keyword (``order``) name columns in real exports, as the reader takes them.
    if parsed is None or not parsed.find(sge.Binary, sge.Func, sge.Literal, sge.Paren, sge.Not, sge.Neg):
        return text
    return None


def _stand_ins(spec: TableConfig, fields: tuple[str, ...], dialect: str) -> dict[str, sge.Expression]:
    """Source column -> the expression over posted fields that equals it."""
    posted = {c: e for c, e in spec.columns.items() if c in fields}
    attributes = {} if spec.attributes == "*" else {n: e for n, e in spec.attributes.items() if n not in spec.exclude}
    out: dict[str, sge.Expression] = {}
    for name, expression in {**posted, **attributes}.items():
        column = _plain_column(expression, dialect)
        if column is not None and column not in out:
            out[column] = sge.column(name, quoted=True)
    for name, expression in posted.items():  # amount: Quantity * Price -> Price = amount / NULLIF(quantity, 0)
        try:
            parsed = sqlglot.parse_one(expression, read=dialect)
        except sqlglot.errors.ParseError:
            continue
        if not isinstance(parsed, sge.Mul) or not all(
            isinstance(s, sge.Column) for s in (parsed.this, parsed.expression)
        ):
            continue
        left, right = parsed.this.name, parsed.expression.name
        for known, unknown in ((left, right), (right, left)):
            if known in out and unknown not in out:
                divisor = sge.func("NULLIF", out[known].copy(), sge.Literal.number(0))
                out[unknown] = sge.Paren(this=sge.Div(this=sge.column(name, quoted=True), expression=divisor))
    return out


def _replace_columns(node: sge.Expression, stand_ins: dict[str, sge.Expression]) -> sge.Expression:
    return stand_ins[node.name].copy() if isinstance(node, sge.Column) else node


def posted_rules(config: Config | None, task: str) -> list[PostedRule]:
    """The filters of the task's line tables, each rewritten onto posted fields where it can be."""
    if config is None:
        return []
    dialect = "spark" if config.engine == "spark" else "duckdb"
    rules = []
    for table, key in LINE_TABLES[task]:
        spec: TableConfig | None = getattr(config.tables, table)
        if spec is None or not spec.filters:
            continue
        stand_ins = _stand_ins(spec, POSTED_FIELDS[table], dialect)
        for rule in spec.filters:
            try:
                parsed = sqlglot.parse_one(rule.keep, read=dialect)
            except sqlglot.errors.ParseError as exc:  # the batch refuses it too, naming the filter
                rules.append(PostedRule(table, key, rule.name, None, why_not=f"not valid SQL ({exc})"))
                continue
            if spec.attributes == "*":  # every other source column is an attribute of its own name
                stand_ins.update(
                    {
                        c.name: sge.column(c.name, quoted=True)
                        for c in parsed.find_all(sge.Column)
                        if c.name not in stand_ins
                    }
                )
            unread = sorted({c.name for c in parsed.find_all(sge.Column) if c.name not in stand_ins})
            if unread:
                why = f"it reads {', '.join(unread)}, which no posted field stands for"
                rules.append(PostedRule(table, key, rule.name, None, why_not=why))
                continue
            rewritten = parsed.transform(_replace_columns, stand_ins)
            fields = tuple(sorted({c.name for c in rewritten.find_all(sge.Column)}))
            rules.append(PostedRule(table, key, rule.name, rewritten.sql(dialect="duckdb"), fields))
    return rules


def describe(rules: list[PostedRule]) -> dict[str, object]:
    """For ``/models``: the filters posted lines are held to (name: SQL on posted fields) and the others (name: why not)."""
    return {
        "applied": {f"tables.{r.table}: {r.name}": r.sql for r in rules if r.sql is not None},
        "not_applied": {f"tables.{r.table}: {r.name}": r.why_not for r in rules if r.sql is None},
    }

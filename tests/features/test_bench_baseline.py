"""The feature benchmark's pandas baseline computes what the Ibis pipeline computes.

``benchmarks/bench_features.py`` times the pipeline against plain pandas groupby code; the ratio
means something only while both build the same table. On the bundled transactions at the
benchmark's cut-off, every column the baseline builds must equal the pipeline's.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.bench_features import ibis_features, pandas_features, write_bundled

pytestmark = pytest.mark.slow


def test_pandas_baseline_equals_the_pipeline(tmp_path):
    path = tmp_path / "bundled.parquet"
    write_bundled(path)
    ours = ibis_features(str(path)).set_index("customer_id").sort_index()
    baseline = pandas_features(str(path)).set_index("customer_id").sort_index()

    assert ours.index.equals(baseline.index)
    assert set(baseline.columns) <= set(ours.columns)
    differ = []
    for column in baseline.columns:
        a, b = ours[column], baseline[column]
        if a.dtype.kind in "fiu" or b.dtype.kind in "fiu":
            same = np.allclose(a.astype(float), b.astype(float), rtol=1e-9, atol=1e-9, equal_nan=True)
        else:
            same = a.astype(str).equals(b.astype(str))
        if not same:
            differ.append(column)
    assert differ == []

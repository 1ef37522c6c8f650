"""BG/NBD against the paper's CDNOW results.

The CDNOW summary data is not bundled (nothing may be downloaded, and no installed package
ships it), so the published parameters r=0.243, alpha=4.414, a=0.793, b=2.426 (Fader, Hardie &
Lee 2005, in weeks) are checked two ways: the closed forms reproduce the paper's published
predictions at those parameters, and maximum likelihood recovers them from data simulated
with them on the CDNOW design (2,357-customer scale, T of 27-39 weeks).
"""

from __future__ import annotations

import numpy as np
import pytest

from training.bgnbd import BGNBD, simulate

CDNOW = BGNBD(r=0.243, alpha=4.414, a=0.793, b=2.426)


def test_conditional_expectation_matches_the_paper():
    # FHL 2005 / Hardie's spreadsheet: x=2, t_x=30.43, T=38.86 -> 1.226 purchases in the next 39 weeks.
    assert CDNOW.expected_purchases(39, np.array([2.0]), np.array([30.43]), np.array([38.86]))[0] == pytest.approx(
        1.226, abs=1e-3
    )


def test_unconditional_expectation_matches_the_paper():
    # E[X(t)] at the published parameters (Hardie's spreadsheet values; they used unrounded estimates).
    t = np.array([0.1429, 1.0, 3.0, 31.8571, 32.0, 78.0])
    published = np.array([0.0078, 0.0532, 0.1506, 1.0405, 1.0437, 1.8576])
    assert CDNOW.expected_purchases_new(t) == pytest.approx(published, abs=3e-3)


def test_p_alive_edge_cases():
    # No repeat purchase: alive by assumption; a long silence after many purchases: nearly dead.
    assert CDNOW.p_alive(np.array([0.0]), np.array([0.0]), np.array([30.0]))[0] == 1.0
    assert CDNOW.p_alive(np.array([10.0]), np.array([5.0]), np.array([39.0]))[0] < 0.01
    p0 = CDNOW.p_no_purchase(39, np.array([2.0]), np.array([30.43]), np.array([38.86]))[0]
    assert 0 < p0 < 1


def test_likelihood_of_one_customer_by_hand():
    # x=0: L = (alpha/(alpha+T))^r ; checked against the direct formula.
    T = 20.0
    expected = CDNOW.r * np.log(CDNOW.alpha / (CDNOW.alpha + T))
    assert CDNOW.log_likelihood(np.array([0.0]), np.array([0.0]), np.array([T])) == pytest.approx(expected)


@pytest.mark.slow
def test_maximum_likelihood_recovers_the_cdnow_parameters():
    rng = np.random.default_rng(2005)
    T = rng.uniform(27.0, 39.0, 20_000)
    x, t_x, T = simulate(CDNOW, T, rng=rng)
    fitted = BGNBD.fit(x, t_x, T)
    assert fitted.log_likelihood_ >= CDNOW.log_likelihood(x, t_x, T)
    assert fitted.r == pytest.approx(CDNOW.r, rel=0.1)
    assert fitted.alpha == pytest.approx(CDNOW.alpha, rel=0.1)
    # a and b are weakly identified (the paper's standard errors are ~25%); a looser check.
    assert fitted.a == pytest.approx(CDNOW.a, rel=0.3)
    assert fitted.b == pytest.approx(CDNOW.b, rel=0.4)
    # Fitted and true parameters predict the same holdout purchases.
    ratio = fitted.expected_purchases(39, x, t_x, T).sum() / CDNOW.expected_purchases(39, x, t_x, T).sum()
    assert ratio == pytest.approx(1.0, abs=0.03)


def test_fit_validates_inputs():
    with pytest.raises(ValueError, match="t_x <= T"):
        BGNBD.fit(np.array([1.0]), np.array([5.0]), np.array([3.0]))

"""fastbp estimators through fairlearn's mitigations: the reductions refit
clones with sample_weight (bare, in a pipeline by step name or by metadata
routing, DataFrames, early stopping, regressors), the postprocessing reads
predict_proba of a prefit model or fits a clone. Each path must reduce the
disparity it targets, and the reductions' weights must reach fastbp's fit and
shape it (relabelling alone would reduce the disparity too)."""

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.base import clone
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from fastbp import MLPClassifier, MLPRegressor

fairlearn = pytest.importorskip("fairlearn")
from fairlearn.metrics import demographic_parity_difference  # noqa: E402
from fairlearn.postprocessing import ThresholdOptimizer  # noqa: E402
from fairlearn.reductions import (  # noqa: E402
    BoundedGroupLoss,
    DemographicParity,
    ExponentiatedGradient,
    GridSearch,
    SquareLoss,
)

# Short fits; fairlearn's reductions trip pandas' deprecation notices.
pytestmark = [pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def biased(n=600, seed=0):
    """Labels that penalize group b; feature 0 is lower in b, feature 3 is a
    proxy of the group."""
    rng = np.random.default_rng(seed)
    b = rng.random(n) < 0.4
    X = rng.standard_normal((n, 4))
    X[:, 0] -= 0.8 * b
    X[:, 3] += 1.5 * b
    y = (X[:, 0] + 0.5 * X[:, 1] - 0.8 * b + 0.3 * rng.standard_normal(n) > 0)
    return X, y.astype(int), np.where(b, "b", "a")


class Recording(MLPClassifier):
    """fastbp's classifier, noting the labels and sample weights of each fit
    (in a class attribute: the reductions fit clones)."""

    calls = []

    def fit(self, X, y, sample_weight=None):
        Recording.calls.append((np.asarray(y).copy(), None if sample_weight is None
                                else np.array(sample_weight, dtype=float)))
        return super().fit(X, y, sample_weight=sample_weight)


def small_net(cls=MLPClassifier, **params):
    return cls((8,), max_iter=60, learning_rate_init=0.01, random_state=0, **params)


def _pipeline():
    return Pipeline([("scale", StandardScaler()), ("mlp", small_net(Recording))])


def _routed_pipeline():
    return Pipeline([("scale", StandardScaler().set_fit_request(sample_weight=False)),
                     ("mlp", small_net(Recording).set_fit_request(sample_weight=True))])


# (estimator factory, the name fairlearn passes the weights as, X as a DataFrame)
REDUCTION_CASES = {
    "bare": (lambda: small_net(Recording), "sample_weight", False),
    "bare, DataFrame": (lambda: small_net(Recording), "sample_weight", True),
    "early stopping": (lambda: small_net(Recording, early_stopping=True,
                                         n_iter_no_change=5), "sample_weight", False),
    "pipeline, step name, DataFrame": (_pipeline, "mlp__sample_weight", True),
    "pipeline, metadata routing": (_routed_pipeline, "sample_weight", False),
}


@pytest.mark.parametrize("case", list(REDUCTION_CASES))
def test_exponentiated_gradient_refits_with_sample_weight(case):
    """The weights reach fastbp's fit through each path and shape the fits
    the reduction mixes, and the mixture is fairer."""
    make, weight_name, frame = REDUCTION_CASES[case]
    X, y, group = biased()
    if frame:
        X = pd.DataFrame(X, columns=["w", "x", "y", "z"])
    routing = case.endswith("routing")
    with sklearn.config_context(enable_metadata_routing=routing):
        unmitigated = make().fit(X, y)
        before = demographic_parity_difference(y, unmitigated.predict(X),
                                               sensitive_features=group)
        estimator = make()
        Recording.calls.clear()
        mitigator = ExponentiatedGradient(estimator, DemographicParity(), max_iter=10,
                                          sample_weight_name=weight_name)
        mitigator.fit(X, y, sensitive_features=group)
        after = demographic_parity_difference(
            y, mitigator.predict(X, random_state=0), sensitive_features=group)
        calls = list(Recording.calls)
        assert len(calls) >= 3
        # Each refit is a fastbp fit with fairlearn's weights (positive, mean 1,
        # not all equal); each predictor kept in the mixture is what refitting
        # with one call's weights gives, and refitting without them would not.
        refits = []
        for y_red, w in calls:
            assert w is not None and w.shape == (len(y),)
            assert np.all(w >= 0) and np.ptp(w) > 0
            assert w.sum() == pytest.approx(len(y))
            refits.append(make().fit(X, y_red, **{weight_name: w}).predict(X))
        for predictor in mitigator.predictors_:
            if hasattr(predictor, "strategy"):  # fairlearn's constant DummyClassifier
                continue
            pred = predictor.predict(X)
            assert any(np.array_equal(pred, r) for r in refits)
        assert any(not np.array_equal(make().fit(X, y_red).predict(X), r)
                   for (y_red, _), r in zip(calls[:3], refits, strict=False))
    assert before > 0.25
    assert after < 0.5 * before
    # It refitted clones: the estimator passed in stays unfitted.
    assert not hasattr(estimator[-1] if hasattr(estimator, "steps") else estimator,
                       "coefs_")
    fitted = [p for p in mitigator.predictors_ if not hasattr(p, "strategy")]
    assert all(type(p) is type(estimator) for p in fitted)
    if frame:  # the refits saw the columns' names
        assert list(fitted[0].feature_names_in_) == ["w", "x", "y", "z"]


def test_grid_search_reweighting_changes_the_fits():
    """Each grid point is a fit under other weights: the predictors differ,
    and the best one is fairer than the unweighted fit."""
    X, y, group = biased()
    before = demographic_parity_difference(y, small_net().fit(X, y).predict(X),
                                           sensitive_features=group)
    search = GridSearch(small_net(), DemographicParity(), grid_size=7)
    search.fit(X, y, sensitive_features=group)
    gaps = [demographic_parity_difference(y, p.predict(X), sensitive_features=group)
            for p in search.predictors_]
    assert max(gaps) - min(gaps) > 0.2
    after = demographic_parity_difference(y, search.predict(X),
                                          sensitive_features=group)
    assert after < 0.5 * before


def test_bounded_group_loss_on_a_regressor():
    """A relation the features cannot tell apart by group (y = x for a,
    y = -x for b): the unconstrained fit serves the majority, the bounded
    group loss lowers the minority's squared error."""
    rng = np.random.default_rng(0)
    n = 600
    b = rng.random(n) < 0.3
    X = rng.uniform(-1, 1, (n, 2))
    y = np.clip(np.where(b, -X[:, 0], X[:, 0]) + 0.05 * rng.standard_normal(n), -1, 1)
    group = np.where(b, "b", "a")

    def net():
        return MLPRegressor(hidden_layer_sizes=(8,), max_iter=200, random_state=0)

    def loss_b(pred):
        return np.mean((pred[b] - y[b]) ** 2)

    unmitigated = net().fit(X, y)
    mitigator = ExponentiatedGradient(
        net(), BoundedGroupLoss(SquareLoss(-1, 1), upper_bound=0.3), max_iter=15)
    mitigator.fit(X, y, sensitive_features=group)
    before, after = loss_b(unmitigated.predict(X)), loss_b(mitigator.predict(X))
    assert before > 0.4
    assert after < before - 0.1


@pytest.mark.parametrize("prefit", [True, False])
@pytest.mark.parametrize("pipeline", [False, True])
def test_threshold_optimizer_thresholds_predict_proba(prefit, pipeline):
    """The decision is a threshold on predict_proba per group: within a group
    the chance of a positive prediction never falls as the score rises."""
    X, y, group = biased()
    estimator = make_pipeline(StandardScaler(), small_net()) if pipeline else small_net()
    if prefit:
        estimator.fit(X, y)
        coefs = [c.copy() for c in (estimator[-1] if pipeline else estimator).coefs_]
    before = demographic_parity_difference(y, clone(estimator).fit(X, y).predict(X),
                                           sensitive_features=group)
    mitigator = ThresholdOptimizer(estimator=estimator, constraints="demographic_parity",
                                   prefit=prefit, predict_method="predict_proba")
    mitigator.fit(X, y, sensitive_features=group)
    net = estimator[-1] if pipeline else estimator
    if prefit:  # used as it was, not refitted
        assert mitigator.estimator_ is estimator
        for c, c0 in zip(net.coefs_, coefs, strict=True):
            np.testing.assert_array_equal(c, c0)
    else:  # a clone was fitted
        assert not hasattr(net, "coefs_")
    score = mitigator.estimator_.predict_proba(X)[:, 1]
    chance = mitigator._pmf_predict(X, sensitive_features=group)[:, 1]
    for g in ("a", "b"):
        order = np.argsort(score[group == g], kind="stable")
        assert np.all(np.diff(chance[group == g][order]) >= -1e-12)
    after = demographic_parity_difference(
        y, mitigator.predict(X, sensitive_features=group, random_state=0),
        sensitive_features=group)
    assert before > 0.25 and after < 0.5 * before

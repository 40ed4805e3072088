"""
Auditing a model for bias and mitigating it with fairlearn
==========================================================

A synthetic credit data set (generated, no download) with a sensitive
feature, ``group`` (``a`` or ``b``, 35% ``b``). Group ``b`` has lower incomes,
more debt and shorter employment, lives in other postcodes (a feature that
is nearly a proxy for the group), and the labels, past repayment decisions,
were biased against it beyond what those features explain. A fastbp
classifier that never sees the group still learns to approve ``b`` less.

The audit: ``fairlearn.metrics.MetricFrame`` gives the accuracy, selection
rate (share approved) and false-negative rate (good payers refused) of each
group, and two disparities summarize them:

- demographic parity difference: the largest gap between the groups'
  selection rates;
- equalized odds difference: the larger of the gaps between their true- and
  false-positive rates.

Two mitigations, each under either constraint:

- ``fairlearn.reductions.ExponentiatedGradient`` refits the classifier many
  times with ``sample_weight`` (here through a pipeline: the weights go to
  its ``mlpclassifier`` step) and returns a randomized mixture of the fits
  that meets the constraint; it needs the group only to fit;
- ``fairlearn.postprocessing.ThresholdOptimizer`` keeps the fitted model
  (``prefit=True``) and picks a threshold on its ``predict_proba`` for each
  group; it needs the group at prediction time too.

    pip install "fastbp[fairness]" && python examples/fairness_fairlearn.py
"""

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    false_negative_rate,
    selection_rate,
)
from fairlearn.postprocessing import ThresholdOptimizer
from fairlearn.reductions import DemographicParity, EqualizedOdds, ExponentiatedGradient
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastbp import MLPClassifier

FEATURES = ["income", "debt", "years employed", "postcode index"]


def make_credit(n_samples=4000, seed=0):
    """Features (a DataFrame without the group), labels and the group."""
    rng = np.random.default_rng(seed)
    b = rng.random(n_samples) < 0.35
    income = rng.normal(0, 1, n_samples) - 0.8 * b
    debt = rng.normal(0, 1, n_samples) + 0.3 * b
    years = rng.gamma(2, 2, n_samples) - 1.0 * b
    postcode = rng.normal(0, 1, n_samples) + 1.5 * b
    # The past decisions: the features, noise, and a penalty on group b.
    score = (1.2 * income - 0.9 * debt + 0.25 * years - 0.6 * b
             + rng.logistic(0, 0.6, n_samples))
    X = pd.DataFrame(np.column_stack([income, debt, years, postcode]),
                     columns=FEATURES)
    group = pd.Series(np.where(b, "b", "a"), name="group")
    return X, (score > 0).astype(int), group


def network():
    return make_pipeline(StandardScaler(),
                         MLPClassifier((16,), max_iter=200, random_state=0))


def audit(y_true, y_pred, group):
    """Per-group metrics and the two disparities, for one model."""
    frame = MetricFrame(
        metrics={"accuracy": accuracy_score, "selection rate": selection_rate,
                 "false-negative rate": false_negative_rate},
        y_true=y_true, y_pred=y_pred, sensitive_features=group)
    return {
        "by group": frame.by_group,
        "accuracy": accuracy_score(y_true, y_pred),
        "demographic parity difference": demographic_parity_difference(
            y_true, y_pred, sensitive_features=group),
        "equalized odds difference": equalized_odds_difference(
            y_true, y_pred, sensitive_features=group),
    }


def main(n_samples=4000, eg_max_iter=50):
    X, y, group = make_credit(n_samples)
    X_train, X_test, y_train, y_test, g_train, g_test = train_test_split(
        X, y, group, random_state=0, stratify=group)
    base_rates = pd.Series(y_test, index=g_test.index).groupby(g_test).mean()
    print("share of label 1 (repaid) in the test set: "
          + ", ".join(f"group {g} {rate:.2f}" for g, rate in base_rates.items()))
    model = network().fit(X_train, y_train)

    predictions = {"unmitigated": model.predict(X_test)}
    for constraint in (DemographicParity(), EqualizedOdds()):
        mitigator = ExponentiatedGradient(
            network(), constraint, max_iter=eg_max_iter,
            sample_weight_name="mlpclassifier__sample_weight")
        mitigator.fit(X_train, y_train, sensitive_features=g_train)
        predictions[f"ExponentiatedGradient, {type(constraint).__name__}"] = (
            mitigator.predict(X_test, random_state=0))
    for constraint in ("demographic_parity", "equalized_odds"):
        mitigator = ThresholdOptimizer(estimator=model, constraints=constraint,
                                       prefit=True, predict_method="predict_proba")
        mitigator.fit(X_train, y_train, sensitive_features=g_train)
        name = "".join(w.title() for w in constraint.split("_"))
        predictions[f"ThresholdOptimizer, {name}"] = mitigator.predict(
            X_test, sensitive_features=g_test, random_state=0)

    audits = {name: audit(y_test, pred, g_test) for name, pred in predictions.items()}
    with pd.option_context("display.precision", 3, "display.width", 120):
        for name, result in audits.items():
            print(f"\n{name}: accuracy {result['accuracy']:.3f}, demographic "
                  f"parity difference {result['demographic parity difference']:.3f}, "
                  f"equalized odds difference {result['equalized odds difference']:.3f}")
            print(result["by group"])
    return audits


def plot(audits):
    import matplotlib.pyplot as plt

    names = list(audits)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    pos = np.arange(len(names))
    for ax, metric in zip(axes[:2], ("selection rate", "false-negative rate"),
                          strict=True):
        for i, g in enumerate(("a", "b")):
            ax.barh(pos + (i - 0.5) * 0.4,
                    [audits[n]["by group"].loc[g, metric] for n in names], 0.4,
                    label=f"group {g}")
        ax.set_yticks(pos, names)
        ax.invert_yaxis()
        ax.set_xlabel(metric)
    axes[0].legend(loc="upper center", bbox_to_anchor=(1.0, -0.1), ncol=2)
    axes[1].set_yticks(pos, [])
    ax = axes[2]
    for i, metric in enumerate(("accuracy", "demographic parity difference",
                                "equalized odds difference")):
        ax.barh(pos + (i - 1) * 0.27, [audits[n][metric] for n in names], 0.27,
                label=metric)
    ax.set_yticks(pos, [])
    ax.invert_yaxis()
    ax.set_xlabel("on the test set")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    plot(main())

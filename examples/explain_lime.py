"""
Explaining a model: LIME beside SHAP and exact input gradients
===============================================================

Three attributions of the same predictions of a fastbp classifier on the
breast cancer data (30 features), each to the predicted class of a test
sample and each relative to the training data:

- LIME (``lime.lime_tabular.LimeTabularExplainer`` over ``predict_proba``):
  a weighted ridge regression fitted to the model's outputs on samples drawn
  around the training distribution, weighted by their closeness to the
  explained row. We keep the features continuous (``discretize_continuous=
  False``), so the ridge is linear in the standardized features and its
  per-feature term, slope times the row's standardized value, is an additive
  attribution on the scale of SHAP's. (LIME's default quartile bins explain
  the membership of a bin instead, with weights on another scale, and fit
  this model less well.) Its ``score`` is the ridge's weighted R², how well a
  linear model reproduces the network near the row;
- SHAP values, model-agnostic: ``shap.Explainer`` over ``predict_proba`` with
  training samples as background (the permutation explainer); they add up to
  ``f(x) - E[f(background)]`` exactly;
- expected gradients from fastbp's exact input Jacobian (``est.jacobian``):
  integrated gradients averaged over the same background samples, which
  estimate the same Shapley values and add up to the same difference.

How far they agree: Spearman's rank correlation of the signed attributions of
each row, for each pair of methods; and a deletion test: replace a method's
top k features (those pushing hardest toward the predicted class) by their
training mean and see how much the predicted class's probability drops,
against k features drawn at random.

    pip install "fastbp[explain]" && python examples/explain_lime.py
"""

import numpy as np
import shap
from lime.lime_tabular import LimeTabularExplainer
from scipy.stats import spearmanr
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from fastbp import MLPClassifier

METHODS = ("LIME", "SHAP", "expected gradients")


def expected_gradients(est, X, background, n_steps=16):
    """Integrated gradients of predict_proba averaged over background
    baselines (midpoint rule in t); shape (n_samples, n_features, n_classes).
    As in explain_shap.py."""
    t = (np.arange(n_steps) + 0.5) / n_steps
    diff = X[:, None, :] - background[None, :, :]  # (n, n_background, features)
    path = background[None, :, None, :] + t[None, None, :, None] * diff[:, :, None, :]
    J = est.jacobian(path.reshape(-1, X.shape[1]))  # (rows, classes, features)
    J = J.reshape(*path.shape[:3], *J.shape[1:]).mean(axis=2)  # over t
    return np.einsum("nbf,nbcf->nfc", diff, J) / len(background)


def lime_attributions(est, X_train, X, classes, num_samples):
    """LIME's per-feature terms for class classes[i] of each row X[i]: the
    ridge's slope times the row's value in LIME's standardized units. Also
    the ridge's fit score, and intercept + sum of terms - LIME's own local
    prediction (zero if the terms are read right), and that local prediction."""
    explainer = LimeTabularExplainer(X_train, mode="classification",
                                     discretize_continuous=False, random_state=0)
    scaled = (X - explainer.scaler.mean_) / explainer.scaler.scale_
    values = np.zeros(X.shape)
    scores, gaps, local = np.zeros(len(X)), np.zeros(len(X)), np.zeros(len(X))
    for i, (x, c) in enumerate(zip(X, classes, strict=True)):
        exp = explainer.explain_instance(x, est.predict_proba, labels=(c,),
                                         num_features=X.shape[1],
                                         num_samples=num_samples)
        for j, slope in exp.local_exp[c]:
            values[i, j] = slope * scaled[i, j]
        scores[i] = exp.score
        gaps[i] = exp.intercept[c] + values[i].sum() - exp.local_pred[0]
        local[i] = exp.local_pred[0]
    return values, scores, gaps, local


def deletion(est, X, attributions, baseline, k, classes):
    """Drop of the predicted class's probability when the k features with
    the largest attributions toward it are set to the baseline."""
    rows = np.arange(len(X))
    top = np.argsort(-attributions, axis=1)[:, :k]
    X_del = X.copy()
    X_del[rows[:, None], top] = baseline[top]
    return (est.predict_proba(X)[rows, classes]
            - est.predict_proba(X_del)[rows, classes])


def random_deletion(est, X, baseline, k, classes, n_draws=50, seed=0):
    """The same drop for k features drawn at random, averaged over draws."""
    rng = np.random.default_rng(seed)
    return np.mean([deletion(est, X, rng.random(X.shape), baseline, k, classes)
                    for _ in range(n_draws)], axis=0)


def main(n_explain=20, n_background=30, num_samples=2000, k=5, max_k=10):
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    clf = MLPClassifier((16,), activation="tanh", max_iter=300,
                        random_state=0).fit(X_train, y_train)
    print(f"test accuracy {clf.score(X_test, y_test):.3f}")

    background = X_train[:n_background]
    X_explain = X_test[:n_explain]
    proba = clf.predict_proba(X_explain)
    predicted = proba.argmax(axis=1)  # index into classes_
    rows = np.arange(n_explain)

    lime_values, lime_scores, lime_gaps, lime_local = lime_attributions(
        clf, X_train, X_explain, predicted, num_samples)
    lime_miss = np.abs(lime_local - proba[rows, predicted])
    shap_all = shap.Explainer(clf.predict_proba, background, seed=0)(
        X_explain, silent=True).values  # (n, features, classes)
    eg_all = expected_gradients(clf, X_explain, background)
    target = proba - clf.predict_proba(background).mean(axis=0)
    additivity = {"SHAP": np.abs(shap_all.sum(axis=1) - target).max(),
                  "expected gradients": np.abs(eg_all.sum(axis=1) - target).max()}
    attributions = dict(zip(METHODS, (lime_values, shap_all[rows, :, predicted],
                                      eg_all[rows, :, predicted]), strict=True))

    print(f"additivity |sum - (f(x) - E f(b))|: SHAP {additivity['SHAP']:.1e}, "
          f"expected gradients {additivity['expected gradients']:.1e}")
    print(f"LIME local fit score (weighted R²): median {np.median(lime_scores):.2f}, "
          f"min {lime_scores.min():.2f}; its prediction at the row misses the "
          f"model's by {np.median(lime_miss):.2f} (median), {lime_miss.max():.2f} (max)")

    rho = {}
    for a, b in (("LIME", "SHAP"), ("LIME", "expected gradients"),
                 ("SHAP", "expected gradients")):
        rho[a, b] = np.array([
            spearmanr(u, v).statistic
            for u, v in zip(attributions[a], attributions[b], strict=True)])
        print(f"Spearman {a} vs {b}: median {np.median(rho[a, b]):.2f}, "
              f"min {rho[a, b].min():.2f}")

    baseline = X_train.mean(axis=0)
    ks = np.arange(1, max_k + 1)
    drops = {name: np.array([deletion(clf, X_explain, values, baseline, kk,
                                      predicted).mean() for kk in ks])
             for name, values in attributions.items()}
    drops["random"] = np.array([random_deletion(clf, X_explain, baseline, kk,
                                                predicted).mean() for kk in ks])
    print(f"deletion of the top {k} features to the training mean, mean drop of "
          "the predicted class's probability: "
          + ", ".join(f"{name} {d[k - 1]:.3f}" for name, d in drops.items()))
    return {"attributions": attributions, "additivity": additivity,
            "lime_scores": lime_scores, "lime_gaps": lime_gaps,
            "lime_miss": lime_miss, "rho": rho,
            "ks": ks, "drops": drops, "k": k,
            "X_explain": X_explain, "predicted": predicted}


def plot(results, n_rows=2, n_top=8):
    import matplotlib.pyplot as plt

    names = load_breast_cancer().feature_names
    attributions = results["attributions"]
    fig, axes = plt.subplots(1, n_rows + 1, figsize=(5 * (n_rows + 1), 5))
    for i, ax in enumerate(axes[:n_rows]):
        shap_row = attributions["SHAP"][i]
        order = np.argsort(np.abs(shap_row))[-n_top:]
        pos = np.arange(n_top)
        for m, name in enumerate(METHODS):
            ax.barh(pos + (m - 1) * 0.27, attributions[name][i][order], 0.27,
                    label=name)
        ax.set_yticks(pos, [names[j] for j in order])
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xlabel("attribution to the predicted class")
        ax.set_title(f"test sample {i}")
    ax = axes[-1]
    for name, drop in results["drops"].items():
        ax.plot(results["ks"], drop, "o-" if name != "random" else "k--",
                label=name)
    ax.set_xlabel("k features set to their training mean")
    ax.set_ylabel("mean drop of the predicted class's probability")
    ax.set_title("deletion test")
    ax.legend()
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    plot(main())

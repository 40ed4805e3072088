"""
Explaining a model: SHAP values and exact input gradients
==========================================================

Two attributions of the same predictions of a fastbp classifier on the wine
data, for the predicted class of each test sample:

- SHAP values, model-agnostic: ``shap.Explainer`` over ``predict_proba`` with
  the training samples as background (it picks the permutation explainer);
- expected gradients, from fastbp's exact input Jacobian (``est.jacobian``):
  integrated gradients, ``(x - b) * mean over t of J(b + t (x - b))``,
  averaged over the same background samples ``b``. They estimate the same
  Shapley values, and both sum to ``f(x) - E[f(background)]``.

We compare them by Spearman's rank correlation of the absolute attributions
of each sample (do they rank the features alike?) and check that each method
adds up to the prediction it explains.

    pip install "fastbp[shap]" && python examples/explain_shap.py
"""

import numpy as np
import shap
from scipy.stats import spearmanr
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from fastbp import MLPClassifier


def expected_gradients(est, X, background, n_steps=16):
    """Integrated gradients of predict_proba averaged over background
    baselines (midpoint rule in t); shape (n_samples, n_features, n_classes)."""
    t = (np.arange(n_steps) + 0.5) / n_steps
    diff = X[:, None, :] - background[None, :, :]  # (n, n_background, features)
    path = background[None, :, None, :] + t[None, None, :, None] * diff[:, :, None, :]
    J = est.jacobian(path.reshape(-1, X.shape[1]))  # (rows, classes, features)
    J = J.reshape(*path.shape[:3], *J.shape[1:]).mean(axis=2)  # over t
    return np.einsum("nbf,nbcf->nfc", diff, J) / len(background)


def main(n_explain=20, n_background=30):
    X, y = load_wine(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    clf = MLPClassifier((16,), activation="tanh", max_iter=300,
                        random_state=0).fit(X_train, y_train)
    print(f"test accuracy {clf.score(X_test, y_test):.3f}")

    background = X_train[:n_background]
    X_explain = X_test[:n_explain]
    explainer = shap.Explainer(clf.predict_proba, background, seed=0)
    shap_values = explainer(X_explain, silent=True).values  # (n, features, classes)
    eg_values = expected_gradients(clf, X_explain, background)

    # Both add up to f(x) - E[f(background)] (SHAP exactly, expected
    # gradients up to the midpoint rule).
    target = clf.predict_proba(X_explain) - clf.predict_proba(background).mean(0)
    shap_gap = np.abs(shap_values.sum(axis=1) - target).max()
    eg_gap = np.abs(eg_values.sum(axis=1) - target).max()

    rows = np.arange(n_explain)
    predicted = clf.predict_proba(X_explain).argmax(axis=1)
    shap_top, eg_top = shap_values[rows, :, predicted], eg_values[rows, :, predicted]
    rho = np.array([spearmanr(np.abs(s), np.abs(e)).statistic
                    for s, e in zip(shap_top, eg_top, strict=True)])
    print(f"additivity: SHAP {shap_gap:.1e}, expected gradients {eg_gap:.1e}")
    print(f"Spearman rank correlation of |attributions| per sample: "
          f"median {np.median(rho):.2f}, min {rho.min():.2f}")
    return shap_top, eg_top, rho, shap_gap, eg_gap


def plot(shap_top, eg_top, rho):
    import matplotlib.pyplot as plt

    names = load_wine().feature_names
    order = np.argsort(np.abs(shap_top).mean(axis=0))
    fig, (ax, ax_rho) = plt.subplots(1, 2, figsize=(10, 4.5),
                                     gridspec_kw={"width_ratios": [2, 1]})
    pos = np.arange(len(names))
    ax.barh(pos - 0.2, np.abs(shap_top).mean(axis=0)[order], 0.4, label="SHAP")
    ax.barh(pos + 0.2, np.abs(eg_top).mean(axis=0)[order], 0.4,
            label="expected gradients (jacobian)")
    ax.set_yticks(pos, [names[i] for i in order])
    ax.set_xlabel("mean |attribution| to the predicted class")
    ax.legend()
    ax_rho.hist(rho, bins=10, range=(-1, 1))
    ax_rho.set_xlabel("Spearman rank correlation per sample")
    fig.tight_layout()


if __name__ == "__main__":
    shap_top, eg_top, rho, *_ = main()
    plot(shap_top, eg_top, rho)

"""
Newton training, the exact Hessian, input Jacobians and a gradient check
========================================================================

    python examples/second_order.py
"""

import numpy as np
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

import fastbp
from fastbp import MLPClassifier


def main():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = MLPClassifier((5,), activation="tanh", solver="newton", alpha=1.0,
                        random_state=0).fit(X, y)
    print(f"newton: {clf.n_iter_} iterations, loss {clf.loss_:.6f}")

    loss, grad = clf.loss_gradient(X, y)  # the objective and its flat gradient
    coef_grads, intercept_grads = clf.unflatten_params(grad)
    H = clf.hessian(X, y)  # exact, (n_params, n_params)
    v = np.random.default_rng(0).standard_normal(grad.size)
    Hv = clf.hessian_vector_product(X, y, v)  # without building H
    J = clf.jacobian(X[:5])  # d predict_proba / d X, (5, 3, 4)
    check = fastbp.check_gradients(clf, X, y)
    print(f"gradient norm {np.linalg.norm(grad):.1e}; Hessian {H.shape}, "
          f"|Hv - H @ v| = {np.abs(Hv - H @ v).max():.1e}; Jacobian {J.shape}")
    print(check)
    return clf, grad, H, Hv - H @ v, J, check


if __name__ == "__main__":
    main()

"""
Bayesian hyperparameter search with Optuna's OptunaSearchCV
===========================================================

    pip install "fastbp[optuna]" && python examples/search_optuna.py
"""

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna_integration import OptunaSearchCV
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastbp import MLPClassifier


def main(n_trials=8):
    X, y = load_digits(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=30, random_state=0))
    space = {
        "mlpclassifier__hidden_layer_sizes": CategoricalDistribution([(32,), (64,)]),
        "mlpclassifier__alpha": FloatDistribution(1e-5, 1e-1, log=True),
        "mlpclassifier__learning_rate_init": FloatDistribution(1e-4, 1e-2, log=True),
    }
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = OptunaSearchCV(pipe, space, cv=3, n_trials=n_trials, random_state=0)
    search.fit(X, y)
    print(f"{len(search.trials_)} trials: best {search.best_params_}")
    print(f"best cross-validated accuracy {search.best_score_:.4f}")
    return search


if __name__ == "__main__":
    main()

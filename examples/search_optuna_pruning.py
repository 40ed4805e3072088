"""
Optuna search that stops bad candidates early (pruning)
=======================================================

``OptunaSearchCV(enable_pruning=True)`` trains each candidate with
``partial_fit``, one epoch per call on each cross-validation fold, reports
the mean validation score after every epoch, and lets the study's pruner
stop a candidate whose score lags the others' at the same epoch. Pruning
needs ``partial_fit`` on the estimator itself, so the features are scaled
beforehand (a Pipeline has no ``partial_fit``); digits' pixels are 0..16.

    pip install "fastbp[optuna]" && python examples/search_optuna_pruning.py
"""

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from optuna_integration import OptunaSearchCV
from sklearn.datasets import load_digits

from fastbp import MLPClassifier

SPACE = {
    "hidden_layer_sizes": CategoricalDistribution([32, 64]),  # one layer
    "alpha": FloatDistribution(1e-5, 1e-1, log=True),
    "learning_rate_init": FloatDistribution(1e-5, 1e-1, log=True),
}


def main(n_trials=12, max_iter=20):
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=0),
        # Prune below the median of earlier trials at the same epoch, once 3
        # trials are complete and from the third epoch on.
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2))
    # max_iter: the epochs (partial_fit calls) a candidate gets at most; the
    # refit of the best one is a fit with the estimator's own max_iter.
    search = OptunaSearchCV(
        MLPClassifier(max_iter=max_iter, random_state=0), SPACE, cv=3,
        enable_pruning=True, max_iter=max_iter, n_trials=n_trials, study=study)
    search.fit(X, y)
    pruned = [t for t in search.trials_ if t.state == TrialState.PRUNED]
    epochs = sum(len(t.intermediate_values) for t in search.trials_)
    print(f"{len(search.trials_)} trials, {len(pruned)} pruned: {epochs} epochs "
          f"per fold instead of {len(search.trials_) * max_iter}")
    print(f"best {search.best_params_}, 3-fold accuracy {search.best_score_:.4f}")
    return search, X, y


if __name__ == "__main__":
    main()

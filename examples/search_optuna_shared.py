"""
One Optuna study shared by several processes
============================================

An Optuna study kept in a storage (a SQLite file here; a PostgreSQL or MySQL
URL for machines that share no disk) is shared by every process that loads
it: each runs ``study.optimize`` and takes the next trials, so a search
spreads over processes or machines with nothing but the storage URL in
common. Here two worker processes (joblib) search a grid of fastbp
settings; the shared study's best parameters are those of the same grid
searched in one process, since each candidate's score is fixed by its
random_state.

    pip install "fastbp[optuna]" && python examples/search_optuna_shared.py

On several machines, run the worker part of this script on each with the
same storage URL, e.g. ``storage="postgresql://user:password@host/db"``.
"""

import os
import tempfile
import warnings
from pathlib import Path

import joblib
import optuna
from sklearn.datasets import load_digits
from sklearn.model_selection import cross_val_score

from fastbp import MLPClassifier

GRID = {
    "hidden_layer_sizes": [32, 64],
    "alpha": [1e-4, 1e-2],
    "learning_rate_init": [1e-3, 1e-2],
}


def objective(trial, X, y):
    params = {name: trial.suggest_categorical(name, values)
              for name, values in GRID.items()}
    trial.set_user_attr("pid", os.getpid())  # which process ran it
    clf = MLPClassifier(max_iter=20, random_state=0, **params)
    return cross_val_score(clf, X, y, cv=3).mean()


def worker(storage, study_name, X, y):
    """What every process (or machine) runs: load the shared study and take
    trials until the grid is done (the grid sampler then stops the study)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=storage,
                              sampler=optuna.samplers.GridSampler(GRID, seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 20 epochs: ConvergenceWarning
        study.optimize(lambda trial: objective(trial, X, y), n_trials=n_grid())


def n_grid():
    n = 1
    for values in GRID.values():
        n *= len(values)
    return n


def main(n_workers=2, folder=None):
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    single = optuna.create_study(direction="maximize",
                                 sampler=optuna.samplers.GridSampler(GRID, seed=0))
    single.optimize(lambda trial: objective(trial, X, y), n_trials=n_grid())

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(folder or tmp) / "study.db"
        # A SQLite file; the timeout lets a writer wait for another one.
        storage = optuna.storages.RDBStorage(
            f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 60}})
        optuna.create_study(study_name="digits", storage=storage,
                            direction="maximize")
        joblib.Parallel(n_jobs=n_workers)(
            joblib.delayed(worker)(storage.url, "digits", X, y)
            for _ in range(n_workers))
        shared = optuna.load_study(study_name="digits", storage=storage.url)
        trials = shared.get_trials(deepcopy=False)
        storage.engine.dispose()  # close the file before the folder goes

    pids = sorted({t.user_attrs["pid"] for t in trials})
    print(f"one process: best {single.best_params} ({single.best_value:.4f})")
    print(f"{n_workers} processes sharing the SQLite study: {len(trials)} trials "
          f"by processes {pids}, best {shared.best_params} "
          f"({shared.best_value:.4f})")
    return single, shared, trials


if __name__ == "__main__":
    main()

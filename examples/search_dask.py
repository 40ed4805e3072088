"""
Hyperparameter search across processes and across a dask cluster
================================================================

GridSearchCV(n_jobs=2) fits candidates in two worker processes; the same
search runs on a dask.distributed cluster through joblib's "dask" backend.
Here the cluster is a LocalCluster of 2 worker processes on this machine;
point Client at a scheduler address to use a real cluster.

    pip install "fastbp[dask]" && python examples/search_dask.py
"""

import joblib
from dask.distributed import Client, LocalCluster
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastbp import MLPClassifier


def main():
    X, y = load_digits(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=30, random_state=0))
    grid = {
        "mlpclassifier__hidden_layer_sizes": [(32,), (64,)],
        "mlpclassifier__alpha": [1e-4, 1e-2],
    }
    search = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(X, y)
    print(f"processes: best {search.best_params_} score {search.best_score_:.4f}")

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None, processes=True) as cluster, \
            Client(cluster), joblib.parallel_backend("dask"):
        on_dask = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    print(f"dask:      best {on_dask.best_params_} score {on_dask.best_score_:.4f}")
    assert on_dask.best_params_ == search.best_params_
    return search, on_dask


if __name__ == "__main__":
    main()

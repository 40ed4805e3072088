"""One estimator shared by threads: fits and partial fits run one at a time,
none loses another's work, and a snapshot taken meanwhile is a whole model."""

import pickle
import threading
import warnings

import numpy as np
import pytest
from conftest import make_classification_data
from sklearn.exceptions import ConvergenceWarning

from fastbp import MLPClassifier


def _quiet(f, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return f(*args, **kwargs)


def _in_threads(*calls):
    """Run the calls in threads started together; the exceptions they raised."""
    errors, start = [], threading.Barrier(len(calls))

    def run(call):
        start.wait()
        try:
            call()
        except BaseException as e:  # noqa: BLE001 - reported to the test
            errors.append(e)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def _weights(est):
    return [a.copy() for a in est.coefs_ + est.intercepts_]


def test_concurrent_fits_of_one_estimator_each_commit_a_whole_model():
    """Two fits on data of different widths: the estimator ends as one of the
    two sequential results, bit for bit, never a mixture or unfitted."""
    data = [make_classification_data(300, 10, 3, seed=0),
            make_classification_data(300, 20, 3, seed=1)]
    params = dict(hidden_layer_sizes=(32,), solver="sgd", batch_size=8,
                  max_iter=3, random_state=0)
    alone = [_weights(_quiet(MLPClassifier(**params).fit, X, y)) for X, y in data]
    for _ in range(8):
        est = MLPClassifier(**params)
        errors = _in_threads(*[lambda X=X, y=y: _quiet(est.fit, X, y)
                               for X, y in data])
        assert errors == []
        got = _weights(est)
        which = [i for i, w in enumerate(alone) if len(w) == len(got) and all(
            a.shape == b.shape and np.array_equal(a, b) for a, b in zip(w, got))]
        assert len(which) == 1
        assert est.n_features_in_ == data[which[0]][0].shape[1]
        assert len(est.loss_curve_) == est.n_iter_ == 3


def test_concurrent_partial_fits_lose_no_step():
    """Three threads x 20 partial_fit calls take as many optimizer steps, and
    see as many samples, as 60 calls in a row."""
    X, y = make_classification_data(120, 8, 3)
    params = dict(hidden_layer_sizes=(16,), batch_size=10, random_state=0)
    sequential = MLPClassifier(**params)
    for _ in range(60):
        sequential.partial_fit(X, y, classes=[0, 1, 2])
    shared = MLPClassifier(**params)
    shared.partial_fit(X, y, classes=[0, 1, 2])

    def calls():
        for _ in range(20):
            shared.partial_fit(X, y)

    assert _in_threads(calls, calls, calls) == []
    assert shared._optimizer["step"] == sequential._optimizer["step"] + 12
    assert shared.t_ == sequential.t_ + X.shape[0]
    assert len(shared.loss_curve_) == 61


def test_snapshots_taken_during_a_fit_are_whole_models():
    """Pickles taken while another thread refits on data of another width
    load into models that predict: the old model or the new one."""
    X1, y1 = make_classification_data(200, 10, 3, seed=0)
    X2, y2 = make_classification_data(2000, 30, 3, seed=1)
    est = _quiet(MLPClassifier((16,), max_iter=2, random_state=0).fit, X1, y1)
    old = est.predict_proba(X1)
    est.set_params(max_iter=30, solver="sgd", batch_size=4)
    snapshots, done = [], threading.Event()

    def refit():
        try:
            _quiet(est.fit, X2, y2)
        finally:
            done.set()

    def snapshot():
        while not done.is_set() or not snapshots:
            snapshots.append(pickle.dumps(est))

    assert _in_threads(refit, snapshot) == []
    new = est.predict_proba(X2)
    for data in snapshots:
        loaded = pickle.loads(data)
        if loaded.n_features_in_ == 10:
            np.testing.assert_array_equal(loaded.predict_proba(X1), old)
        else:
            np.testing.assert_array_equal(loaded.predict_proba(X2), new)


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_a_fit_waits_for_the_one_running(method):
    """While one thread is inside a fit (held in a callback-free way: the
    epoch is replaced by one that waits), a second call on the same
    estimator does not enter the engine."""
    from fastbp import _epoch

    X, y = make_classification_data(60, 5, 3)
    est = MLPClassifier((4,), max_iter=1, random_state=0)
    compiled, entered, release = _epoch.run_epoch, threading.Event(), threading.Event()
    inside = []

    def waiting(*args, **kwargs):
        inside.append(threading.get_ident())
        assert len(inside) - len(left) == 1  # never two at once
        entered.set()
        release.wait(10)
        try:
            return compiled(*args, **kwargs)
        finally:
            left.append(threading.get_ident())

    left = []
    _epoch.run_epoch = waiting
    try:
        call = (lambda: _quiet(est.fit, X, y)) if method == "fit" else (
            lambda: est.partial_fit(X, y, classes=[0, 1, 2]))
        first = threading.Thread(target=call)
        first.start()
        assert entered.wait(10)
        second = threading.Thread(target=call)
        second.start()
        second.join(0.2)
        assert len(inside) == 1  # the second waits for the lock
        release.set()
        first.join(10)
        second.join(10)
    finally:
        _epoch.run_epoch = compiled
    assert len(inside) == len(left) == 2

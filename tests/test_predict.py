"""Predict's fast path (plain float ndarrays) agrees with full validation."""

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression

from fastbp import MLPClassifier, MLPRegressor
from fastbp._network import make_plan

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _targets(kind, y):
    if kind == "binary-str":
        return np.array(["no", "yes"])[y % 2]
    if kind == "multiclass":
        return y % 3
    if kind == "multilabel":
        return np.column_stack([y % 2, y // 2 % 2])
    return y


@pytest.mark.parametrize("kind", ["binary-str", "multiclass", "multilabel"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_path_equals_validated_path(kind, dtype):
    X, y = make_classification(120, 6, n_classes=4, n_informative=4,
                               random_state=0)
    X = X.astype(dtype)
    y = _targets(kind, y)
    est = MLPClassifier((7,), max_iter=30, random_state=0).fit(X, y)
    # A list is not a plain ndarray: it goes through validate_data.
    for method in ("predict", "predict_proba"):
        fast = getattr(est, method)(X)
        slow = getattr(est, method)(X.tolist())
        np.testing.assert_array_equal(fast, slow)
        assert fast.dtype == slow.dtype
    # The decoding is LabelBinarizer's (the slow path for every type).
    proba = est.predict_proba(X)
    out = proba[:, 1] if kind == "binary-str" else proba
    np.testing.assert_array_equal(
        est.predict(X), est._label_binarizer.inverse_transform(out)
    )
    # Fortran order and strided views take the fast path too.
    np.testing.assert_array_equal(est.predict(np.asfortranarray(X)), est.predict(X))
    np.testing.assert_array_equal(est.predict(X[::2]), est.predict(X)[::2])


def test_fast_path_regressor_and_single_row():
    X, y = make_regression(50, 4, n_targets=2, random_state=0)
    est = MLPRegressor(hidden_layer_sizes=(5,), max_iter=20, random_state=0)
    est.fit(X, y)
    for i in range(3):
        np.testing.assert_array_equal(est.predict(X[i : i + 1]),
                                      est.predict(X.tolist())[i : i + 1])


def test_fast_path_never_skips_a_check():
    X, y = make_classification(60, 5, random_state=0)
    est = MLPClassifier((4,), max_iter=10, random_state=0).fit(X, y)
    bad = X[:2].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.predict(bad)
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        est.predict(bad)
    with pytest.raises(ValueError, match="5 features"):
        est.predict(X[:, :4])
    with pytest.raises(ValueError, match="minimum of 1 is required"):
        est.predict(X[:0])
    # Finite values whose sum overflows go the slow way: validation passes
    # them, and the network's overflow is reported, never returned as NaN.
    for huge in (np.full((2, 5), 1e308), np.array([[1e308, -1e308] * 2 + [1.0]])):
        try:
            assert np.isfinite(est.predict_proba(huge)).all()
        except ValueError as e:
            assert "output is not finite" in str(e)
    with pytest.warns(UserWarning, match="feature names"):
        pd = pytest.importorskip("pandas")
        named = MLPClassifier((4,), max_iter=5, random_state=0).fit(
            pd.DataFrame(X, columns=list("abcde")), y
        )
        named.predict(X)
    with pytest.raises(ValueError, match="not fitted|NotFitted|fit"):
        MLPClassifier().predict(X)


def test_plans_are_cached_and_read_only():
    a = make_plan([3, 4, 2], "relu", "softmax", "log_loss", 1, False)
    b = make_plan(np.array([3, 4, 2]), "relu", "softmax", "log_loss", 1, False)
    assert a is b
    with pytest.raises(ValueError, match="read-only"):
        a.coef_off[0] = 1


def test_passes_hold_blas_on_one_thread_unless_tiny(monkeypatch):
    # fastbp's own threads split the rows; BLAS stays on one thread inside
    # every pass whose products are not tiny (tiny ones: OpenBLAS stays on
    # one thread by itself, and asking would cost a one-row predict).
    import fastbp._forward as mlp

    calls = []
    real = mlp.blas_one_thread

    def spy():
        calls.append(1)
        return real()

    monkeypatch.setattr(mlp, "blas_one_thread", spy)
    X, y = make_classification(400, 64, random_state=0)
    est = MLPClassifier((100,), max_iter=2, batch_size=200, random_state=0)
    est.fit(X, y)
    assert calls == [1]
    est.predict(X[:1])  # tiny: 1 x 100 x 100
    assert len(calls) == 1
    est.predict(X[:300])
    assert len(calls) == 2
    assert mlp.blas_threads(1, [3, 4, 2]) is not None
    assert len(calls) == 2


def test_plan_views_are_taken_once_and_checks_still_run():
    from fastbp import _epoch

    plan = make_plan([3, 4, 2], "relu", "softmax", "log_loss", 2, False)
    X = np.ones((2, 3))
    params = np.zeros(plan.n_params)
    out = np.empty((2, 2))
    _epoch.forward(plan, X, None, params, np.empty(plan.work_size), out)
    views = plan.__dict__["_views"]
    _epoch.forward(plan, X, None, params, np.empty(plan.work_size), out)
    assert plan.__dict__["_views"] is views
    # Every size is still checked against the buffers of each call.
    with pytest.raises(ValueError, match="workspace"):
        _epoch.forward(plan, X, None, params, np.empty(plan.work_size - 1), out)
    with pytest.raises(ValueError, match="parameter buffer"):
        _epoch.forward(plan, X, None, params[:-1], np.empty(plan.work_size), out)


def _numpy_proba(est, X):
    """Softmax of a relu network, from the attributes as they are now."""
    A = X
    for W, b in zip(est.coefs_[:-1], est.intercepts_[:-1], strict=True):
        A = np.maximum(A @ W + b, 0)
    Z = A @ est.coefs_[-1] + est.intercepts_[-1]
    Z = np.exp(Z - Z.max(1, keepdims=True))
    return Z / Z.sum(1, keepdims=True)


def test_predict_sees_every_edit_of_the_fitted_weights():
    # Predict derives its model and plans once per checked state: an edit
    # of the weights in place, a replaced array or a replaced list must
    # still show in the very next call.
    X, y = make_classification(60, 5, n_classes=3, n_informative=3, random_state=0)
    est = MLPClassifier((6,), max_iter=20, random_state=0).fit(X, y)
    np.testing.assert_allclose(est.predict_proba(X), _numpy_proba(est, X), rtol=1e-12)
    edits = [
        lambda: est.coefs_[0].__imul__(-0.5),               # in place
        lambda: est.intercepts_[0].__iadd__(1.0),           # in place
        lambda: est.coefs_.__setitem__(1, est.coefs_[1] * 2),  # a new array
        lambda: setattr(est, "coefs_", [c + 0.1 for c in est.coefs_]),  # a new list
        lambda: est.coefs_[0].__imul__(3.0),                # in place, on the copy
    ]
    for edit in edits:
        before = est.predict_proba(X)
        edit()
        after = est.predict_proba(X)
        assert not np.allclose(before, after)
        np.testing.assert_allclose(after, _numpy_proba(est, X), rtol=1e-12)


def _hidden_by_hand(est, X):
    """The last hidden layer of a relu network, batch norm by its running
    statistics where fitted with it, from the attributes as they are now."""
    A = X
    for i, (W, b) in enumerate(zip(est.coefs_[:-1], est.intercepts_[:-1],
                                   strict=True)):
        Z = A @ W + b
        if est.batch_norm:
            Z = (Z - est.batch_norm_mean_[i]) / np.sqrt(est.batch_norm_var_[i] + 1e-5)
            Z = est.batch_norm_scale_[i] * Z + est.batch_norm_shift_[i]
        A = np.maximum(Z, 0)
    return A


@pytest.mark.parametrize("batch_norm", [False, True])
def test_transform_reads_the_whole_models_buffers(batch_norm):
    # transform runs the first layers straight on the fitted buffers (a plan
    # with the whole network's offsets): by hand, before and after edits.
    X, y = make_classification(60, 5, n_classes=3, n_informative=3, random_state=0)
    est = MLPClassifier((6, 4), batch_norm=batch_norm, max_iter=20,
                        random_state=0).fit(X, y)
    np.testing.assert_allclose(est.transform(X), _hidden_by_hand(est, X), rtol=1e-12)
    est.coefs_[1] *= -0.7  # in place
    if batch_norm:
        est.batch_norm_shift_[1] += 0.3
        est.batch_norm_mean_[0] -= 0.2
    H = est.transform(X[:1])
    np.testing.assert_allclose(H, _hidden_by_hand(est, X[:1]), rtol=1e-12)
    est.coefs_ = [c * 1.1 for c in est.coefs_]  # replaced: a packed copy
    np.testing.assert_allclose(est.transform(X), _hidden_by_hand(est, X), rtol=1e-12)


def test_transform_follows_a_new_activation():
    # transform's plans are kept per fitted state; activation is part of it.
    X, y = make_classification(60, 5, n_classes=3, n_informative=3, random_state=0)
    est = MLPClassifier((6,), max_iter=20, random_state=0).fit(X, y)
    np.testing.assert_allclose(est.transform(X), _hidden_by_hand(est, X), rtol=1e-12)
    est.set_params(activation="tanh")
    np.testing.assert_allclose(est.transform(X),
                               np.tanh(X @ est.coefs_[0] + est.intercepts_[0]),
                               rtol=1e-12)


def test_fast_path_checks_non_contiguous_input():
    X, y = make_classification(60, 5, random_state=0)
    est = MLPClassifier((4,), max_iter=10, random_state=0).fit(X, y)
    for bad in (np.asfortranarray(X[:3]), X[:6:2]):
        np.testing.assert_array_equal(est.predict(bad), est.predict(bad.tolist()))
        bad = bad.copy(order="K")
        bad[1, 2] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            est.predict(bad)


def test_score_equals_accuracy_score_for_every_label_kind():
    from sklearn.metrics import accuracy_score

    X, y = make_classification(90, 6, n_classes=3, n_informative=4, random_state=0)
    est = MLPClassifier((5,), max_iter=20, random_state=0).fit(X, y)
    w = np.linspace(0.5, 2, len(y))
    for labels in (y, y.astype(np.int32), y.astype(np.uint8), y.tolist(),
                   y.astype(float), (y + 1) % 3):
        assert est.score(X, labels) == accuracy_score(labels, est.predict(X))
        assert est.score(X, labels, sample_weight=w) == accuracy_score(
            labels, est.predict(X), sample_weight=w)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.score(X, y[:-1])
    with pytest.raises(ValueError, match="mix of"):
        est.score(X, y + 0.5)
    named = MLPClassifier((5,), max_iter=20, random_state=0).fit(
        X, np.array(["a", "b", "c"])[y])
    assert named.score(X, np.array(["a", "b", "c"])[y]) == accuracy_score(
        np.array(["a", "b", "c"])[y], named.predict(X))


def test_blas_is_held_only_where_openblas_could_thread(monkeypatch):
    # The largest product rows x fan_in x fan_out against OpenBLAS's gemm
    # threshold; a one-row pass through gemv (2^15 or more) is held always.
    import fastbp._forward as fwd

    calls = []
    real = fwd.blas_one_thread
    monkeypatch.setattr(fwd, "blas_one_thread", lambda: calls.append(1) or real())
    X, y = make_classification(40, 64, random_state=0)
    est = MLPClassifier((100,), max_iter=2, random_state=0).fit(X, y)
    calls.clear()
    est.predict(X[:10])  # 10 x 64 x 100 = 64000 < 2^16
    assert calls == []
    est.predict(X[:11])
    assert calls == [1]
    fwd.blas_threads(1, [256, 127, 2])  # 32512: gemm, one thread by itself
    assert calls == [1]
    fwd.blas_threads(1, [256, 128, 2])  # 32768: gemv
    assert calls == [1, 1]


def test_regressor_score_equals_r2_score():
    from sklearn.metrics import r2_score

    X, y = make_regression(80, 5, noise=5, random_state=0)
    for dtype in (np.float64, np.float32):
        est = MLPRegressor(hidden_layer_sizes=(6,), max_iter=30,
                           random_state=0).fit(X.astype(dtype), y)
        Xd = X.astype(dtype)
        pred = est.predict(Xd)
        for target in (y, y.astype(np.float32), y[::-1].copy(), y.tolist(),
                       np.full_like(y, 3.0), pred.astype(np.float64), y[:2].copy()):
            n = len(target)
            with_weights = np.linspace(0.5, 2, n)
            assert est.score(Xd[:n], target) == r2_score(target, est.predict(Xd[:n]))
            assert est.score(Xd[:n], target, sample_weight=with_weights) == r2_score(
                target, est.predict(Xd[:n]), sample_weight=with_weights)
    bad = y.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.score(Xd, bad)
    with pytest.warns(UserWarning, match="less than two samples"):
        assert np.isnan(est.score(Xd[:1], y[:1]))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.score(Xd, y[:-1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_plans_by_powers_of_two_give_the_same_bits(dtype):
    # predict takes a plan for the next power of two of its rows (varying
    # batch sizes share plans); the passes depend on the rows alone.
    from fastbp import _epoch

    X, y = make_classification(800, 20, n_classes=3, n_informative=5, random_state=0)
    X = X.astype(dtype)
    est = MLPClassifier((33, 17), max_iter=5, random_state=0).fit(X, y)
    model, net = est._fitted_model(), est._network()
    for n in (1, 3, 5, 100, 700):
        plan = net.plan(model.units, n, batch_norm=False)
        out = np.empty((n, 3), dtype)
        _epoch.forward(plan, X[:n], None, model.flat,
                       np.empty(plan.work_size, dtype), out, None, 1)
        np.testing.assert_array_equal(est.predict_proba(X[:n]), out)


@pytest.mark.parametrize("module", ["_epoch", "_reference"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_a_bound_pass_equals_forward_bit_for_bit(dtype, module, batch_norm):
    # Pass(plan, params, running)(X) is its module's forward on one thread,
    # for any row count: none, within one block, over several blocks.
    import importlib

    engine = importlib.import_module(f"fastbp.{module}")
    rng = np.random.RandomState(0)
    units = [9, 13, 6, 3]
    plan = make_plan(units, "tanh", "softmax", "log_loss", 16, False,
                     batch_norm=batch_norm)
    params = rng.uniform(-1, 1, plan.n_params).astype(dtype)
    running = (rng.uniform(0.5, 1.5, plan.n_running).astype(dtype)
               if batch_norm else None)
    bound = engine.Pass(plan, params, running)
    for n in (0, 1, 5, 16, 41):
        X = rng.randn(n, units[0]).astype(dtype)
        for n_threads in (1, 2) if n == 0 else (1,):  # 0 rows divided by 0
            out = np.full((n, units[-1]), np.nan, dtype)
            engine.forward(plan, X, None, params, np.empty(plan.work_size, dtype),
                           out, running, n_threads)
        got = bound(X)
        assert got.dtype == dtype and got.shape == out.shape
        np.testing.assert_array_equal(got, out)
    params[:] = 0  # bound to the buffer: an edit in place shows
    np.testing.assert_allclose(bound(X), 1 / units[-1], rtol=1e-6)


def test_a_bound_pass_checks_what_it_is_given():
    from fastbp import _epoch

    plan = make_plan([3, 4, 2], "relu", "softmax", "log_loss", 4, False)
    params = np.zeros(plan.n_params)
    with pytest.raises(ValueError, match="parameter buffer"):
        _epoch.Pass(plan, params[:-1])
    bound = _epoch.Pass(plan, params)
    with pytest.raises(ValueError, match="features"):
        bound(np.ones((2, 4)))
    with pytest.raises(ValueError, match="contiguous"):
        bound(np.ones((3, 2)).T)
    with pytest.raises(ValueError, match="Buffer dtype mismatch"):
        bound(np.ones((2, 3), np.float32))
    bn = make_plan([3, 4, 2], "relu", "softmax", "log_loss", 4, False,
                   batch_norm=True)
    with pytest.raises(ValueError, match="running statistics"):
        _epoch.Pass(bn, np.zeros(bn.n_params))


def test_bound_passes_are_kept_by_row_count_apart_for_transform():
    # predict_proba and transform of the same row count each keep their
    # own bound pass with the fitted state; a second call of a size reuses
    # it and gives the first call's bits.
    X, y = make_classification(60, 5, n_classes=3, n_informative=3, random_state=0)
    est = MLPClassifier((6, 4), max_iter=20, random_state=0).fit(X, y)
    first = est.predict_proba(X[:7])
    features = est.transform(X[:7])
    assert features.shape == (7, 4) and first.shape == (7, 3)
    np.testing.assert_array_equal(est.predict_proba(X[:7]), first)
    np.testing.assert_array_equal(est.transform(X[:7]), features)
    np.testing.assert_allclose(features, _hidden_by_hand(est, X[:7]), rtol=1e-12)
    np.testing.assert_allclose(first, _numpy_proba(est, X[:7]), rtol=1e-12)


def test_each_row_count_of_a_server_keeps_its_bound_pass(monkeypatch):
    # Batch sizes 1 to 100 in turn, twice: the second round binds nothing
    # new (a cache of 64 sizes was rebuilt on every call of such a cycle).
    from fastbp._backend import Backend

    X, y = make_classification(200, 8, n_classes=3, n_informative=4, random_state=0)
    est = MLPClassifier((16,), max_iter=5, random_state=0).fit(X, y)
    bound = []
    real = Backend.forward_pass
    monkeypatch.setattr(Backend, "forward_pass",
                        lambda self, *a: bound.append(1) or real(self, *a))
    first = [est.predict_proba(X[:n]) for n in range(1, 101)]
    assert len(bound) == 100
    for n, before in zip(range(1, 101), first):
        np.testing.assert_array_equal(est.predict_proba(X[:n]), before)
    assert len(bound) == 100

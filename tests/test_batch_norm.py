"""Batch normalization on hidden layers: kernels, epoch and estimators.

Oracles: the NumPy twin, central differences of the full-batch loss, and
running statistics and predictions computed by hand.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose

from fastbp import _epoch, _kernels, _reference
from fastbp._network import bn_sizes, bn_views, glorot_init, make_plan
from fastbp._settings import Settings

UNITS = [5, 7, 6, 3]
ATOL = {np.float32: 2e-5, np.float64: 1e-12}


def _problem(dtype, rows, n_samples=40, act="tanh", seed=0, sparse=False,
             sw=False):
    rng = np.random.RandomState(seed)
    plan = make_plan(UNITS, act, "softmax", "log_loss", rows, not sparse,
                     batch_norm=True)
    n_bn, n_running = bn_sizes(UNITS, True)
    params = np.concatenate([glorot_init(UNITS, act, rng, np.float64),
                             rng.uniform(0.5, 1.5, n_bn)]).astype(dtype)
    assert params.size == plan.n_params and n_running == plan.n_running
    X = rng.randn(n_samples, UNITS[0]) * 2 + 1
    csr = None
    if sparse:
        X[rng.rand(*X.shape) < 0.5] = 0
        m = sp.csr_matrix(X.astype(dtype))
        csr = (m.data, m.indices.astype(np.intp), m.indptr.astype(np.intp))
        X = np.empty((0, UNITS[0]))
    Y = np.eye(3)[rng.randint(3, size=n_samples)]
    weights = rng.uniform(0.5, 2, n_samples).astype(dtype) if sw else None
    return plan, params, X.astype(dtype), csr, Y.astype(dtype), weights


def _running(dtype):
    # Start from non-trivial statistics so the momentum shows.
    rng = np.random.RandomState(5)
    parts = []
    for m in UNITS[1:-1]:
        parts += [rng.randn(m) * 0.1, rng.uniform(0.5, 2, m)]
    return np.concatenate(parts).astype(dtype)


def test_kernels_equal_twin(dtype):
    rng = np.random.RandomState(0)
    Z = rng.randn(9, 4).astype(dtype)
    b, gamma = rng.randn(4).astype(dtype), rng.randn(4).astype(dtype)
    running = np.concatenate([rng.randn(4), rng.uniform(1, 2, 4)]).astype(dtype)
    dY = rng.randn(9, 4).astype(dtype)
    for batch in (True, False):
        outs = []
        for mod in (_kernels, _reference):
            z, r = Z.copy(), running.copy()
            zhat, stats = np.empty_like(Z), np.empty(12, dtype)
            mod.bn_forward(z, b, gamma, zhat, stats, r, batch)
            delta = dY.copy()
            gg, gb = np.empty(4, dtype), np.empty(4, dtype)
            if batch:
                mod.bn_backward(delta, zhat, stats, gamma, 3.0, gg, gb)
            outs.append((z, r, zhat, stats, delta, gg, gb) if batch
                        else (z, r, zhat, stats))
        for got, want in zip(*outs, strict=True):
            assert_allclose(got, want, rtol=1e-5, atol=ATOL[dtype] * 10)


def test_forward_kernel_by_hand():
    Z = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]])
    b, gamma = np.array([1.0, -1.0]), np.array([2.0, 0.5])
    running = np.array([0.0, 1.0, 1.0, 4.0])
    zhat, stats = np.empty_like(Z), np.empty(6)
    z = Z.copy()
    _kernels.bn_forward(z, b, gamma, zhat, stats, running, True)
    var = np.array([8 / 3, 32 / 3])  # biased, of columns (2, 4, 6), (1, 5, 9)
    want = (Z - Z.mean(axis=0)) / np.sqrt(var + 1e-5)
    assert_allclose(zhat, want, rtol=1e-14)
    assert_allclose(z, gamma * want, rtol=1e-14)
    # running = 0.9 running + 0.1 batch, the variance unbiased (n - 1 = 2).
    assert_allclose(running, [0.1 * 4, 0.9 + 0.1 * 5, 0.9 + 0.1 * 4,
                              3.6 + 0.1 * 16], rtol=1e-14)
    z = Z.copy()
    _kernels.bn_forward(z, b, gamma, zhat, stats, running, False)
    assert_allclose(z, gamma * (Z + b - running[:2]) / np.sqrt(running[2:] + 1e-5),
                    rtol=1e-14)


def _epochs(mod, plan, params, X, csr, Y, sw, running, orders, solver="adam"):
    from fastbp._optimizers import SOLVERS, STATE_ARRAYS

    params, running = params.copy(), running.copy()
    state = np.zeros(STATE_ARRAYS[solver] * params.size, params.dtype)
    grad, work = np.empty_like(params), np.zeros(plan.work_size, params.dtype)
    step, losses = 0, []
    for order in orders:
        settings = Settings(SOLVERS[solver], 0.01, 0.9, True, 0.9, 0.999, 1e-8,
                            alpha=1e-3, l1=1e-3)
        loss, step = mod.run_epoch(
            plan, settings, X, csr, Y, sw, order, plan.max_rows, params, grad, work,
            state, step, running=running,
        )
        losses.append(loss)
    return losses, params, running


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("act", ["tanh", "relu", "gelu"])
def test_run_epoch_forward_loss_grad_equal_twin(dtype, act, sparse):
    plan, params, X, csr, Y, sw = _problem(dtype, 16, act=act, sparse=sparse,
                                           sw=True)
    rng = np.random.RandomState(3)
    orders = [None if sparse else rng.permutation(40).astype(np.intp)
              for _ in range(3)]
    # Adam's m / sqrt(v) turns float32 rounding in near-zero gradients (of
    # dead ReLU units) into whole steps: compare float32 on SGD.
    solver = "adam" if dtype == np.float64 else "sgd"
    got = _epochs(_epoch, plan, params, X, csr, Y, sw, _running(dtype), orders,
                  solver)
    want = _epochs(_reference, plan, params, X, csr, Y, sw, _running(dtype),
                   orders, solver)
    assert_allclose(got[0], want[0], rtol=1e-4 if dtype == np.float32 else 1e-10)
    for g, w in zip(got[1:], want[1:], strict=True):
        assert_allclose(g, w, rtol=1e-4, atol=ATOL[dtype] * 50)
    params, running = got[1], got[2]
    full = make_plan(UNITS, act, "softmax", "log_loss", 40, False,
                     batch_norm=True)
    outs = []
    for mod in (_epoch, _reference):
        out = np.empty((40, 3), dtype)
        mod.forward(plan, X, csr, params, np.zeros(plan.work_size, dtype), out,
                    running=running)
        grad = np.empty_like(params)
        loss = mod.loss_grad(full, X, csr, Y, sw, params, grad,
                             np.zeros(full.work_size, dtype), 1e-3, 1e-3)
        outs.append((out, grad, loss))
    for g, w in zip(*outs, strict=True):
        assert_allclose(g, w, rtol=1e-4, atol=ATOL[dtype] * 10)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_loss_grad_running_is_the_batch_statistics(dtype, sparse):
    # loss_grad's running output: the whole batch's mean and unbiased
    # variance of every normalized layer, by hand for the first layer (its
    # pre-activation is X W + b), equal to the twin for all, and the
    # gradient the same with or without it.
    _, params, X, csr, Y, _ = _problem(dtype, 40, sparse=sparse)
    full = make_plan(UNITS, "tanh", "softmax", "log_loss", 40, False,
                     batch_norm=True)
    outs = []
    for mod in (_epoch, _reference):
        grad, plain = np.empty_like(params), np.empty_like(params)
        running = np.full(full.n_running, np.nan, dtype)
        work = np.zeros(full.work_size, dtype)
        loss = mod.loss_grad(full, X, csr, Y, None, params, grad, work, 1e-3,
                             running=running)
        assert mod.loss_grad(full, X, csr, Y, None, params, plain, work,
                             1e-3) == loss
        assert_allclose(grad, plain, rtol=0, atol=0)
        outs.append(running)
    assert np.isfinite(outs[0]).all()
    assert_allclose(outs[0], outs[1], rtol=1e-4 if dtype == np.float32 else 1e-12)
    dense = X if csr is None else sp.csr_matrix((*csr,), shape=(40, UNITS[0])).toarray()
    W = params[: UNITS[0] * UNITS[1]].reshape(UNITS[0], UNITS[1]).astype(np.float64)
    Z = dense.astype(np.float64) @ W  # + b: shifts the mean, not the variance
    at, m = full.run_off[0], UNITS[1]
    assert_allclose(outs[0][at + m : at + 2 * m], Z.var(axis=0, ddof=1),
                    rtol=1e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("act", ["tanh", "logistic", "gelu", "softplus"])
@pytest.mark.parametrize("sw", [False, True], ids=["unweighted", "weighted"])
def test_gradient_matches_central_differences(act, sw):
    plan, params, X, csr, Y, weights = _problem(np.float64, 12, n_samples=12,
                                                act=act, sw=sw)
    work = np.empty(plan.work_size)

    def loss_grad(p):
        grad = np.empty_like(p)
        return _epoch.loss_grad(plan, X, None, Y, weights, p, grad, work, 0.05,
                                0.0), grad

    _, grad = loss_grad(params.copy())
    h = 1e-6
    numeric = np.empty_like(grad)
    for i in range(grad.size):
        plus, minus = params.copy(), params.copy()
        plus[i] += h
        minus[i] -= h
        numeric[i] = (loss_grad(plus)[0] - loss_grad(minus)[0]) / (2 * h)
    assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
    # The scale and shift do get gradients; normalized intercepts exactly 0.
    assert np.abs(grad[plan.n_params - bn_sizes(UNITS, True)[0]:]).max() > 1e-4
    bias0 = plan.bias_off[0]
    assert not grad[bias0 : bias0 + UNITS[1]].any()


def test_running_statistics_by_hand():
    plan, params, X, csr, Y, sw = _problem(np.float64, 16)
    running0 = _running(np.float64)
    _, trained, running = _epochs(_epoch, plan, params, X, None, Y, None,
                                  running0, [None], solver="sgd")
    # Replay the epoch's three minibatches (16, 16, 8 rows): the first
    # layer's statistics only need the weights before each step.
    mean, var = running0[:7].copy(), running0[7:14].copy()
    p = params.copy()
    from fastbp import _optimizers

    state = np.zeros_like(p)
    grad = np.empty_like(p)
    for start in range(0, 40, 16):
        rows = slice(start, start + 16)
        W, b = p[:35].reshape(5, 7), p[plan.bias_off[0] : plan.bias_off[0] + 7]
        Z = X[rows] @ W + b
        n = len(Z)
        mean = 0.9 * mean + 0.1 * Z.mean(axis=0)
        var = 0.9 * var + 0.1 * Z.var(axis=0) * n / (n - 1)
        one = make_plan(UNITS, "tanh", "softmax", "log_loss", n, False,
                        batch_norm=True)
        _epoch.loss_grad(one, X[rows], None, Y[rows], None, p, grad,
                         np.zeros(one.work_size), 1e-3, 1e-3)
        _optimizers.step(Settings(_optimizers.SOLVERS["sgd"], 0.01, 0.9, True), p,
                         grad, state, 0)
    assert_allclose(running[:7], mean, rtol=1e-12)
    assert_allclose(running[7:14], var, rtol=1e-12)
    assert_allclose(trained, p, rtol=1e-12)


def test_forward_uses_running_statistics_by_hand(dtype):
    plan, params, X, csr, Y, sw = _problem(dtype, 8)
    running = _running(dtype)
    out = np.empty((40, 3), dtype)
    _epoch.forward(plan, X, None, params, np.zeros(plan.work_size, dtype), out,
                   running=running)
    (g1, s1), (g2, s2), _ = bn_views(params, None, plan)[0]
    _, (m1, v1), (m2, v2), _ = [None] + bn_views(params, running, plan)[1][:2] + [None]
    A = X.astype(np.float64)
    for i, (g, s, m, v) in enumerate([(g1, s1, m1, v1), (g2, s2, m2, v2)]):
        off, fan_in, fan_out = plan.coef_off[i], UNITS[i], UNITS[i + 1]
        W = params[off : off + fan_in * fan_out].reshape(fan_in, fan_out)
        b = params[plan.bias_off[i] : plan.bias_off[i] + fan_out]
        A = np.tanh(g * (A @ W + b - m) / np.sqrt(v + 1e-5) + s)
    W = params[plan.coef_off[2] : plan.coef_off[2] + 18].reshape(6, 3)
    Z = A @ W + params[plan.bias_off[2] : plan.bias_off[2] + 3]
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    assert_allclose(out, P / P.sum(axis=1, keepdims=True),
                    rtol=1e-4 if dtype == np.float32 else 1e-12)
    # Predictions do not depend on which rows are predicted together.
    one = np.empty((1, 3), dtype)
    _epoch.forward(plan, X[3:4], None, params, np.zeros(plan.work_size, dtype),
                   one, running=running)
    assert_allclose(one, out[3:4], rtol=1e-5)


def test_plan_checks():
    plan, params, X, csr, Y, sw = _problem(np.float64, 8)
    out = np.empty((40, 3))
    with pytest.raises(ValueError, match="running statistics"):
        _epoch.forward(plan, X, None, params, np.zeros(plan.work_size), out)
    with pytest.raises(ValueError, match="running"):
        _epoch.forward(plan, X, None, params, np.zeros(plan.work_size), out,
                       running=np.zeros(3))
    with pytest.raises(ValueError, match="parameter buffer"):
        _epoch.forward(plan, X, None, params[:-2], np.zeros(plan.work_size), out,
                       running=_running(np.float64))
    plain = make_plan(UNITS, "tanh", "softmax", "log_loss", 8, True)
    assert plain.n_running == 0 and (plain.bn_off == -1).all()
    assert plan.n_params == plain.n_params + 2 * (7 + 6)


# ---------------------------------------------------------------------------
# The estimators.

import pickle  # noqa: E402
import warnings  # noqa: E402

from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from fastbp import MLPClassifier, MLPRegressor, check_gradients  # noqa: E402


@pytest.fixture(autouse=False)
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _data(n=120, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 4) * [1, 10, 0.1, 3] + [0, 5, -1, 0]
    y = (X[:, 0] + X[:, 1] / 10 > 0.5).astype(int)
    return X, y


def _hidden_by_hand(est, X, layers=None):
    """Hidden activations from the fitted attributes, running statistics."""
    A = np.asarray(X, dtype=np.float64)
    n_hidden = len(est.coefs_) - 1
    for i in range(n_hidden if layers is None else layers):
        Z = A @ est.coefs_[i] + est.intercepts_[i]
        Z = (Z - est.batch_norm_mean_[i]) / np.sqrt(est.batch_norm_var_[i] + 1e-5)
        A = np.tanh(est.batch_norm_scale_[i] * Z + est.batch_norm_shift_[i])
    return A


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_fit_trains_and_predict_uses_running_statistics(solver):
    X, y = _data()
    clf = MLPClassifier((8, 5), activation="tanh", solver=solver, batch_norm=True,
                        max_iter=60, random_state=0, batch_size=32).fit(X, y)
    if solver != "lbfgs":
        assert clf.loss_curve_[-1] < 0.7 * clf.loss_curve_[0]
    assert clf.score(X, y) > 0.9
    assert [g.shape for g in clf.batch_norm_scale_] == [(8,), (5,)]
    assert [v.shape for v in clf.batch_norm_var_] == [(8,), (5,)]
    # The scale and shift were trained; the intercepts stayed where they began.
    assert not np.allclose(clf.batch_norm_scale_[0], 1)
    init = MLPClassifier((8, 5), activation="tanh", solver=solver,
                         batch_norm=True, max_iter=1, random_state=0,
                         batch_size=32).fit(X, y)
    if solver != "lbfgs":
        assert_allclose(clf.intercepts_[0], init.intercepts_[0])
    A = _hidden_by_hand(clf, X)
    Z = A @ clf.coefs_[2] + clf.intercepts_[2]
    assert_allclose(clf.predict_proba(X)[:, 1], 1 / (1 + np.exp(-Z[:, 0])),
                    rtol=1e-10)
    assert_allclose(clf.transform(X), A, rtol=1e-10)
    # One row at a time: predictions do not depend on the other rows.
    assert_allclose(clf.predict_proba(X[:1]), clf.predict_proba(X)[:1])


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_lbfgs_running_statistics_are_the_data_statistics(backend):
    X, y = _data()
    clf = MLPClassifier((6,), activation="tanh", solver="lbfgs", batch_norm=True,
                        max_iter=30, random_state=0, backend=backend).fit(X, y)
    Z = X @ clf.coefs_[0] + clf.intercepts_[0]
    assert_allclose(clf.batch_norm_mean_[0], Z.mean(axis=0), rtol=1e-10)
    assert_allclose(clf.batch_norm_var_[0], Z.var(axis=0, ddof=1), rtol=1e-10)


@pytest.mark.usefixtures("quiet")
def test_running_statistics_after_one_epoch_by_hand():
    # One epoch of sgd with lr ~ 0: the first layer's weights barely move, so
    # its running statistics follow the momentum-0.1 recursion over batches.
    X, y = _data(n=50)
    clf = MLPClassifier((3,), solver="sgd", learning_rate_init=1e-12,
                        batch_norm=True, batch_size=20, shuffle=False,
                        max_iter=1, random_state=0).fit(X, y)
    mean, var = np.zeros(3), np.ones(3)
    for start in (0, 20, 40):
        Z = X[start : start + 20] @ clf.coefs_[0] + clf.intercepts_[0]
        mean = 0.9 * mean + 0.1 * Z.mean(axis=0)
        var = 0.9 * var + 0.1 * Z.var(axis=0, ddof=1)
    assert_allclose(clf.batch_norm_mean_[0], mean, rtol=1e-8)
    assert_allclose(clf.batch_norm_var_[0], var, rtol=1e-8)


@pytest.mark.usefixtures("quiet")
def test_backends_agree_and_default_has_no_batch_norm(dtype):
    X, y = _data()
    X = X.astype(dtype)
    fits = [MLPRegressor(hidden_layer_sizes=(7, 4), batch_norm=True, backend=b,
                         max_iter=5, random_state=1, early_stopping=True,
                         learning_rate_init=0.01).fit(X, X[:, 0])
            for b in ("cython", "numpy")]
    for name in ("coefs_", "intercepts_", "batch_norm_scale_",
                 "batch_norm_shift_", "batch_norm_mean_", "batch_norm_var_"):
        for a, b in zip(getattr(fits[0], name), getattr(fits[1], name),
                        strict=True):
            assert a.dtype == dtype
            assert_allclose(a, b, rtol=1e-3 if dtype == np.float32 else 1e-9,
                            atol=1e-4 if dtype == np.float32 else 1e-12)
    plain = MLPRegressor(hidden_layer_sizes=(7,), max_iter=3).fit(X, X[:, 0])
    assert plain.batch_norm_scale_ is None and plain.batch_norm_mean_ is None


@pytest.mark.usefixtures("quiet")
def test_partial_fit_warm_start_and_pickle():
    X, y = _data()
    clf = MLPClassifier((6,), batch_norm=True, random_state=0)
    clf.partial_fit(X, y, classes=[0, 1])
    mean = clf.batch_norm_mean_[0].copy()
    scale = clf.batch_norm_scale_[0].copy()
    clf.partial_fit(X, y)
    assert not np.allclose(mean, clf.batch_norm_mean_[0])
    assert not np.allclose(scale, clf.batch_norm_scale_[0])
    # The attributes stay views of the buffers the engine updates.
    assert clf.batch_norm_scale_[0].base is clf._fitted_model().flat
    restored = pickle.loads(pickle.dumps(clf))
    assert_allclose(restored.predict_proba(X), clf.predict_proba(X))
    restored.partial_fit(X, y)
    clf.partial_fit(X, y)
    assert_allclose(restored.predict_proba(X), clf.predict_proba(X))
    assert_allclose(restored.batch_norm_var_[0], clf.batch_norm_var_[0])
    # warm_start continues from the fitted statistics and parameters.
    warm = MLPClassifier((6,), batch_norm=True, warm_start=True, max_iter=3,
                         random_state=0).fit(X, y)
    before = warm.batch_norm_mean_[0].copy()
    warm.fit(X, y)
    after_one = MLPClassifier((6,), batch_norm=True, max_iter=6,
                              random_state=0).fit(X, y)
    assert not np.allclose(before, warm.batch_norm_mean_[0])
    assert warm.n_iter_ == 3 and after_one.n_iter_ == 6
    warm.set_params(batch_norm=False)
    with pytest.raises(ValueError, match="batch_norm"):
        warm.fit(X, y)


@pytest.mark.usefixtures("quiet")
def test_refusals_and_parameter_check():
    X, y = _data()
    with pytest.raises(ValueError, match="batch_norm"):
        MLPClassifier((4,), batch_norm="yes").fit(X, y)
    with pytest.raises(ValueError, match="newton"):
        MLPClassifier((4,), solver="newton", batch_norm=True).fit(X, y)
    clf = MLPClassifier((4,), batch_norm=True, max_iter=3).fit(X, y)
    for call in (lambda: clf.loss_gradient(X, y), lambda: clf.jacobian(X),
                 lambda: clf.hessian(X, y), lambda: check_gradients(clf, X, y)):
        with pytest.raises(ValueError, match="batch_norm"):
            call()


def test_parameter_is_last_in_both_estimators():
    for cls in (MLPClassifier, MLPRegressor):
        names = list(cls().get_params())
        import inspect

        params = list(inspect.signature(cls).parameters)
        assert params[-1] == "batch_norm" and "batch_norm" in names
        assert cls().batch_norm is False


@pytest.mark.usefixtures("quiet")
def test_onnx_export_folds_batch_norm():
    rt = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import fastbp

    X, y = _data()
    clf = MLPClassifier((8, 5), activation="tanh", batch_norm=True, max_iter=20,
                        random_state=0).fit(X, y)
    model = fastbp.to_onnx(clf, dtype=np.float64)
    session = rt.InferenceSession(model.SerializeToString(),
                                  providers=["CPUExecutionProvider"])
    label, proba = session.run(None, {"X": X})
    assert_allclose(proba, clf.predict_proba(X), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(label, clf.predict(X))


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_with_dropout_equals_twin(sparse):
    # Batch norm, then the activation, then dropout.
    rng = np.random.RandomState(0)
    plan = make_plan(UNITS, "relu", "softmax", "log_loss", 16, not sparse,
                     dropout=[0.3, 0.2], batch_norm=True)
    _, params, X, csr, Y, sw = _problem(np.float64, 16, act="relu",
                                        sparse=sparse)
    orders = [None if sparse else rng.permutation(40).astype(np.intp)
              for _ in range(2)]
    outs = []
    for mod in (_epoch, _reference):
        p, running = params.copy(), _running(np.float64)
        state, grad = np.zeros(2 * p.size), np.empty_like(p)
        work = np.zeros(plan.work_size)
        for k, order in enumerate(orders):
            settings = Settings(1, 0.01, 0.9, True, 0.9, 0.999, 1e-8, alpha=1e-3)
            mod.run_epoch(plan, settings, X, csr, Y, sw, order, 16, p, grad, work,
                          state, k, seed=k + 7, running=running)
        outs.append((p, running))
    for g, w in zip(*outs, strict=True):
        assert_allclose(g, w, rtol=1e-9, atol=1e-12)


@pytest.mark.usefixtures("quiet")
def test_no_hidden_layer_and_one_row_batches():
    X, y = _data(n=41)
    # No hidden layer: nothing to normalize, empty lists.
    clf = MLPClassifier((), batch_norm=True, max_iter=3, random_state=0).fit(X, y)
    assert clf.batch_norm_scale_ == [] and clf.batch_norm_mean_ == []
    plain = MLPClassifier((), max_iter=3, random_state=0).fit(X, y)
    assert_allclose(clf.predict_proba(X), plain.predict_proba(X))
    # 41 rows in batches of 20: the last one-row batch leaves the running
    # variance; predictions stay finite.
    clf = MLPClassifier((5,), batch_norm=True, batch_size=20, shuffle=False,
                        max_iter=2, random_state=0).fit(X, y)
    assert np.isfinite(clf.predict_proba(X)).all()
    one = MLPClassifier((5,), batch_norm=True, batch_size=1, max_iter=2,
                        random_state=0).fit(X[:5], y[:5])
    assert_allclose(one.batch_norm_var_[0], 1)  # never updated


@pytest.mark.usefixtures("quiet")
def test_best_weights_restore_the_running_statistics_too():
    X, _ = _data(n=200)
    y = X[:, 0] + np.sin(X[:, 3])
    reg = MLPRegressor(hidden_layer_sizes=(16,), batch_norm=True,
                       early_stopping=True, n_iter_no_change=3, max_iter=60,
                       learning_rate_init=0.05, random_state=0, batch_size=16)
    reg.fit(X[:150], y[:150], X_val=X[150:], y_val=y[150:])
    assert reg.validation_scores_[-1] < reg.best_validation_score_
    # The restored model scores what it scored at its best epoch.
    assert reg.score(X[150:], y[150:]) == pytest.approx(
        reg.best_validation_score_, rel=1e-12)

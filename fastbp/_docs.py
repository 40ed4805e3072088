"""Docstring fragments the two estimators share (numpydoc sections), and
the regressor's losses. Each solver's, activation's and loss's entry and
formula come from its row in ``fastbp._families``."""
import textwrap

from fastbp._families import (
    ACTIVATION, HIDDEN_ACTIVATIONS, LOSSES, SKLEARN_ACTIVATIONS, SKLEARN_LOSSES,
    SOLVERS, solvers_reading,
)


def _names(names):
    """'a', 'b' and 'c'."""
    names = [f"'{name}'" for name in names]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _users(field):
    """The solvers whose rule reads a Settings field."""
    return _names(solvers_reading(field))


def _activation_doc():
    """The activation parameter's description, from the activation table."""
    def listed(rows):
        return ", ".join(f"'{a.name}' {a.formula}" for a in rows)

    hidden = [ACTIVATION[name] for name in HIDDEN_ACTIVATIONS]
    ours = [a for a in hidden if a.name not in SKLEARN_ACTIVATIONS]
    return _para(
        "Activation function for the hidden layers: "
        f"{listed(a for a in hidden if a.name in SKLEARN_ACTIVATIONS)} "
        f"(scikit-learn's), and beyond scikit-learn: {listed(ours)}. A list "
        "or tuple gives one name per hidden layer (its length must be "
        "len(hidden_layer_sizes)); Glorot initialisation then uses each "
        "layer's own activation, and the output layer the last hidden "
        "layer's.")


def _ignoring():
    """The solvers scikit-learn's invscaling and adaptive leave alone."""
    names = [f"solver='{s.name}'" for s in SOLVERS if not s.follows_schedule]
    return " and ".join(names)


def _fill(text, indent, hanging):
    """text filled to the docstrings' width. No line starts with a binary
    minus or plus ("(1\n- beta_1)"): reST would read a bullet there."""
    glued = text.replace(" - ", "\0-\0").replace(" + ", "\0+\0")
    return textwrap.fill(glued, width=76, initial_indent=" " * indent,
                         subsequent_indent=" " * hanging,
                         break_on_hyphens=False).replace("\0", " ")


def _para(text):
    """A parameter's description: text filled at the docstring's indent."""
    return _fill(text, 8, 8)


def _solver_doc():
    """The solver parameter's entry: the full-batch ones, then one item per
    row of the table, with its source and formula."""
    names = ", ".join(f"'{n}'" for n in ("lbfgs", *(s.name for s in SOLVERS), "newton"))
    items = "\n".join(
        _fill(f"- '{s.name}' ({s.source}): {s.formula}.", 8, 10)
        for s in SOLVERS)
    return f"""    solver : {{{names}}}, default='adam'
        The solver for weight optimization. On the full batch: 'lbfgs'
        (scipy's L-BFGS-B), as in scikit-learn, and 'newton' (not in
        scikit-learn): scipy's trust-region Newton-CG, 'trust-ncg', with exact
        Hessian-vector products. Stochastic and compiled, with g the
        minibatch gradient, w the weights and intercepts, lr the epoch's
        learning rate and t the step count ('sgd' and 'adam' are
        scikit-learn's, the others not in its MLP):

{items}
"""

def _loss_doc():
    """MLPRegressor's loss parameter: one item per regression row of the
    loss table."""
    rows = [loss for loss in LOSSES if loss.regressor]
    names = ", ".join(f"'{loss.name}'" for loss in rows)
    items = "\n".join(
        _fill(f"- '{loss.name}': {loss.formula};", 8, 10)
        for loss in rows)[:-1] + "."
    others = [loss.name for loss in rows if loss.name not in SKLEARN_LOSSES]
    flat = [loss.name for loss in rows if not loss.has_curvature]
    return f"""    loss : {{{names}}}, default='squared_error'
        The loss, with HistGradientBoostingRegressor's names; e = p - y for a
        prediction p and a target y, each sample's loss summed over outputs
        (squared error's ``loss_`` averages over outputs, as scikit-learn's;
        its gradient is that of the sum), then the sample-weighted mean.
        Every formula and scaling is scikit-learn's ``sklearn._loss`` one,
        tested against it:

{items}

""" + _para(f"Not in scikit-learn's MLP: {_names(others)}. solver='newton' "
            f"refuses {_names(flat)} (zero curvature almost everywhere).") + "\n"


REGRESSION_LOSS = _loss_doc()

LOSS_PARAMETERS = """
    huber_delta : float > 0 or None, default=None
        With loss='huber', where the loss turns from quadratic to linear, in
        the units of y; None means 1.0. Setting it with another loss is an
        error. Not in scikit-learn.

    quantile : float in (0, 1) or None, default=None
        With loss='quantile', the quantile to predict (as
        HistGradientBoostingRegressor's); required by that loss, an error
        with any other. Not in scikit-learn.
"""

PARAMETERS = """
    hidden_layer_sizes : array-like of shape(n_layers - 2,), default=(100,)
        The ith element represents the number of neurons in the ith
        hidden layer.

    activation : str or list of str, default='relu'
""" + _activation_doc() + """

""" + _solver_doc() + """
    alpha : float, default=0.0001
        Strength of the L2 regularization term. The L2 regularization term
        is divided by the sample size when added to the loss.

    batch_size : int, default='auto'
        Size of minibatches for stochastic optimizers. When set to "auto",
        `batch_size=min(200, n_samples)`.

    learning_rate : {'constant', 'invscaling', 'adaptive', 'step', \
'exponential', 'cosine'} or callable, default='constant'
        Learning rate schedule, one rate per epoch, for every stochastic
        solver: 'constant' keeps learning_rate_init; 'invscaling' uses
        learning_rate_init / pow(t + 1, power_t) after each epoch (t counts
        the samples seen); 'adaptive' divides the rate by 5 each time
        n_iter_no_change consecutive epochs fail to improve by tol. These
        three are scikit-learn's; as there, """ + _ignoring() + """ ignores
        'invscaling' and 'adaptive' (it stops instead of cutting the rate).
        Not in scikit-learn: 'step' (multiply by lr_gamma every
        lr_step_size epochs), 'exponential' (by lr_gamma ** (1 /
        lr_step_size) each epoch), 'cosine' (cosine annealing to lr_min,
        with warm restarts when lr_cycle is set), or a callable
        ``f(epoch, lr) -> lr`` given the epoch (from 0) and the previous
        epoch's rate. See ``fastbp._schedules`` for the formulas. The rates
        used are recorded in ``learning_rate_curve_``.

    learning_rate_init : float, default=0.001
        The initial learning rate (every stochastic solver).

    power_t : float, default=0.5
        The exponent for inverse scaling learning rate (invscaling; every
        stochastic solver but """ + _ignoring() + """, which ignores it as in
        scikit-learn).

    max_iter : int, default=200
        Maximum number of iterations: epochs for stochastic solvers, L-BFGS
        iterations for lbfgs, trust-region iterations for newton.

    shuffle : bool, default=True
        Whether to shuffle samples in each iteration (stochastic solvers).

    random_state : int, RandomState instance, default=None
        Determines the weight and bias initialization, the train-validation
        split with early stopping, and batch sampling. Consumed in
        scikit-learn's order, so the same seed gives the same training.

    tol : float, default=1e-4
        Tolerance for the optimization. When the loss or score is not
        improving by at least tol for n_iter_no_change consecutive
        iterations, convergence is reached and training stops (unless
        learning_rate is 'adaptive'). For lbfgs, the tolerance on the largest
        gradient entry; for newton, on the gradient's Euclidean norm.

    verbose : bool, default=False
        Whether to print progress messages to stdout.

    warm_start : bool, default=False
        When set to True, reuse the solution of the previous call to fit as
        initialization. Unlike scikit-learn, the new fit starts its
        patience and best-score bookkeeping afresh.

    momentum : float, default=0.9
""" + _para(
    f"Momentum for gradient descent update, between 0 and 1 ({_users('momentum')}).") + """

    nesterovs_momentum : bool, default=True
""" + _para(
    f"Whether to use Nesterov's momentum ({_users('nesterov')}, momentum > 0).") + """

    early_stopping : bool, default=False
        Whether to hold out validation_fraction of the training data (or use
        fit's X_val, y_val) and stop when the validation score (see
        early_stopping_metric) has not improved by at least tol for
        n_iter_no_change consecutive epochs; the best weights are restored.
        Stratified for single-output classification. Stochastic solvers only.

    validation_fraction : float, default=0.1
        The proportion of training data to set aside as validation set for
        early stopping.

    beta_1 : float, default=0.9
""" + _para(
    "Exponential decay rate for estimates of first moment vector "
    f"({_users('beta_1')}), should be in [0, 1).") + """

    beta_2 : float, default=0.999
""" + _para(
    "Exponential decay rate for estimates of second moment vector "
    f"({_users('beta_2')}; adamax's infinity-norm decay), should be in "
    "[0, 1).") + """

    epsilon : float, default=1e-8
""" + _para(
    f"Value for numerical stability ({_users('epsilon')}: see each rule "
    "in ``solver``).") + """

    n_iter_no_change : int, default=10
        Maximum number of epochs to not meet tol improvement (stochastic
        solvers).

    max_fun : int, default=15000
        Maximum number of loss function calls (lbfgs only).

    rho : float, default=0.9
""" + _para(
    f"Decay rate of the running averages ({_users('rho')}: see each rule "
    "in ``solver``), in [0, 1). 0.9 is Hinton's RMSprop value (Keras's "
    "default) and PyTorch's Adadelta default. Not in scikit-learn.") + """

    weight_decay : float, default=0.01
""" + _para(
    f"Decoupled weight decay ({_users('weight_decay')}; PyTorch's default): "
    "each step first multiplies every weight by 1 - lr * weight_decay. "
    "Other solvers ignore it (alpha is their L2 penalty). Not in "
    "scikit-learn.") + """

    lr_step_size : int, default=10
        Epochs per decay by lr_gamma ('step' and 'exponential' schedules).
        Not in scikit-learn.

    lr_gamma : float, default=0.1
        Decay factor in (0, 1] per lr_step_size epochs ('step',
        'exponential'). Not in scikit-learn.

    lr_min : float, default=0.0
        The rate the 'cosine' schedule anneals to. Not in scikit-learn.

    lr_cycle : int or None, default=None
        'cosine' with warm restarts (SGDR): epochs of the first cycle. None:
        a single annealing over max_iter - warmup_epochs epochs. Not in
        scikit-learn.

    lr_cycle_mult : int, default=1
        Each warm-restart cycle is lr_cycle_mult times longer than the one
        before ('cosine' with lr_cycle). Not in scikit-learn.

    warmup_epochs : int, default=0
        Linear warm-up before any schedule: epoch e < warmup_epochs uses
        learning_rate_init * (e + 1) / (warmup_epochs + 1); the schedule
        then starts from its own epoch 0. Not in scikit-learn.

    clip_norm : float or None, default=None
        Gradient clipping by global norm (stochastic solvers): when the L2
        norm of a minibatch's whole gradient (every weight and intercept,
        L2 term included) exceeds clip_norm, the gradient is scaled down to
        norm clip_norm before the optimizer step. None: off. Not in
        scikit-learn.

    clip_value : float or None, default=None
        Gradient clipping by value (stochastic solvers): each gradient entry
        is clipped to [-clip_value, clip_value] before the step (and before
        clip_norm when both are set). None: off. Not in scikit-learn.

    backend : {'cython', 'numpy'}, default='cython'
        Where the epoch runs: the compiled engine, or its pure-NumPy twin
        (the same algorithm, for checking and benchmarking). Not in
        scikit-learn.

    n_jobs : int or None, default=None
        Threads for training steps and predictions, counted as scikit-learn's
        OpenMP estimators (HistGradientBoosting) count them: None, what
        OpenMP allows (``OMP_NUM_THREADS``, threadpoolctl limits; inside
        joblib workers their share), at most the cores; n > 0, n; n < 0,
        that + 1 + n. Small steps run on one thread. The same n_jobs gives
        the same result bit for bit; ``n_jobs=1`` follows scikit-learn's
        trajectory (sgd, adam, float64). Not in scikit-learn's MLP.

    l1 : float, default=0.0
        Strength of the L1 regularization term on the coefficients (not the
        intercepts), scaled as alpha is: each batch's loss gains
        l1 * ||W||_1 / n (n the batch's sample-weight sum, as alpha's
        alpha * ||W||^2 / (2 n)), whose subgradient l1 * sign(W) / n is 0 at
        W = 0. Together with alpha: the elastic net. The reported loss
        includes it. solver='newton' refuses it: the objective is not twice
        differentiable. Not in scikit-learn.

    early_stopping_metric : {'score', 'loss'}, default='score'
        What early stopping watches on the validation set: 'score'
        (scikit-learn's behaviour: accuracy or R^2 must improve by tol) or
        'loss' (the validation loss must fall by tol); the weights of the
        best epoch by that metric are restored. Not in scikit-learn.

    restore_best_weights : bool, default=False
        Without a validation set (early_stopping=False), restore at the end
        of fit the weights at the end of the epoch with the lowest training
        loss (scikit-learn keeps the last weights). With early_stopping the
        best validation weights are always restored. fit only, not
        partial_fit. Not in scikit-learn.

    dropout : float or list of float, default=0.0
        Inverted dropout on the hidden layers' activations in training: each
        unit is zeroed with this probability and the kept ones are scaled by
        1 / (1 - dropout), so predict (which never drops) needs no rescaling.
        One rate for every hidden layer, or a list with one per hidden
        layer. The masks are reproducible from random_state (one seed drawn
        per epoch, only when dropout is on, mixed with the number of samples
        seen so that successive partial_fit calls draw new masks). Stochastic
        solvers only. Not in scikit-learn.
"""

BATCH_NORM = """
    batch_norm : bool, default=False
        Batch normalization (Ioffe & Szegedy, 2015) on every hidden layer:
        Z = A W + b is normalized with the minibatch's mean and biased
        variance, (Z - mean) / sqrt(var + 1e-5), then scaled and shifted by
        learned gamma (init 1) and beta (init 0) before the activation. In
        training the statistics are the minibatch's (lbfgs: the whole
        data's) and unweighted (sample weights act in the loss only);
        predict and transform use running statistics, updated after every
        minibatch as running = 0.9 running + 0.1 batch with the unbiased
        batch variance (PyTorch's defaults; a one-row minibatch leaves the
        running variance). The normalization cancels the intercepts of the
        hidden layers: they are kept (so coefs_ and intercepts_ keep
        scikit-learn's shapes) and their gradient is exactly 0, so they stay
        at their initial values. L2 and L1 penalties apply to the
        coefficients only. ONNX export folds it into the affine layers;
        solver='newton' and the second-order tools refuse it. Not in
        scikit-learn.
"""

ATTRIBUTES = """
    loss_ : float
        The current loss computed with the loss function.

    best_loss_ : float or None
        The minimum loss reached by the solver throughout fitting; None with
        early_stopping. Stochastic solvers only.

    loss_curve_ : list of shape (`n_iter_`,)
        The loss at the end of each training step (stochastic solvers), or
        after each iteration of the last fit (newton).

    learning_rate_curve_ : list of shape (`n_iter_`,)
        The learning rate each epoch used (stochastic solvers; continued by
        partial_fit and warm_start like loss_curve_). Not in scikit-learn.

    validation_scores_ : list of shape (`n_iter_`,) or None
        The score at each iteration on a held-out validation set
        (early_stopping only, else None).

    best_validation_score_ : float or None
        The best validation score (early_stopping only, else None).

    validation_loss_curve_ : list of shape (`n_iter_`,) or None
        The loss on the validation set after each epoch (early_stopping
        only, else None): the data term, without the alpha and l1 penalties,
        weighted by the validation sample weights. Not in scikit-learn.

    best_validation_loss_ : float or None
        The lowest validation loss (early_stopping only, else None).

    t_ : int
        The number of training samples seen by the solver during fitting.

    coefs_ : list of shape (n_layers - 1,)
        coefs_[i] is the (fan_in, fan_out) weight matrix of layer i: a view
        into one flat parameter buffer.

    intercepts_ : list of shape (n_layers - 1,)
        intercepts_[i] is the bias vector of layer i + 1 (also a view).

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    n_iter_ : int
        The number of iterations the solver has run.

    n_layers_ : int
        Number of layers.

    n_outputs_ : int
        Number of outputs.

    out_activation_ : str
        Name of the output activation function.

    batch_norm_scale_, batch_norm_shift_ : list of ndarray or None
        With batch_norm, the learned gamma and beta of each hidden layer,
        of shape (hidden_layer_sizes[i],); None without. Not in
        scikit-learn.

    batch_norm_mean_, batch_norm_var_ : list of ndarray or None
        With batch_norm, the running mean and (unbiased) variance of each
        hidden layer's Z = A W + b, used by predict; None without. Not in
        scikit-learn.
"""

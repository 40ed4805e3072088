"""One table per family of interchangeable parts: solvers, activations, losses.

A row holds every fact about its member that is not arithmetic, once: its
code (the case of the family's one compiled dispatcher), what the engine
and the estimators need to know about it, and the formula text the
estimators' docstrings show. Everything else is derived from the rows: the
name-to-code maps, the parameter rules, the docs. The arithmetic is written
twice, on purpose: once in the compiled dispatcher's case and once in the
NumPy twin (``fastbp._reference``), which is its test oracle.

Adding a member: its row here, its compiled case, its twin, a test row
(docs/design.md, "Adding things", walks each family).

This module imports nothing from fastbp: the compiled modules and the twin
both read it.
"""

from typing import NamedTuple


class Solver(NamedTuple):
    """A stochastic update rule (``_optimizers._step``; twin
    ``_reference.<name>_step``)."""

    name: str
    code: int  # its case in _optimizers._step (enum in _optimizers.pxd)
    state_arrays: int  # flat arrays of n_params it keeps, in its rule's order
    counts_steps: bool  # it keeps a step count t (bias corrections)
    # False: scikit-learn's 'invscaling' and 'adaptive' schedules leave its
    # rate at learning_rate_init, as scikit-learn's adam; fastbp's own
    # schedules apply to every solver.
    follows_schedule: bool
    reads: tuple  # the Settings fields it reads besides learning_rate
    source: str  # the estimators' one-line entry: where the rule is from
    formula: str  # the rule, for the estimators' docstrings


SOLVERS = (
    Solver(
        "sgd", 0, 1, False, True, ("momentum", "nesterov"),
        "stochastic gradient descent with momentum, as scikit-learn's",
        "v = momentum v - lr g, then w += momentum v - lr g (Nesterov, "
        "scikit-learn's form) or w += v",
    ),
    Solver(
        "adam", 1, 2, True, False, ("beta_1", "beta_2", "epsilon"),
        "Kingma & Ba (2014), as scikit-learn's",
        "m = beta_1 m + (1 - beta_1) g; v = beta_2 v + (1 - beta_2) g^2; "
        "w -= lr sqrt(1 - beta_2^t) / (1 - beta_1^t) m / (sqrt(v) + epsilon)",
    ),
    Solver(
        "adagrad", 2, 1, False, True, ("epsilon",),
        "Duchi, Hazan & Singer (2011)",
        "G += g^2; w -= lr g / (sqrt(G) + epsilon), G from 0 (PyTorch's "
        "initial_accumulator_value=0, epsilon outside the root)",
    ),
    Solver(
        "rmsprop", 3, 1, False, True, ("rho", "epsilon"),
        "Tieleman & Hinton (2012), lecture 6.5",
        "v = rho v + (1 - rho) g^2; w -= lr g / (sqrt(v) + epsilon), v from "
        "0, no momentum, not centered (PyTorch's RMSprop with alpha=rho)",
    ),
    Solver(
        "adadelta", 4, 2, False, True, ("rho", "epsilon"),
        "Zeiler (2012), Algorithm 1",
        "Eg2 = rho Eg2 + (1 - rho) g^2; dx = sqrt(Edx2 + epsilon) / "
        "sqrt(Eg2 + epsilon) g; Edx2 = rho Edx2 + (1 - rho) dx^2; "
        "w -= lr dx (the paper's lr is 1; lr scales the step as in PyTorch)",
    ),
    Solver(
        "adamw", 5, 2, True, True,
        ("beta_1", "beta_2", "epsilon", "weight_decay"),
        "Loshchilov & Hutter (2019), decoupled weight decay",
        "adam's moments and step, the decay applied to the weights directly: "
        "w = (1 - lr weight_decay) w - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) "
        "m / (sqrt(v) + epsilon) (PyTorch's AdamW; intercepts decay too)",
    ),
    Solver(
        "adamax", 6, 2, True, True, ("beta_1", "beta_2", "epsilon"),
        "Kingma & Ba (2015), section 7.1",
        "m = beta_1 m + (1 - beta_1) g; u = max(beta_2 u, |g|); "
        "w -= lr / (1 - beta_1^t) m / (u + epsilon) (epsilon as in Keras)",
    ),
    Solver(
        "nadam", 7, 2, True, True, ("beta_1", "beta_2", "epsilon"),
        "Dozat (2016), Algorithm 2 with a constant momentum beta_1",
        "m, v as adam; m_hat = beta_1 m / (1 - beta_1^(t+1)) + (1 - beta_1) "
        "g / (1 - beta_1^t); v_hat = v / (1 - beta_2^t); "
        "w -= lr m_hat / (sqrt(v_hat) + epsilon)",
    ),
)
SOLVER = {s.name: s for s in SOLVERS}
SOLVER_OF_CODE = {s.code: s for s in SOLVERS}


def solvers_reading(field):
    """The names of the solvers whose rule reads a Settings field."""
    return tuple(s.name for s in SOLVERS if field in s.reads)


class Activation(NamedTuple):
    """An activation (compiled: _kernels._bias_act_rule and _act_value,
    _act_grad_rule, _curvature's f'' terms; twin: _reference.ACTIVATION_TWINS;
    export: _onnx)."""

    name: str
    code: int  # its case in the compiled kernels (enum in _kernels.pxd)
    hidden: bool  # a hidden layer may use it (else output only)
    # Its compiled derivative reads the pre-activation Z, not only act(Z):
    # plans keep Z for it, and its curvature term takes f''(Z).
    needs_preactivation: bool
    # The ONNX operator and attributes computing it; None: composed of
    # elementary nodes in _onnx._activation_nodes (or, identity, none).
    onnx: tuple
    formula: str  # for the estimators' docstrings ('' for the output-only)


ACTIVATIONS = (
    Activation("identity", 0, True, False, None, "f(x) = x"),
    Activation("logistic", 1, True, False, ("Sigmoid", {}),
               "f(x) = 1 / (1 + exp(-x))"),
    Activation("tanh", 2, True, False, ("Tanh", {}), "f(x) = tanh(x)"),
    Activation("relu", 3, True, False, ("Relu", {}), "f(x) = max(0, x)"),
    Activation("softmax", 4, False, False, ("Softmax", {"axis": 1}), ""),
    Activation("exp", 5, False, False, ("Exp", {}), ""),
    Activation("leaky_relu", 6, True, False, ("LeakyRelu", {"alpha": 0.01}),
               "f(x) = max(x, 0.01 x) (PyTorch's default slope)"),
    Activation("elu", 7, True, False, None,
               "f(x) = x if x > 0 else exp(x) - 1 (alpha = 1)"),
    Activation("gelu", 8, True, True, None,
               "f(x) = x Phi(x) with Phi the standard normal CDF (the exact "
               "erf form, PyTorch's default, not the tanh approximation)"),
    Activation("softplus", 9, True, False, None, "f(x) = log(1 + exp(x))"),
    Activation("silu", 10, True, True, None,
               "(swish) f(x) = x / (1 + exp(-x))"),
    Activation("softsign", 11, True, False, None, "f(x) = x / (1 + |x|)"),
)
ACTIVATION = {a.name: a for a in ACTIVATIONS}
HIDDEN_ACTIVATIONS = tuple(a.name for a in ACTIVATIONS if a.hidden)
# scikit-learn's MLP has these; the docs say which are fastbp's own.
SKLEARN_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")


class Loss(NamedTuple):
    """A loss (compiled: _kernels._loss_delta or _other_loss_delta for its
    value and output delta, _check_loss for its parameter,
    _curvature._output_r for its curvature; twin: _reference.loss_delta,
    _other_loss, _output_curvature, by name)."""

    name: str
    code: int  # its case in the compiled kernels (enum in _kernels.pxd)
    output: str  # the output activation it is paired with (its link)
    regressor: bool  # an MLPRegressor loss (else the classifier's)
    # Its parameter (an estimator parameter's name) and the value None means.
    parameter: tuple
    # False: zero second derivative wherever it exists (piecewise linear):
    # solver='newton' refuses it.
    has_curvature: bool
    formula: str  # for MLPRegressor's docstring ('' for the classifier's)


LOSSES = (
    Loss("squared_error", 0, "identity", True, None, True,
         "e^2 / 2 (half squared error), identity output"),
    Loss("log_loss", 1, "softmax", False, None, True, ""),
    Loss("binary_log_loss", 2, "logistic", False, None, True, ""),
    Loss("poisson", 3, "exp", True, None, True,
         "y log(y / p) - y + p (half Poisson deviance), exp output, y >= 0"),
    Loss("absolute_error", 4, "identity", True, None, False,
         "|e| (AbsoluteError), identity output; predicts the conditional "
         "median"),
    Loss("huber", 5, "identity", True, ("huber_delta", 1.0), True,
         "e^2 / 2 where |e| <= huber_delta, else huber_delta (|e| - "
         "huber_delta / 2) (HuberLoss with a fixed delta), identity output; "
         "quadratic near the target, linear beyond: robust to outliers"),
    Loss("quantile", 6, "identity", True, ("quantile", None), False,
         "the pinball loss, quantile (y - p) where y >= p, else (1 - "
         "quantile) (p - y) (PinballLoss), identity output; predicts the "
         "conditional quantile (set ``quantile``)"),
    Loss("gamma", 7, "exp", True, None, True,
         "y / p - log(y / p) - 1 (half gamma deviance, HalfGammaLoss plus its "
         "constant), exp output, y > 0"),
)
LOSS = {loss.name: loss for loss in LOSSES}
REGRESSION_LOSSES = tuple(loss.name for loss in LOSSES if loss.regressor)
# scikit-learn's MLP has these; the docs say which are fastbp's own.
SKLEARN_LOSSES = ("squared_error", "log_loss", "binary_log_loss", "poisson")

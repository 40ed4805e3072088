"""One rule for every public output: non-finite values are refused.

predict, transform, jacobian, loss_gradient, hessian_vector_product,
hessian and check_gradients all raise the same ValueError when what they
would return is not finite (scikit-learn returns NaN): it names the output
and the two ways a fitted network overflows, input far outside the training
scale or weights that are finite but extreme (a fit that nearly diverged).
A fit that diverges says where and why in one sentence too (``divergence``),
whichever driver ran it.
"""

import numpy as np

# What a failed fit adds to its error: the estimator is unchanged.
KEPT = " The previous model, if any, is kept."


def non_finite_error(what, weights, inputs="X"):
    """The ValueError for a non-finite output `what` of the network whose
    flat parameter buffer is weights."""
    largest = float(np.max(np.abs(weights))) if weights.size else 0.0
    return ValueError(
        f"{what} is not finite: the values overflow the fitted {weights.dtype} "
        f"network. Either the values of {inputs} are far outside the training "
        "data's scale (scale them as the training data was, for example with "
        "StandardScaler; float64 values beyond float32's range do not fit a "
        "float32 model), or the weights are extreme (largest |weight| "
        f"{largest:.3g}), as after a fit that nearly diverged: refit with a "
        "lower learning rate or scaled data."
    )


def require_finite(values, what, weights, inputs="X"):
    """values (arrays or floats), unchanged, if all of them are finite."""
    for v in values:
        if not np.isfinite(v).all():
            raise non_finite_error(what, weights, inputs)
    return values


def divergence(n_iter, loss, learning_rate, weights_finite, what=None):
    """The message of a diverged fit: scikit-learn's sentence for non-finite
    weights, then where it happened and what to try."""
    sklearn_words = ""
    if what is None and not weights_finite:
        what = "the solver produced non-finite parameter weights"
        sklearn_words = (
            "Solver produced non-finite parameter weights. The input data may "
            "contain large values and need to be preprocessed. "
        )
    elif what is None:
        what = f"the training loss is {loss}"
    rate = "" if learning_rate is None else f" ({learning_rate:g})"
    return (
        f"{sklearn_words}Training diverged at iteration {n_iter}: {what}. The "
        f"learning rate{rate} may be too high, or the input data may contain "
        "large values and need scaling (for example with StandardScaler)."
    )

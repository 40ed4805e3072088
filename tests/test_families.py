"""The family tables (fastbp._families) against what reads them: each code
once, the compiled name maps and the twin built from the rows, every
member's facts where the engine and the estimators look them up."""

import pytest

from fastbp import _curvature, _kernels, _optimizers, _reference
from fastbp._families import ACTIVATIONS, LOSSES, SOLVERS
from fastbp._params import PARAMETER_RULES, STOCHASTIC_SOLVERS
from fastbp._schedules import follows


@pytest.mark.parametrize("rows", [SOLVERS, ACTIVATIONS, LOSSES],
                         ids=["solvers", "activations", "losses"])
def test_names_and_codes_are_unique(rows):
    assert len({r.name for r in rows}) == len(rows)
    assert len({r.code for r in rows}) == len(rows)


def test_compiled_maps_come_from_the_rows():
    assert _optimizers.SOLVERS == {s.name: s.code for s in SOLVERS}
    assert _optimizers.COUNTS_STEPS == {s.name for s in SOLVERS if s.counts_steps}
    assert _kernels.ACTIVATIONS == {a.name: a.code for a in ACTIVATIONS}
    assert _kernels.NEEDS_PREACTIVATION == {
        a.code for a in ACTIVATIONS if a.needs_preactivation}
    assert _kernels.LOSSES == {loss.name: loss.code for loss in LOSSES}
    assert set(_curvature.HIDDEN_ACTIVATIONS) == {a.code for a in ACTIVATIONS
                                                 if a.hidden}
    assert len(_curvature.HEADS) == len(LOSSES)


def test_every_member_has_its_twin():
    for s in SOLVERS:
        assert callable(getattr(_reference, f"_{s.name}_rule"))
    assert set(_reference.ACTIVATION_TWINS) == {a.name for a in ACTIVATIONS}
    for a in ACTIVATIONS:
        value, deriv, second = _reference.ACTIVATION_TWINS[a.name]
        assert callable(value)
        assert (deriv is None) == (second is None) == (not a.hidden)


def test_every_row_reaches_the_parameter_rules():
    solver_check, _ = PARAMETER_RULES["solver"]
    assert set(STOCHASTIC_SOLVERS) == {s.name for s in SOLVERS}
    assert all(solver_check(s.name) for s in SOLVERS)
    activation_check, _ = PARAMETER_RULES["activation"]
    for a in ACTIVATIONS:
        assert activation_check(a.name) == a.hidden
    loss_check, _ = PARAMETER_RULES["loss"]
    for loss in LOSSES:
        assert loss_check(loss.name) == loss.regressor


def test_schedule_fact_is_the_rows():
    for s in SOLVERS:
        assert follows(s.name, "invscaling") == s.follows_schedule
        assert follows(s.name, "adaptive") == s.follows_schedule
        assert follows(s.name, "cosine")
    assert [s.name for s in SOLVERS if not s.follows_schedule] == ["adam"]

"""The family tables (fastbp._families) against what reads them: each code
once, the compiled name maps and the twin built from the rows, every
member's facts where the engine and the estimators look them up."""

import pathlib

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


README = pathlib.Path(__file__).parent.parent / "README.md"


def _readme_table(header):
    """The first `name` of each row of the README table whose header row
    starts with header."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    names = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        names.append(line.split("`")[1].strip('"'))  # the first `name`
    return names


def _readme_row(parameter):
    """The row of README's parameter table that documents parameter."""
    return next(line for line in README.read_text().splitlines()
                if line.startswith(f"| `{parameter}`"))


def test_readmes_hand_written_tables_name_every_member():
    """README's solver and loss tables and its parameter rows are written by
    hand: a member added to a table must show there (and no removed one
    stay)."""
    assert _readme_table("| solver | update |") == [s.name for s in SOLVERS]
    assert sorted(_readme_table("| `loss` | per element |")) == sorted(
        loss.name for loss in LOSSES if loss.regressor)
    activation_row = _readme_row("activation")
    for a in ACTIVATIONS:
        assert (f'"{a.name}"' in activation_row) == a.hidden, a.name
    solver_row = _readme_row("solver")
    for s in SOLVERS:
        assert f'"{s.name}"' in solver_row, s.name
    loss_row = _readme_row("loss")
    for loss in LOSSES:
        assert (f'"{loss.name}"' in loss_row) == loss.regressor, loss.name

"""The force-matching bound of a correction term: exact for a missing term of the same form,
and a clear error for a term that is not linear in its trainable parameters."""

import numpy as np
import pytest

from conftest import cn_crystal
from exprefine.force_matching import best_correction_bound, force_basis, force_difference, residual_rms
from exprefine.potentials import LennardJones, PairDispersion, PairSpline, SumPotential
from exprefine.state import from_atoms


def _dispersion(s6: float, s8: float, trainable) -> PairDispersion:
    return PairDispersion(["C", "N"], 7.0, c6_eV_A6=[18.0, 15.0, 12.5], c8_eV_A8=[300.0, 250.0, 210.0],
                          damping_radius_A=[3.4, 3.3, 3.2], switch_on_A=5.0, s6=s6, s8=s8, trainable=trainable)


def _base() -> LennardJones:
    return LennardJones(["C", "N"], sigma_A=2.9, epsilon_eV=0.004, cutoff_A=7.0)


def test_a_missing_term_of_the_corrections_own_form_is_recovered_exactly():
    states = {"fit": [from_atoms(cn_crystal(s)) for s in (0, 1)], "held_out": [from_atoms(cn_crystal(2))]}
    reference = SumPotential([_base(), _dispersion(0.7, 1.3, False)])
    missing = {k: force_difference(reference, _base(), v) for k, v in states.items()}
    correction = _dispersion(0.0, 0.0, ["s6", "s8"])
    bound = best_correction_bound(correction, states, missing, fit_on=["fit"])
    np.testing.assert_allclose(bound.parameters, [0.7, 1.3], rtol=1e-9)
    for name in states:
        assert bound.missing_force_rms_meV_per_A[name] > 1.0  # the term is not negligible here
        assert bound.residual_rms_meV_per_A[name] < 1e-6 * bound.missing_force_rms_meV_per_A[name]
    assert bound.n_force_components["held_out"] == 3 * 32
    # the residual at given parameters: zero at the truth, the missing force's RMS at zero
    held = states["held_out"]
    assert residual_rms(correction, held, missing["held_out"], [0.7, 1.3]) < 1e-6
    assert residual_rms(correction, held, missing["held_out"], [0.0, 0.0]) == \
        pytest.approx(bound.missing_force_rms_meV_per_A["held_out"], rel=1e-12)
    with pytest.raises(ValueError, match="2 trainable"):
        residual_rms(correction, held, missing["held_out"], [1.0])
    # the term's own parameters are left as they were
    assert float(correction.s6.detach()) == 0.0 and float(correction.s8.detach()) == 0.0


def test_a_form_that_cannot_hold_the_missing_term_leaves_a_residual():
    # splines ending at 3 Å cannot represent a dispersion term acting at 3–7 Å
    states = {"fit": [from_atoms(cn_crystal(s)) for s in (0, 1)]}
    reference = SumPotential([_base(), _dispersion(1.0, 1.0, False)])
    missing = {"fit": force_difference(reference, _base(), states["fit"])}
    short = PairSpline(["C", "N"], cutoff_A=3.0, r_min_A=2.0, n_knots=6)
    bound = best_correction_bound(short, states, missing, fit_on=["fit"])
    assert bound.residual_rms_meV_per_A["fit"] > 0.5 * bound.missing_force_rms_meV_per_A["fit"]
    longer = PairSpline(["C", "N"], cutoff_A=7.0, r_min_A=2.0, n_knots=26)
    assert best_correction_bound(longer, states, missing, fit_on=["fit"]).residual_rms_meV_per_A["fit"] < \
        0.2 * bound.missing_force_rms_meV_per_A["fit"]


def test_nonlinear_parameters_and_unknown_sets_are_named():
    states = [from_atoms(cn_crystal(0))]
    with pytest.raises(ValueError, match="not linear"):
        force_basis(_dispersion(1.0, 1.0, ["damping_radius"]), states)
    with pytest.raises(ValueError, match="not linear"):
        force_basis(LennardJones(["C", "N"], sigma_A=2.9, epsilon_eV=0.004, cutoff_A=7.0), states)
    term = _dispersion(0.0, 0.0, ["s6", "s8"])
    with pytest.raises(ValueError, match="nope"):
        best_correction_bound(term, {"fit": states}, {"fit": [np.zeros((32, 3))]}, fit_on=["nope"])
    with pytest.raises(ValueError, match="no trainable"):
        force_basis(_dispersion(0.0, 0.0, False), states)

"""Stillinger–Weber silicon: published energy and zero-temperature elastic constants, derivatives, config."""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk

from exprefine.config import StillingerWeberPairConfig
from exprefine.observables import strain_derivatives
from exprefine.potentials import StillingerWeberPair, stillinger_weber_silicon
from exprefine.state import from_atoms
from exprefine.testing import check_potential
from exprefine.units import eV_PER_A3_IN_GPa


def diamond(a_A: float = 5.431, repeat: int = 2):
    return from_atoms(bulk("Si", "diamond", a=a_A, cubic=True).repeat(repeat))


def test_cohesive_energy_and_lattice_constant_of_diamond_silicon():
    # Stillinger & Weber (1985): −2.1683 eV × 2.0000 ≈ −4.3366 eV/atom at a = 5.431 Å, the minimum
    sw = stillinger_weber_silicon()
    with torch.no_grad():
        energies = {a: float(sw.energy(diamond(a))) / 64 for a in (5.41, 5.431, 5.45)}
    assert energies[5.431] == pytest.approx(-4.3366, abs=2e-4)
    assert energies[5.431] < min(energies[5.41], energies[5.45])
    # the three-body term vanishes on the perfect tetrahedral lattice
    with torch.no_grad():
        assert float(sw.term_list()[1].energy(diamond())) == pytest.approx(0.0, abs=1e-12)


def test_zero_temperature_born_constants_match_the_published_values():
    # C11 and C12 of diamond carry no internal relaxation: the Born terms are the 0 K constants,
    # 151.4 and 76.4 GPa for Stillinger–Weber silicon (e.g. Balamane, Halicioglu & Tiller,
    # PRB 46, 2250 (1992)); C44 unrelaxed (no internal relaxation) is larger than the relaxed 56.4.
    born = strain_derivatives(diamond(), stillinger_weber_silicon(), (0, 3)).born_eV_per_A3[0] * eV_PER_A3_IN_GPa
    assert float(born[0, 0]) == pytest.approx(151.4, rel=2e-3)
    assert float(born[0, 1]) == pytest.approx(76.4, rel=2e-3)
    assert float(born[1, 3]) > 100.0


def test_forces_stress_and_invariances():
    state = from_atoms(bulk("Si", "diamond", a=5.431, cubic=True))
    state.positions += 0.1 * torch.randn(state.positions.shape, generator=torch.Generator().manual_seed(0),
                                         dtype=state.positions.dtype)
    report = check_potential(stillinger_weber_silicon(), state)
    assert report.force_fd_error_eV_per_A < 1e-5  # check_potential raises beyond its tolerances


def test_config_term():
    cfg = StillingerWeberPairConfig.model_validate({"kind": "stillinger_weber_2b", "species": ["Si"],
                                                     "epsilon_eV": 2.1683, "sigma_A": 2.0951, "a": 1.8,
                                                     "A": 7.049556277, "B": 0.6022245584, "trainable": ["B"]})
    term = cfg.build(torch.float64)
    assert isinstance(term, StillingerWeberPair) and term.cutoff_A == pytest.approx(1.8 * 2.0951)
    assert [n for n, p in term.named_parameters() if p.requires_grad] == ["log_B"]
    with pytest.raises(ValueError, match="unknown trainable"):
        StillingerWeberPair(["Si"], 2.0, 2.0, 1.8, 7.0, 0.6, trainable=["sigma"])


def test_relaxed_zero_temperature_constants_match_the_published_values():
    # Stillinger–Weber silicon at 0 K with internal relaxation: C11 = 151.4, C12 = 76.4, C44 = 56.4 GPa
    # (Balamane, Halicioglu & Tiller, PRB 46, 2250 (1992)); cubic symmetry makes C11 = C22 = C33
    from exprefine.static_elastic import relaxed_elastic_constants

    c = relaxed_elastic_constants(stillinger_weber_silicon(), bulk("Si", "diamond", a=5.431, cubic=True))
    assert c[0, 0] == pytest.approx(151.4, rel=3e-3)
    assert c[0, 1] == pytest.approx(76.4, rel=3e-3)
    assert c[3, 3] == pytest.approx(56.4, rel=3e-3)
    assert c[1, 1] == pytest.approx(c[0, 0], rel=1e-6) and c[2, 2] == pytest.approx(c[0, 0], rel=1e-6)
    assert abs(c[0, 3]) < 1e-3  # no coupling of normal and shear strain in a cubic crystal
    with pytest.raises(ValueError, match="strain"):
        relaxed_elastic_constants(stillinger_weber_silicon(), bulk("Si", "diamond", a=5.431, cubic=True), strain=0.0)

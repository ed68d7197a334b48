"""The one internal unit system of exprefine and the conversions into it.

Internal units: length Å, energy eV, time fs, mass amu (g/mol), temperature K,
charge e. Derived: velocity Å/fs, force eV/Å, pressure/stress eV/Å³.

Every user-facing name carries its unit as a suffix (``temperature_K``,
``timestep_fs``); every conversion lives here.
"""

from __future__ import annotations

#: Boltzmann constant in eV/K (CODATA 2018, exact).
BOLTZMANN_eV_per_K = 8.617333262e-5

#: 1 amu·Å²/fs² expressed in eV (kinetic energy m v² with m in amu, v in Å/fs).
AMU_A2_PER_FS2_IN_eV = 1.66053906660e-27 * 1e-20 / 1e-30 / 1.602176634e-19

#: 1 eV/Å³ in bar.
eV_PER_A3_IN_bar = 1.602176634e-19 / 1e-30 / 1e5

#: 1 eV/Å³ in GPa.
eV_PER_A3_IN_GPa = 1.602176634e-19 / 1e-30 / 1e9

#: 1 eV in J.
eV_IN_J = 1.602176634e-19

#: Avogadro constant in 1/mol (exact); 1 amu is 1 g/mol.
AVOGADRO_per_mol = 6.02214076e23

#: 1 amu in g.
AMU_IN_G = 1.66053906660e-24

#: 1 kJ/mol in eV.
kJ_PER_MOL_IN_eV = 1e3 / 6.02214076e23 / 1.602176634e-19

#: 1 nm in Å.
NM_IN_A = 10.0

#: 1 ps in fs.
PS_IN_FS = 1000.0

#: 1 g/cm³ expressed in amu/Å³.
G_PER_CM3_IN_AMU_PER_A3 = 1.0 / (1.66053906660e-24 * 1e24)


def kT_eV(temperature_K: float) -> float:
    """Thermal energy k_B·T in eV for a temperature in K."""
    return BOLTZMANN_eV_per_K * temperature_K


def kelvin_to_eV(energy_K: float) -> float:
    """Energy given as E/k_B in K (the usual way to quote ε of Lennard-Jones) to eV."""
    return BOLTZMANN_eV_per_K * energy_K


def eV_to_kelvin(energy_eV: float) -> float:
    """Energy in eV to E/k_B in K."""
    return energy_eV / BOLTZMANN_eV_per_K

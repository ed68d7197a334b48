"""Frames from other programs: LAMMPS text dumps and ASE-readable trajectories as exprefine Trajectories."""

from .frames import EXTERNAL_PREFIX, external_trajectory, has_reference_energies, read_frames, with_reference_energies
from .lammps import LammpsDumpFrames, box_from_bounds, read_lammps_dump, read_lammps_dump_frames

__all__ = [
    "EXTERNAL_PREFIX", "external_trajectory", "has_reference_energies", "read_frames", "with_reference_energies",
    "LammpsDumpFrames", "box_from_bounds", "read_lammps_dump", "read_lammps_dump_frames",
]

"""Structure builders for case studies (g-C3N4 so far)."""

from .gcn import (
    GCN_LATTICE_CONSTANT_A,
    ROLES,
    STACKINGS,
    bonded_neighbour_counts,
    carbon_defects,
    corrugate,
    gcn_layer,
    gcn_stack,
    hexagonal_cell,
    in_plane_supercell,
    substitute_carbon,
)

__all__ = [
    "GCN_LATTICE_CONSTANT_A",
    "ROLES",
    "STACKINGS",
    "bonded_neighbour_counts",
    "carbon_defects",
    "corrugate",
    "gcn_layer",
    "gcn_stack",
    "hexagonal_cell",
    "in_plane_supercell",
    "substitute_carbon",
]

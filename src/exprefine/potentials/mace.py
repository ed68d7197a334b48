"""MACE models (mace-torch) as exprefine potentials, with trainable parameter subsets.

:class:`MacePotential` calls the MACE module directly on an input dict built from exprefine's
own neighbour lists, so its energies are differentiable in positions, cell and the MACE
parameters (``MACECalculator`` freezes parameters and detaches its outputs). Forces and
stress come from :meth:`Potential.compute` by autograd, as for every exprefine potential.

mace-torch is an optional extra (``pip install "exprefine[mace]"``) and is imported only when
a MACE model is loaded or saved. Importing ``mace`` sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``
for the whole process (it affects only ``torch.load`` calls that do not pass ``weights_only``)
and ``mace`` must be imported before ``e3nn``; :func:`import_mace` does both in the right order.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..state import State
from ..neighbors import VerletPairCache
from .base import Potential, element_symbols, species_index_table
from .edges import edges_within_cutoff
from .selection import mace_presets, select_trainable

TrainableSpec = str | Sequence[str]


def import_mace():
    """Import mace-torch (before e3nn, as it requires); a one-line error if it is not installed."""
    try:
        import mace  # noqa: F401  (sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD; must precede e3nn)
        import mace.modules
    except ImportError as exc:
        raise ImportError(
            f"MACE models need mace-torch: pip install 'exprefine[mace]' ({exc})"
        ) from exc
    return mace


def load_mace_model(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """The MACE module stored in a ``.model`` file (a pickled module, as MACE writes it).

    Loading unpickles code: load only files you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MACE model file not found: {path}")
    import_mace()
    model = torch.load(str(path), map_location=device, weights_only=False)
    if not isinstance(model, nn.Module):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a MACE model (a torch module)")
    return model


def _check_mace_model(model: nn.Module) -> None:
    mace = import_mace()
    if not isinstance(model, mace.modules.MACE):
        raise TypeError(
            f"MacePotential needs a mace.modules.MACE or ScaleShiftMACE energy model, got {type(model).__name__}"
        )
    if hasattr(model, "embedding_specs") or getattr(model, "lammps_mliap", False):
        raise NotImplementedError(
            "MACE models with extra embeddings (charge, spin, ...) or in LAMMPS ML-IAP form are not supported"
        )


def _resolve_head(heads: Sequence[str], head: str | None) -> int:
    """Index of the head to evaluate: the only one, the one named, or the one called 'default'."""
    heads = list(heads)
    if head is not None:
        if head not in heads:
            raise ValueError(f"head {head!r} not in the model's heads {heads}")
        return heads.index(head)
    if len(heads) == 1:
        return 0
    default = [k for k, h in enumerate(heads) if h.lower() == "default"]
    if not default:
        raise ValueError(f"the model has several heads {heads}: choose one with head=...")
    return default[0]


class MacePotential(Potential):
    """A MACE model as an exprefine :class:`Potential`.

    Args:
        model: a ``mace.modules.MACE`` or ``ScaleShiftMACE`` instance (it is converted to
            ``dtype`` in place and becomes a submodule: ``self.model``).
        dtype: floating dtype of the computation (float64 for refinement and checks).
        trainable: which parameters of the MACE model are trained: ``"all"`` (default), a preset,
            a glob or ``"re:<regex>"`` name pattern, or a list of them; every other parameter
            is frozen. See :mod:`exprefine.potentials.selection` and
            :func:`~exprefine.potentials.selection.mace_presets`.
        head: head of a multi-head model; the only head, or the one named "default" if None.
        skin_A: Verlet skin of the cached neighbour list, Å (0 rebuilds every call).

    Energies are in eV (MACE models are trained in eV and Å). The model's per-system energy
    ``out["energy"]`` (atomic reference energies included) is returned, so energies, forces
    and stresses equal ``MACECalculator``'s on the same structure.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        dtype: torch.dtype = torch.float64,
        trainable: TrainableSpec = "all",
        head: str | None = None,
        skin_A: float = 1.0,
    ) -> None:
        super().__init__()
        _check_mace_model(model)
        first = next(model.parameters(), None)
        #: dtype of the model when it was given (float32 for most published models).
        self.original_dtype: torch.dtype = first.dtype if first is not None else torch.float64
        self.model = model.to(dtype)
        self.cutoff_A = float(model.r_max)
        self.n_interactions = int(model.num_interactions)
        self.species_numbers: list[int] = [int(z) for z in model.atomic_numbers]
        self.heads: list[str] = list(getattr(model, "heads", None) or ["Default"])
        self.head_index = _resolve_head(self.heads, head)
        self.register_buffer("_species_of_z", species_index_table(self.species_numbers), persistent=False)
        self.pair_cache = VerletPairCache(skin_A=skin_A)
        self.set_trainable(trainable)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        dtype: torch.dtype = torch.float64,
        trainable: TrainableSpec = "all",
        head: str | None = None,
        skin_A: float = 1.0,
        device: torch.device | str = "cpu",
    ) -> "MacePotential":
        """Load a MACE ``.model`` file (see :class:`MacePotential` for the arguments)."""
        return cls(load_mace_model(path, device), dtype=dtype, trainable=trainable, head=head, skin_A=skin_A)

    # ------------------------------------------------------------ parameters
    def set_trainable(self, trainable: TrainableSpec) -> list[str]:
        """Make the parameters selected by ``trainable`` trainable and freeze the others.

        Returns:
            The selected names, relative to the MACE model (``self.model``); in this
            potential's own ``named_parameters()`` they carry the prefix ``"model."``.
        """
        return select_trainable(self.model, trainable, mace_presets(self.n_interactions))

    def trainable_parameter_names(self) -> list[str]:
        """Names (relative to the MACE model) of the parameters with ``requires_grad``."""
        return [n for n, p in self.model.named_parameters() if p.requires_grad]

    @property
    def model_dtype(self) -> torch.dtype:
        return self.model.r_max.dtype

    # --------------------------------------------------------------- energy
    def species_of(self, state: State) -> torch.Tensor:
        """[n_atoms] index of each atom's element in the model's table; one-line error if unknown."""
        z = state.atomic_numbers
        if bool((z < 1).any() or (z > 118).any()):
            raise ValueError("atomic numbers out of range 1..118")
        idx = self._species_of_z.to(z.device)[z]
        if bool((idx < 0).any()):
            unknown = sorted(set(z[idx < 0].tolist()))
            raise ValueError(
                f"the MACE model knows elements {element_symbols(self.species_numbers)} "
                f"but the system contains {element_symbols(unknown)}"
            )
        return idx

    def input_dict(self, state: State) -> dict[str, torch.Tensor]:
        """The MACE input dict of the whole batch (keys as ``mace.data.AtomicData`` batches).

        positions [n_atoms, 3] Å, node_attrs [n_atoms, n_elements] one-hot, edge_index
        [2, n_edges] (sender, receiver), shifts [n_edges, 3] Å, unit_shifts [n_edges, 3],
        cell [3·n_systems, 3] Å, batch [n_atoms], ptr [n_systems + 1], head [n_systems].
        """
        dtype = self.model_dtype
        species = self.species_of(state)
        positions = state.positions.to(dtype)
        if not positions.requires_grad:
            # MACE calls requires_grad_() on its input positions: never on the caller's tensor
            positions = positions.detach()
        cell = state.cell.to(dtype)
        pairs = self.pair_cache.pairs(state, self.cutoff_A)
        edges = edges_within_cutoff(pairs, positions, cell, self.cutoff_A, full_list=True)
        counts = state.n_atoms_per_system
        ptr = torch.zeros(state.n_systems + 1, dtype=torch.long, device=state.device)
        ptr[1:] = torch.cumsum(counts, dim=0)
        return {
            "positions": positions,
            "node_attrs": nn.functional.one_hot(species, len(self.species_numbers)).to(dtype),
            "edge_index": edges.edge_index,
            "shifts": edges.shifts_A,
            "unit_shifts": edges.unit_shifts,
            "cell": cell.reshape(-1, 3),
            "batch": state.system_idx,
            "ptr": ptr,
            "head": torch.full((state.n_systems,), self.head_index, dtype=torch.long, device=state.device),
        }

    def energy(self, state: State) -> torch.Tensor:
        """[n_systems] MACE energy in eV, differentiable in positions, cell and trainable parameters."""
        out = self.model(self.input_dict(state), training=False, compute_force=False)
        return out["energy"].to(state.dtype)

    # ----------------------------------------------------------------- export
    def save_model(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write the (refined) MACE model as a ``.model`` file, as MACE itself saves models.

        The file is ``torch.save`` of the whole MACE module (a copy: this potential is not
        changed), with every parameter trainable as MACE's own files are, in ``dtype``
        (default: the dtype the model had when it was given, :attr:`original_dtype`). It loads
        with ``mace.calculators.MACECalculator(model_paths=path, device="cpu",
        default_dtype="float64")`` and with :meth:`from_file`.

        LAMMPS: convert it with MACE's own tool (needs mace-torch; not run by exprefine)::

            mace_create_lammps_model refined.model --dtype float64 --format libtorch
            # writes refined.model-lammps.pt; in a LAMMPS built with the MACE pair style:
            #   pair_style  mace no_domain_decomposition
            #   pair_coeff  * * refined.model-lammps.pt H C N O   # element of each LAMMPS type
            # multi-head models: add --head NAME to mace_create_lammps_model

        Returns:
            The path written.
        """
        import_mace()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        model = copy.deepcopy(self.model).to(self.original_dtype if dtype is None else dtype)
        for param in model.parameters():
            param.grad = None
            param.requires_grad_(True)
        torch.save(model, str(path))
        return path


__all__ = ["MacePotential", "import_mace", "load_mace_model"]

"""MACE models (mace-torch) as exprefine potentials, with trainable parameter subsets.

:class:`MacePotential` calls the MACE module directly on an input dict built from exprefine's
own neighbour lists, so its energies are differentiable in positions, cell and the MACE
parameters (``MACECalculator`` freezes parameters and detaches its outputs). Forces and
stress come from :meth:`Potential.compute` by autograd, as for every exprefine potential.

:func:`build_mace` makes a fresh (untrained) ScaleShiftMACE of MACE's default architecture.

mace-torch is an optional extra (``pip install "exprefine[mace]"``) and is imported only when
a MACE model is loaded or saved. Importing ``mace`` sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``
for the whole process (it affects only ``torch.load`` calls that do not pass ``weights_only``)
and ``mace`` must be imported before ``e3nn``; :func:`import_mace` does both in the right order.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..neighbors import VerletPairCache
from ..state import State
from .base import Potential, element_symbols, species_index_table, species_indices
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


def _atomic_number(element: str | int) -> int:
    from ase.data import atomic_numbers

    if isinstance(element, str):
        if element not in atomic_numbers:
            raise ValueError(f"unknown element symbol {element!r}")
        return int(atomic_numbers[element])
    z = int(element)
    if not 1 <= z <= 118:
        raise ValueError(f"atomic number out of range 1..118: {element}")
    return z


def build_mace(
    elements: Sequence[str | int],
    r_max_A: float = 5.5,
    channels: int = 32,
    max_L: int = 1,
    n_interactions: int = 2,
    atomic_energies_eV: Mapping[str | int, float] | None = None,
    avg_num_neighbors: float = 10.0,
    seed: int = 0,
    *,
    max_ell: int = 3,
    correlation: int = 3,
    num_bessel: int = 8,
    num_polynomial_cutoff: int = 5,
    radial_mlp: Sequence[int] = (64, 64, 64),
    mlp_channels: int = 16,
    interaction_scale_eV: float = 1.0,
    interaction_shift_eV: float = 0.0,
    dtype: torch.dtype = torch.float64,
) -> nn.Module:
    """A freshly initialised ``mace.modules.ScaleShiftMACE`` energy model (untrained).

    The architecture is MACE's default one (``mace_run_train --model MACE``): a first
    ``RealAgnosticInteractionBlock``, then ``RealAgnosticResidualInteractionBlock`` s, Bessel
    radial basis with a polynomial envelope, SiLU gates. The energy of a structure is

        E = Σ_i E0(Z_i) + interaction_scale_eV · Σ_i ε_i + N · interaction_shift_eV,

    with ε_i the per-atom read-out of the network (MACE's ``ScaleShiftMACE``).

    Args:
        elements: element symbols or atomic numbers the model knows (stored sorted by Z).
        r_max_A: cutoff radius, Å.
        channels: number of channels k of the hidden features.
        max_L: highest angular momentum of the hidden features: 0 gives ``kx0e``,
            1 gives ``kx0e + kx1o``, 2 adds ``kx2e``.
        n_interactions: message-passing layers.
        atomic_energies_eV: E0 of each element (keys symbols or atomic numbers), eV;
            None gives zeros.
        avg_num_neighbors: the mean number of neighbours within ``r_max_A`` (normalises the
            messages; compute it on the training frames, e.g. with
            :func:`exprefine.data.statistics.average_neighbour_count`).
        seed: seed of the weight initialisation (the global torch random state is left as it was).
        max_ell: highest degree of the spherical harmonics of the edge directions.
        correlation: body order of the product basis (correlation + 1 body messages).
        num_bessel: radial Bessel functions.
        num_polynomial_cutoff: exponent p of the polynomial cutoff envelope.
        radial_mlp: hidden widths of the radial MLP.
        mlp_channels: width of the non-linear read-out of the last layer.
        interaction_scale_eV: scale of the per-atom interaction energy (MACE uses the RMS of
            the training forces, in eV/Å, read as an energy scale in eV).
        interaction_shift_eV: shift of the per-atom interaction energy (MACE uses the mean
            per-atom energy left after subtracting the E0s).
        dtype: floating dtype of the parameters.

    Returns:
        The MACE module (wrap it in :class:`MacePotential`; save it with
        :meth:`MacePotential.save_model`).
    """
    import_mace()
    import numpy as np
    from e3nn import o3
    from mace import modules

    if not r_max_A > 0:
        raise ValueError(f"r_max_A must be positive, got {r_max_A}")
    if channels < 1 or n_interactions < 1:
        raise ValueError(f"channels and n_interactions must be ≥ 1, got {channels}, {n_interactions}")
    if max_L not in (0, 1, 2):
        raise ValueError(f"max_L must be 0, 1 or 2, got {max_L}")
    if not avg_num_neighbors > 0:
        raise ValueError(f"avg_num_neighbors must be positive, got {avg_num_neighbors}")
    numbers = sorted({_atomic_number(e) for e in elements})
    if not numbers:
        raise ValueError("a MACE model needs at least one element")
    e0 = np.zeros(len(numbers))
    if atomic_energies_eV is not None:
        given = {_atomic_number(k): float(v) for k, v in atomic_energies_eV.items()}
        missing = [z for z in numbers if z not in given]
        if missing:
            raise ValueError(f"atomic_energies_eV lacks elements {element_symbols(missing)}")
        e0 = np.array([given[z] for z in numbers])
    parities = ("e", "o", "e")
    hidden = "+".join(f"{channels}x{ell}{parities[ell]}" for ell in range(max_L + 1))

    old_dtype = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        torch.set_default_dtype(dtype)
        try:
            model = modules.ScaleShiftMACE(
                r_max=float(r_max_A),
                num_bessel=int(num_bessel),
                num_polynomial_cutoff=int(num_polynomial_cutoff),
                max_ell=int(max_ell),
                interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
                interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
                num_interactions=int(n_interactions),
                num_elements=len(numbers),
                hidden_irreps=o3.Irreps(hidden),
                MLP_irreps=o3.Irreps(f"{mlp_channels}x0e"),
                gate=torch.nn.functional.silu,
                atomic_energies=e0,
                avg_num_neighbors=float(avg_num_neighbors),
                atomic_numbers=numbers,
                correlation=int(correlation),
                radial_MLP=[int(w) for w in radial_mlp],
                radial_type="bessel",
                atomic_inter_scale=float(interaction_scale_eV),
                atomic_inter_shift=float(interaction_shift_eV),
            )
        finally:
            torch.set_default_dtype(old_dtype)
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

    _species_of_z: torch.Tensor
    #: the mace-torch model (its own, dynamically typed module)
    model: Any

    def __init__(
        self,
        model: Any,
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
        return species_indices(self._species_of_z, self.species_numbers, state.atomic_numbers, "the MACE model")

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
        model = copy.deepcopy(self.model).to(self.original_dtype if dtype is None else dtype).cpu()  # loads anywhere
        for param in model.parameters():
            param.grad = None
            param.requires_grad_(True)
        torch.save(model, str(path))
        return path


__all__ = ["MacePotential", "build_mace", "import_mace", "load_mace_model"]

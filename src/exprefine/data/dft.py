"""Labelled reference data (DFT or any other method): structures with energies, forces and stress.

A :class:`DFTDataset` packs frames of any size and composition into flat float64 tensors
(atoms of all frames concatenated, as in :class:`~exprefine.state.State`). It yields
training batches as an exprefine ``State`` plus the label tensors, reads and writes
extended XYZ through ASE, and is split into fixed train / validation / test subsets by
:func:`split` (saveable as JSON of frame indices).

Units: Å, eV, eV/Å, eV/Å³. Stress follows ASE's (and exprefine's) sign convention,
stress = (1/V) ∂E/∂ε, so that pressure = −trace(stress)/3; a virial W (eV, as written by
DeePMD-kit, MACE data sets, dpdata) converts as stress = −W/V.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch

from ..io.ase_files import read_ase_frames
from ..state import State

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

DATASET_FORMAT = "exprefine.dft_dataset/1"
SPLIT_FORMAT = "exprefine.split/1"


@dataclass
class DFTBatch:
    """Several labelled frames as one batched State (one system per frame).

    Attributes:
        state: the structures; ``state.n_systems`` frames.
        energies_eV: [n_systems] reference total energies.
        forces_eV_per_A: [n_atoms, 3] reference forces.
        stress_eV_per_A3: [n_systems, 3, 3] reference stress (zeros where ``has_stress`` is False).
        has_stress: [n_systems] which frames carry a stress label.
        frame_indices: [n_systems] index of each frame in the dataset it came from.
    """

    state: State
    energies_eV: torch.Tensor
    forces_eV_per_A: torch.Tensor
    stress_eV_per_A3: torch.Tensor
    has_stress: torch.Tensor
    frame_indices: torch.Tensor

    @property
    def n_frames(self) -> int:
        return self.state.n_systems

    @property
    def n_atoms_per_frame(self) -> torch.Tensor:
        """[n_systems] number of atoms of each frame."""
        return self.state.n_atoms_per_system


@dataclass
class DFTDataset:
    """Labelled frames in packed tensors (float64 labels).

    Attributes:
        positions_A: [n_atoms_total, 3] Cartesian positions of the atoms of all frames, Å.
        atomic_numbers: [n_atoms_total] atomic numbers.
        atoms_per_frame: [n_frames] number of atoms of each frame (frames are contiguous, in order).
        cells_A: [n_frames, 3, 3] lattice vectors as rows, Å (zeros allowed for non-periodic frames).
        pbc: [n_frames, 3] periodicity of each frame.
        energies_eV: [n_frames] total energies.
        forces_eV_per_A: [n_atoms_total, 3] forces.
        stress_eV_per_A3: [n_frames, 3, 3] stress, ASE sign convention (zeros where absent).
        has_stress: [n_frames] which frames have a stress label (only fully periodic ones can).
        source: where the frames came from (a path, for messages and provenance).
    """

    positions_A: torch.Tensor
    atomic_numbers: torch.Tensor
    atoms_per_frame: torch.Tensor
    cells_A: torch.Tensor
    pbc: torch.Tensor
    energies_eV: torch.Tensor
    forces_eV_per_A: torch.Tensor
    stress_eV_per_A3: torch.Tensor
    has_stress: torch.Tensor
    source: str = ""

    def __post_init__(self) -> None:
        f64 = torch.float64
        self.positions_A = torch.as_tensor(self.positions_A, dtype=f64).reshape(-1, 3)
        self.atomic_numbers = torch.as_tensor(self.atomic_numbers, dtype=torch.long).reshape(-1)
        self.atoms_per_frame = torch.as_tensor(self.atoms_per_frame, dtype=torch.long).reshape(-1)
        self.cells_A = torch.as_tensor(self.cells_A, dtype=f64)
        self.pbc = torch.as_tensor(self.pbc, dtype=torch.bool)
        self.energies_eV = torch.as_tensor(self.energies_eV, dtype=f64).reshape(-1)
        self.forces_eV_per_A = torch.as_tensor(self.forces_eV_per_A, dtype=f64).reshape(-1, 3)
        self.stress_eV_per_A3 = torch.as_tensor(self.stress_eV_per_A3, dtype=f64)
        self.has_stress = torch.as_tensor(self.has_stress, dtype=torch.bool).reshape(-1)
        f = int(self.atoms_per_frame.shape[0])
        n = int(self.atoms_per_frame.sum())
        where = f"DFT data set {self.source}" if self.source else "DFT data set"
        checks = {
            "positions_A": (self.positions_A, (n, 3)),
            "atomic_numbers": (self.atomic_numbers, (n,)),
            "forces_eV_per_A": (self.forces_eV_per_A, (n, 3)),
            "cells_A": (self.cells_A, (f, 3, 3)),
            "pbc": (self.pbc, (f, 3)),
            "energies_eV": (self.energies_eV, (f,)),
            "stress_eV_per_A3": (self.stress_eV_per_A3, (f, 3, 3)),
            "has_stress": (self.has_stress, (f,)),
        }
        for name, (tensor, shape) in checks.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(f"{where}: {name} must have shape {list(shape)}, got {list(tensor.shape)}")
        if bool((self.atoms_per_frame < 1).any()):
            raise ValueError(f"{where}: every frame needs at least one atom")
        if n and bool((self.atomic_numbers < 1).any() or (self.atomic_numbers > 118).any()):
            raise ValueError(f"{where}: atomic numbers out of range 1..118")
        for name in ("positions_A", "cells_A", "energies_eV", "forces_eV_per_A", "stress_eV_per_A3"):
            tensor = getattr(self, name)
            if not bool(torch.isfinite(tensor).all()):
                bad = _first_bad_frame(tensor, self.atoms_per_frame, per_atom=name in ("positions_A", "forces_eV_per_A"))
                raise ValueError(f"{where}: frame {bad} has non-finite {name}")
        unperiodic = self.has_stress & ~self.pbc.all(dim=1)
        if bool(unperiodic.any()):
            raise ValueError(f"{where}: frame {int(unperiodic.nonzero()[0])} has a stress label "
                             "but is not periodic in all three directions")

    # ------------------------------------------------------------------ sizes
    @property
    def n_frames(self) -> int:
        return int(self.atoms_per_frame.shape[0])

    def __len__(self) -> int:
        return self.n_frames

    @property
    def n_atoms_total(self) -> int:
        return int(self.positions_A.shape[0])

    @property
    def frame_offsets(self) -> torch.Tensor:
        """[n_frames + 1] index of the first atom of each frame (and the total at the end)."""
        offsets = torch.zeros(self.n_frames + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(self.atoms_per_frame, dim=0)
        return offsets

    def frame_of_atom(self) -> torch.Tensor:
        """[n_atoms_total] frame index of every atom."""
        return torch.arange(self.n_frames).repeat_interleave(self.atoms_per_frame)

    def element_numbers(self) -> list[int]:
        """Atomic numbers present, ascending."""
        return sorted(set(self.atomic_numbers.tolist()))

    def volumes_A3(self) -> torch.Tensor:
        """[n_frames] |det cell| in Å³ (0 for frames without a cell)."""
        return torch.linalg.det(self.cells_A).abs()

    # ------------------------------------------------------------- selection
    def _atom_index(self, frames: torch.Tensor) -> torch.Tensor:
        offsets = self.frame_offsets
        parts = [torch.arange(int(offsets[i]), int(offsets[i + 1])) for i in frames.tolist()]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)

    def _frame_index(self, indices: int | slice | Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(indices, slice):
            return torch.arange(self.n_frames)[indices]
        if isinstance(indices, (int, np.integer)):
            indices = [int(indices)]
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long).reshape(-1)
        if idx.numel() and (int(idx.min()) < -self.n_frames or int(idx.max()) >= self.n_frames):
            raise IndexError(f"frame index out of range for a data set of {self.n_frames} frames")
        return torch.where(idx < 0, idx + self.n_frames, idx)

    def subset(self, indices: int | slice | Sequence[int] | np.ndarray | torch.Tensor) -> "DFTDataset":
        """The frames ``indices`` (in that order) as a new data set."""
        frames = self._frame_index(indices)
        atoms = self._atom_index(frames)
        return DFTDataset(
            positions_A=self.positions_A[atoms],
            atomic_numbers=self.atomic_numbers[atoms],
            atoms_per_frame=self.atoms_per_frame[frames],
            cells_A=self.cells_A[frames],
            pbc=self.pbc[frames],
            energies_eV=self.energies_eV[frames],
            forces_eV_per_A=self.forces_eV_per_A[atoms],
            stress_eV_per_A3=self.stress_eV_per_A3[frames],
            has_stress=self.has_stress[frames],
            source=self.source,
        )

    def __getitem__(self, indices: int | slice | Sequence[int] | np.ndarray | torch.Tensor) -> "DFTDataset":
        return self.subset(indices)

    # ----------------------------------------------------------- batching
    def batch(
        self,
        indices: Sequence[int] | np.ndarray | torch.Tensor,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> DFTBatch:
        """The frames ``indices`` as one :class:`DFTBatch` (positions in ``dtype``, labels float64)."""
        from ase.data import atomic_masses

        frames = self._frame_index(indices)
        if frames.numel() == 0:
            raise ValueError("a batch needs at least one frame")
        atoms = self._atom_index(frames)
        numbers = self.atomic_numbers[atoms]
        counts = self.atoms_per_frame[frames]
        masses = torch.as_tensor(atomic_masses, dtype=dtype)[numbers]
        state = State(
            positions=self.positions_A[atoms].to(dtype),
            cell=self.cells_A[frames].to(dtype),
            pbc=self.pbc[frames].clone(),
            atomic_numbers=numbers,
            masses=masses,
            system_idx=torch.arange(frames.numel()).repeat_interleave(counts),
        ).to(device=device)
        return DFTBatch(
            state=state,
            energies_eV=self.energies_eV[frames].to(device),
            forces_eV_per_A=self.forces_eV_per_A[atoms].to(device),
            stress_eV_per_A3=self.stress_eV_per_A3[frames].to(device),
            has_stress=self.has_stress[frames].to(device),
            frame_indices=frames.to(device),
        )

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> Iterator[DFTBatch]:
        """Consecutive batches of at most ``batch_size`` frames.

        Args:
            batch_size: frames per batch.
            shuffle: visit the frames in a random order drawn from ``generator``.
            generator: source of the order (a fixed one makes epochs reproducible).
            dtype: floating dtype of the positions and cells of the State.
            device: where the batch lives.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        order = torch.randperm(self.n_frames, generator=generator) if shuffle else torch.arange(self.n_frames)
        for start in range(0, self.n_frames, batch_size):
            yield self.batch(order[start : start + batch_size], dtype=dtype, device=device)

    # -------------------------------------------------------- conversions
    def to_atoms(self) -> list["Atoms"]:
        """One ASE Atoms per frame, labels in a SinglePointCalculator (stress in Voigt order)."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator
        from ase.stress import full_3x3_to_voigt_6_stress

        out = []
        offsets = self.frame_offsets.tolist()
        for i in range(self.n_frames):
            sl = slice(offsets[i], offsets[i + 1])
            atoms = Atoms(
                numbers=self.atomic_numbers[sl].numpy(),
                positions=self.positions_A[sl].numpy(),
                cell=self.cells_A[i].numpy(),
                pbc=self.pbc[i].numpy(),
            )
            results = {"energy": float(self.energies_eV[i]), "forces": self.forces_eV_per_A[sl].numpy().copy()}
            if bool(self.has_stress[i]):
                results["stress"] = full_3x3_to_voigt_6_stress(self.stress_eV_per_A3[i].numpy())
            atoms.calc = SinglePointCalculator(atoms, **results)
            out.append(atoms)
        return out

    # ------------------------------------------------------------------ I/O
    def save(self, path: str | Path) -> None:
        """Save as a torch file of plain tensors (loadable with ``weights_only=True``)."""
        torch.save(
            {
                "format": DATASET_FORMAT,
                "positions_A": self.positions_A,
                "atomic_numbers": self.atomic_numbers,
                "atoms_per_frame": self.atoms_per_frame,
                "cells_A": self.cells_A,
                "pbc": self.pbc,
                "energies_eV": self.energies_eV,
                "forces_eV_per_A": self.forces_eV_per_A,
                "stress_eV_per_A3": self.stress_eV_per_A3,
                "has_stress": self.has_stress,
                "source": self.source,
            },
            str(path),
        )

    @classmethod
    def load(cls, path: str | Path) -> "DFTDataset":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"DFT data set file not found: {path}")
        data = torch.load(str(path), weights_only=True)
        if not isinstance(data, dict) or data.get("format") != DATASET_FORMAT:
            raise ValueError(f"{path} is not an exprefine DFT data set file ({DATASET_FORMAT})")
        del data["format"]
        return cls(**data)


def _first_bad_frame(tensor: torch.Tensor, atoms_per_frame: torch.Tensor, per_atom: bool) -> int:
    rows = ~torch.isfinite(tensor.reshape(tensor.shape[0], -1)).all(dim=1)
    first = int(rows.nonzero()[0])
    if not per_atom:
        return first
    return int(torch.searchsorted(torch.cumsum(atoms_per_frame, 0), torch.tensor(first), right=True))


def concatenate_datasets(datasets: Sequence[DFTDataset], source: str | None = None) -> DFTDataset:
    """All frames of ``datasets`` in order, as one data set."""
    if not datasets:
        raise ValueError("cannot concatenate an empty list of data sets")
    return DFTDataset(
        positions_A=torch.cat([d.positions_A for d in datasets]),
        atomic_numbers=torch.cat([d.atomic_numbers for d in datasets]),
        atoms_per_frame=torch.cat([d.atoms_per_frame for d in datasets]),
        cells_A=torch.cat([d.cells_A for d in datasets]),
        pbc=torch.cat([d.pbc for d in datasets]),
        energies_eV=torch.cat([d.energies_eV for d in datasets]),
        forces_eV_per_A=torch.cat([d.forces_eV_per_A for d in datasets]),
        stress_eV_per_A3=torch.cat([d.stress_eV_per_A3 for d in datasets]),
        has_stress=torch.cat([d.has_stress for d in datasets]),
        source=source if source is not None else "+".join(sorted({d.source for d in datasets if d.source})),
    )


# ---------------------------------------------------------------- ASE frames
def _label(atoms: "Atoms", key: str, per_atom: bool) -> np.ndarray | None:
    """A label of a frame: ``atoms.arrays`` / ``atoms.info`` first, then the calculator's results."""
    store = atoms.arrays if per_atom else atoms.info
    if key in store:
        return np.asarray(store[key], dtype=float)
    calc = atoms.calc
    results = getattr(calc, "results", None) if calc is not None else None
    if results and key in results and results[key] is not None:
        return np.asarray(results[key], dtype=float)
    return None


def _as_3x3(value: np.ndarray, what: str) -> np.ndarray:
    from ase.stress import voigt_6_to_full_3x3_stress

    flat = np.asarray(value, dtype=float).reshape(-1)
    if flat.size == 9:
        return flat.reshape(3, 3)
    if flat.size == 6:
        return voigt_6_to_full_3x3_stress(flat)
    raise ValueError(f"{what} has {flat.size} components; 9 (3×3) or 6 (Voigt xx yy zz yz xz xy) expected")


def dataset_from_atoms(
    frames: Sequence["Atoms"],
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str | None = "stress",
    virial_key: str | None = None,
    source: str = "<memory>",
) -> DFTDataset:
    """Labelled frames from ASE Atoms.

    Each label is looked up in ``atoms.info`` (energy, stress, virial) or ``atoms.arrays``
    (forces) under its key, else in the attached calculator's ``results``.

    Args:
        frames: the structures.
        energy_key: total energy in eV (required).
        forces_key: forces in eV/Å (required).
        stress_key: stress in eV/Å³ (ASE sign convention; 3×3, 9 or 6 Voigt values); optional
            per frame, None ignores stress.
        virial_key: virial W in eV (stress = −W/V), used for frames without ``stress_key``;
            None ignores virials.
        source: name used in error messages (the file).

    Raises:
        ValueError: one line naming ``source``, the frame index and the missing key.
    """
    if len(frames) == 0:
        raise ValueError(f"{source}: no frames")
    positions, numbers, counts, cells, pbcs, energies, forces, stresses, has_stress = [], [], [], [], [], [], [], [], []
    for k, atoms in enumerate(frames):
        n = len(atoms)
        if n == 0:
            raise ValueError(f"{source}: frame {k} has no atoms")
        energy = _label(atoms, energy_key, per_atom=False)
        if energy is None:
            raise ValueError(f"{source}: frame {k} has no energy {energy_key!r} "
                             "(neither in atoms.info nor in calculator results)")
        force = _label(atoms, forces_key, per_atom=True)
        if force is None:
            raise ValueError(f"{source}: frame {k} has no forces {forces_key!r} "
                             "(neither in atoms.arrays nor in calculator results)")
        if force.shape != (n, 3):
            raise ValueError(f"{source}: frame {k}: forces {forces_key!r} have shape {list(force.shape)}, expected [{n}, 3]")
        stress = None
        if stress_key is not None:
            value = _label(atoms, stress_key, per_atom=False)
            if value is not None:
                stress = _as_3x3(value, f"{source}: frame {k}: stress {stress_key!r}")
        if stress is None and virial_key is not None:
            value = _label(atoms, virial_key, per_atom=False)
            if value is not None:
                volume = abs(float(np.linalg.det(atoms.cell.array)))
                if volume <= 0:
                    raise ValueError(f"{source}: frame {k} has a virial {virial_key!r} but no cell volume")
                stress = -_as_3x3(value, f"{source}: frame {k}: virial {virial_key!r}") / volume
        if stress is not None and not atoms.pbc.all():
            raise ValueError(f"{source}: frame {k} has a stress label but is not periodic in all three directions")
        positions.append(atoms.get_positions())
        numbers.append(atoms.get_atomic_numbers())
        counts.append(n)
        cells.append(np.asarray(atoms.cell.array, dtype=float))
        pbcs.append(np.asarray(atoms.pbc, dtype=bool))
        energies.append(float(np.asarray(energy).reshape(-1)[0]))
        forces.append(force)
        stresses.append(stress if stress is not None else np.zeros((3, 3)))
        has_stress.append(stress is not None)
    return DFTDataset(
        positions_A=torch.as_tensor(np.concatenate(positions)),
        atomic_numbers=torch.as_tensor(np.concatenate(numbers)),
        atoms_per_frame=torch.as_tensor(counts),
        cells_A=torch.as_tensor(np.stack(cells)),
        pbc=torch.as_tensor(np.stack(pbcs)),
        energies_eV=torch.as_tensor(np.asarray(energies, dtype=np.float64)),
        forces_eV_per_A=torch.as_tensor(np.concatenate(forces)),
        stress_eV_per_A3=torch.as_tensor(np.stack(stresses)),
        has_stress=torch.as_tensor(has_stress),
        source=str(source),
    )


def read_extxyz(
    path: str | Path,
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str | None = "stress",
    virial_key: str | None = None,
    index: str | int | slice = ":",
) -> DFTDataset:
    """Read labelled frames from an extended XYZ file (or any file ASE reads with labels).

    ASE moves the standard names (``energy``, ``forces``, ``stress``) into a
    SinglePointCalculator and leaves others (``REF_energy``, ``dft_forces`` ...) in
    ``atoms.info`` / ``atoms.arrays``; both are searched (see :func:`dataset_from_atoms`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: one line naming the file, the frame and the missing key.
    """
    path = Path(path)
    frames = read_ase_frames(path, index, "DFT data file")
    return dataset_from_atoms(frames, energy_key=energy_key, forces_key=forces_key, stress_key=stress_key,
                              virial_key=virial_key, source=str(path))


def expand_paths(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """Files named by a path, a glob pattern or a list of them; each pattern's matches sorted.

    Raises:
        FileNotFoundError: a pattern matches nothing or a plain path does not exist (named).
    """
    import glob

    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    out: list[Path] = []
    for item in items:
        text = str(item)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise FileNotFoundError(f"no file matches {text}")
            out.extend(Path(m) for m in matches)
        else:
            if not Path(text).exists():
                raise FileNotFoundError(f"DFT data file not found: {text}")
            out.append(Path(text))
    return out


def read_extxyz_files(
    paths: str | Path | Sequence[str | Path],
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str | None = "stress",
    virial_key: str | None = None,
    key: str | None = None,
) -> tuple[DFTDataset, list[str] | None]:
    """Labelled frames of several extxyz files (``.gz`` too; globs allowed) as one data set.

    Args:
        key: an ``atoms.info`` entry with a unique name per frame (e.g. ``frame_key``) to return
            alongside, for :func:`split_by_key`; None returns no names.

    Returns:
        (data set in file order, the frames' names or None).

    Raises:
        ValueError: one line naming the file and frame that lacks ``key`` or a label.
    """
    datasets, names = [], []
    for path in expand_paths(paths):
        frames = read_ase_frames(path, ":", "DFT data file")
        if key is not None:
            for i, atoms in enumerate(frames):
                if key not in atoms.info:
                    raise ValueError(f"{path}: frame {i} has no info key {key!r} (split_key)")
                names.append(str(atoms.info[key]))
        datasets.append(dataset_from_atoms(frames, energy_key=energy_key, forces_key=forces_key,
                                           stress_key=stress_key, virial_key=virial_key, source=str(path)))
    joined = datasets[0] if len(datasets) == 1 else concatenate_datasets(datasets)
    return joined, (names if key is not None else None)


def write_extxyz(dataset: DFTDataset, path: str | Path) -> Path:
    """Write every frame with its labels (``energy``, ``forces``, ``stress``) as extended XYZ."""
    from ase.io import write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write(str(path), dataset.to_atoms(), format="extxyz")
    return path


# ------------------------------------------------------------------ splits
@dataclass
class DatasetSplit:
    """A fixed train / validation / test partition of a data set's frames.

    Attributes:
        train, valid, test: the subsets.
        train_indices, valid_indices, test_indices: frame indices in the full data set (ascending).
        seed: the seed that drew the partition.
        fractions: the requested (train, valid, test) fractions.
        scheme: ``"random"`` (:func:`split`) or ``"key_hash"`` (:func:`split_by_key`).
        frame_keys: with ``"key_hash"``, the key of every frame of the full data set (in order).
    """

    train: DFTDataset
    valid: DFTDataset | None
    test: DFTDataset | None
    train_indices: list[int]
    valid_indices: list[int]
    test_indices: list[int]
    seed: int
    fractions: tuple[float, float, float]
    scheme: str = "random"
    frame_keys: list[str] | None = None

    def save_indices(self, path: str | Path) -> Path:
        """Write the partition as JSON (indices, seed, fractions, number of frames; scheme and
        the frame keys of each subset for a :func:`split_by_key` split)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        n = len(self.train_indices) + len(self.valid_indices) + len(self.test_indices)
        payload = {
            "format": SPLIT_FORMAT,
            "n_frames": n,
            "seed": self.seed,
            "fractions": list(self.fractions),
            "scheme": self.scheme,
            "train": self.train_indices,
            "valid": self.valid_indices,
            "test": self.test_indices,
        }
        if self.frame_keys is not None:
            payload["frame_keys"] = {
                name: [self.frame_keys[i] for i in indices]
                for name, indices in (("train", self.train_indices), ("valid", self.valid_indices),
                                      ("test", self.test_indices))
            }
        path.write_text(json.dumps(payload, indent=1))
        return path


def _split_from_indices(dataset: DFTDataset, train: list[int], valid: list[int], test: list[int],
                        seed: int, fractions: tuple[float, float, float]) -> DatasetSplit:
    return DatasetSplit(
        train=dataset.subset(train),
        valid=dataset.subset(valid) if valid else None,
        test=dataset.subset(test) if test else None,
        train_indices=train,
        valid_indices=valid,
        test_indices=test,
        seed=seed,
        fractions=fractions,
    )


def split(dataset: DFTDataset, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> DatasetSplit:
    """Partition the frames at random (reproducibly for a given seed) into train / valid / test.

    The numbers of frames are round(f_valid·N) and round(f_test·N) for validation and test
    and the rest for training; indices within each subset are ascending.
    """
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    n = dataset.n_frames
    n_valid = int(round(fr[1] * n))
    n_test = int(round(fr[2] * n))
    n_train = n - n_valid - n_test
    if n_train < 1:
        raise ValueError(f"a split of {n} frames with fractions {list(fr)} leaves no training frame")
    order = np.random.default_rng(int(seed)).permutation(n)
    train = sorted(order[:n_train].tolist())
    valid = sorted(order[n_train : n_train + n_valid].tolist())
    test = sorted(order[n_train + n_valid :].tolist())
    return _split_from_indices(dataset, train, valid, test, int(seed), fr)  # type: ignore[arg-type]


def key_hash_fraction(key: str, seed: int = 0) -> float:
    """u ∈ [0, 1) from the SHA-256 of ``"<seed>:<key>"``: a frame's fixed random number."""
    digest = hashlib.sha256(f"{int(seed)}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_by_key(
    dataset: DFTDataset,
    keys: Sequence[str],
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> DatasetSplit:
    """Partition by a hash of each frame's key, so that a frame's subset never changes.

    Frame k goes to training if u_k < f_train, to validation if u_k < f_train + f_valid,
    else to test, with u_k = :func:`key_hash_fraction` (key_k, seed). A frame's subset depends
    only on its own key and the seed, not on the other frames: when a data set grows (more
    frames labelled later), old frames keep their subsets, and a test frame is never trained
    on by any model fitted to any version of the data set. Subset sizes follow the fractions
    only on average; a subset with a positive fraction that comes out empty (tiny data sets)
    takes the training frame with the largest u (validation first, then test) while at least
    one training frame is left.

    Args:
        dataset: the frames.
        keys: one unique string per frame (e.g. the label cache's ``frame_key``).
        fractions: (train, valid, test), non-negative, summing to 1.
        seed: salt of the hash.
    """
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    keys = [str(k) for k in keys]
    if len(keys) != dataset.n_frames:
        raise ValueError(f"{len(keys)} keys for a data set of {dataset.n_frames} frames")
    if len(set(keys)) != len(keys):
        raise ValueError("frame keys must be unique")
    u = np.array([key_hash_fraction(k, seed) for k in keys])
    subset = np.where(u < fr[0], 0, np.where(u < fr[0] + fr[1], 1, 2))
    for which in (1, 2):
        if fr[which] > 0 and not (subset == which).any() and (subset == 0).sum() > 1:
            candidates = np.flatnonzero(subset == 0)
            subset[candidates[np.argmax(u[candidates])]] = which
    train, valid, test = (np.flatnonzero(subset == k).tolist() for k in range(3))
    if not train:
        raise ValueError(f"a key-hash split of {dataset.n_frames} frames with fractions {list(fr)} "
                         "leaves no training frame")
    out = _split_from_indices(dataset, train, valid, test, int(seed), fr)  # type: ignore[arg-type]
    out.scheme = "key_hash"
    out.frame_keys = keys
    return out


def load_split(dataset: DFTDataset, path: str | Path) -> DatasetSplit:
    """The partition saved by :meth:`DatasetSplit.save_indices`, applied to ``dataset``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("format") != SPLIT_FORMAT:
        raise ValueError(f"{path} is not an exprefine split file ({SPLIT_FORMAT})")
    if int(data["n_frames"]) != dataset.n_frames:
        raise ValueError(f"{path} splits {data['n_frames']} frames but the data set has {dataset.n_frames}")
    train, valid, test = (list(map(int, data[k])) for k in ("train", "valid", "test"))
    if sorted(train + valid + test) != list(range(dataset.n_frames)):
        raise ValueError(f"{path}: the subsets do not partition the frames 0..{dataset.n_frames - 1}")
    out = _split_from_indices(dataset, train, valid, test, int(data["seed"]), tuple(data["fractions"]))
    out.scheme = str(data.get("scheme", "random"))
    if "frame_keys" in data:
        keys = [""] * dataset.n_frames
        for name, indices in (("train", train), ("valid", valid), ("test", test)):
            for i, key in zip(indices, data["frame_keys"][name]):
                keys[i] = str(key)
        out.frame_keys = keys
    return out

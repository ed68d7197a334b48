#!/usr/bin/env bash
# Build and install DeePMD-kit (PyTorch backend, CPU) from source into the active Python
# environment, against the torch that is already installed there.
#
# Why a source build: the deepmd-kit 3.2.0 wheel on PyPI is compiled against torch 2.11 (its
# [torch] extra pins torch==2.11.0, a multi-GB CUDA download) and does not load with another
# torch. Plain deepmd-kit (no [torch] extra, which would also pin e3nn>=0.5.9 against mace-torch's
# e3nn==0.4.4) is built here with only the PyTorch backend (no TensorFlow, JAX or Paddle).
#
# Usage, in the project's virtual environment after `pip install -e ".[test]"`:
#     bash scripts/install_deepmd.sh
# Environment:
#     PYTHON                      python of the target environment (default: python on PATH)
#     DEEPMD_VERSION              default 3.2.0
#     CMAKE_BUILD_PARALLEL_LEVEL  compile jobs, default 2
#     DEEPMD_CACHE_DIR            where the sdist and the built wheel are kept between runs
#                                 (default: <pip cache dir>/exprefine-deepmd); cache this folder
#                                 in CI to skip the ~4 minute compilation
#     DEEPMD_FORCE=1              reinstall even if deepmd.pt already works
#
# Idempotent: exits at once when deepmd's PyTorch model code imports with the installed torch.
# Otherwise it installs the build requirements (and mpich, which deepmd's compiled operators link
# to at run time), downloads the sdist once, builds a wheel once per (deepmd, torch, python)
# version and installs it over whatever deepmd-kit was there (e.g. a PyPI wheel that does not load).
# torch itself is never changed: pip runs with a constraint on the installed torch version.
set -euo pipefail

PYTHON="${PYTHON:-python}"
DEEPMD_VERSION="${DEEPMD_VERSION:-3.2.0}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"

check_import() {
    # deepmd.pt.model imports e3nn; e3nn 0.4.4 (pinned by mace-torch) calls torch.load without
    # weights_only at import, which torch >= 2.6 accepts only with this variable (exprefine's
    # import_deepmd handles it without the variable)
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 "$PYTHON" -c 'import torch, deepmd.pt, deepmd.pt.model.model' >/dev/null 2>&1
}

TORCH_VERSION="$("$PYTHON" -c 'import torch; print(torch.__version__)')" || {
    echo "install_deepmd.sh: torch is not installed for $PYTHON; install exprefine (and torch) first" >&2
    exit 1
}
if [[ "${DEEPMD_FORCE:-0}" != "1" ]] && check_import; then
    echo "install_deepmd.sh: deepmd.pt already imports with torch ${TORCH_VERSION}; nothing to do"
    exit 0
fi

start=$(date +%s)
echo "install_deepmd.sh: installing deepmd-kit ${DEEPMD_VERSION} (PyTorch backend, CPU) for torch ${TORCH_VERSION}"

# never let pip replace the installed torch
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "torch==${TORCH_VERSION}" >"$constraints"

PIP=("$PYTHON" -m pip)
CACHE_DIR="${DEEPMD_CACHE_DIR:-$("${PIP[@]}" cache dir 2>/dev/null || echo "$HOME/.cache/pip")/exprefine-deepmd}"
PY_TAG="$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
WHEEL_DIR="$CACHE_DIR/deepmd_kit-${DEEPMD_VERSION}-torch${TORCH_VERSION}-${PY_TAG}"
mkdir -p "$CACHE_DIR" "$WHEEL_DIR"

# mpich: libdeepmd_op_pt.so links libmpi at run time
"${PIP[@]}" install -c "$constraints" mpich

shopt -s nullglob
wheels=("$WHEEL_DIR"/deepmd_kit-"${DEEPMD_VERSION}"-*.whl)
if (( ${#wheels[@]} == 0 )); then
    # build requirements, installed into the environment: the build must see the installed torch
    # (--no-build-isolation), so they cannot come from an isolated build environment
    "${PIP[@]}" install -c "$constraints" \
        scikit-build-core packaging dependency_groups cmake ninja setuptools_scm hatch-fancy-pypi-readme
    SDIST="$CACHE_DIR/deepmd_kit-${DEEPMD_VERSION}.tar.gz"
    if [[ ! -f "$SDIST" ]]; then
        "${PIP[@]}" download --no-deps --no-binary deepmd-kit -d "$CACHE_DIR" "deepmd-kit==${DEEPMD_VERSION}"
    fi
    echo "install_deepmd.sh: compiling (about 4 minutes on 2 cores)"
    DP_VARIANT=cpu DP_ENABLE_TENSORFLOW=0 DP_ENABLE_PYTORCH=1 DP_ENABLE_PADDLE=0 \
        "${PIP[@]}" wheel --no-deps --no-build-isolation -w "$WHEEL_DIR" "$SDIST"
    wheels=("$WHEEL_DIR"/deepmd_kit-"${DEEPMD_VERSION}"-*.whl)
fi
WHEEL="${wheels[0]}"

# first the run-time dependencies (deepmd-kit without extras), then this build over any other
"${PIP[@]}" install -c "$constraints" "$WHEEL"
"${PIP[@]}" install -c "$constraints" --force-reinstall --no-deps "$WHEEL"

if ! check_import; then
    echo "install_deepmd.sh: deepmd-kit is installed but its PyTorch backend does not import:" >&2
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 "$PYTHON" -c 'import deepmd.pt, deepmd.pt.model.model' >&2 || true
    exit 1
fi
echo "install_deepmd.sh: done in $(( $(date +%s) - start )) s ($WHEEL)"

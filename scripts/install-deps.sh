#!/usr/bin/env bash
# Installs the Debian packages paratwin builds with, only those missing. Idempotent; needs root (or sudo) only
# when something is missing. The CUDA toolkit (nvcc, NCCL, cuBLAS, cuDNN) comes from /usr/local/cuda, not apt.
set -euo pipefail

packages=(cmake g++ make pkg-config libsimgrid-dev libfmt-dev libeigen3-dev catch2 nlohmann-json3-dev libcli11-dev
          libyaml-cpp-dev libopenmpi-dev openmpi-bin python3-matplotlib)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "paratwin: installing missing packages: ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then
    sudo_cmd=(sudo)
  else
    echo "paratwin: error: packages missing (${missing[*]}) and not running as root; install them with apt-get" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"

#!/bin/sh
# The wheels bench/gpu_proof.py needs on the GPU machine beyond what its image holds (torch, transformers,
# accelerate, triton, pytest, pillow, psutil, nvidia-ml-py are there): diffusers (pure Python) with
# importlib_metadata, and imageio-ffmpeg (its ffmpeg) for the cuda tests that write an mp4. Python 3.12 there.
# imageio-ffmpeg 0.6.0, not the newest: its wheel (about 30 MB) leaves room under the 64 MiB a device call carries.
# Run here, in the repo's root, once; the folder .whl/ is ignored by git and travels with `carry: [".whl"]`.
set -eu
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 --platform any -d .whl \
    diffusers==0.42.1 importlib_metadata==10.2.0 imageio-ffmpeg==0.6.0
ls -la .whl

#!/usr/bin/env bash
# Downloads the wheels of benchmarks/gpu_wheels.txt into .whl/ (git-ignored) for the GPU machine: Python 3.12,
# x86_64 Linux, no dependencies; then checks that they fit what a device call carries (64 MiB with the
# working tree; the wheels are held to WHEEL_LIMIT_MIB) and prints their total size.
#
#   bash benchmarks/gpu_wheels.sh && bash-on-the-device: bash benchmarks/gpu_check.sh   (carry: .whl)
set -euo pipefail
cd "$(dirname "$0")/.."
limit_mib=${WHEEL_LIMIT_MIB:-32}
rm -rf .whl && mkdir .whl
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$tag")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d .whl -r benchmarks/gpu_wheels.txt
total_kib=$(du -sk .whl | cut -f1)
echo "$(ls .whl | wc -l) wheels, $((total_kib / 1024)) MiB in .whl/"
if (( total_kib > limit_mib * 1024 )); then
    echo "error: the wheels take $((total_kib / 1024)) MiB, over the ${limit_mib} MiB kept for them" >&2
    exit 1
fi

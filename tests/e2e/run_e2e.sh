#!/bin/bash
# The end-to-end test of the vfio source: builds the guest, boots it under
# QEMU (TCG: no /dev/kvm needed) with an emulated Intel IOMMU and the edu
# DMA device, and passes only if the guest's tenant printed
# "PHYSPOOL-E2E: PASS" (its verdicts come from bytes read back after real
# DMA) and QEMU exited cleanly.
# Usage: run_e2e.sh BUILD_DIR
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "$1" && pwd)
OUT="$BUILD/tests/e2e/guest"
command -v qemu-system-x86_64 >/dev/null ||
  { echo "FAIL: qemu-system-x86_64 is missing (make deps installs qemu-system-x86)"; exit 1; }
start=$(date +%s%N)
"$HERE/build_guest.sh" "$BUILD" "$OUT" || { echo "FAIL: guest build"; exit 1; }
echo "e2e: guest built in $(( ($(date +%s%N) - start) / 1000000 )) ms"
LOG="$OUT/serial.log"
start=$(date +%s%N)
timeout "${PHYSPOOL_E2E_TIMEOUT:-600}" qemu-system-x86_64 \
  -machine q35,kernel-irqchip=split -accel tcg -cpu max -m 1G -smp 2 \
  -device intel-iommu,intremap=on -device edu \
  -kernel "$OUT/vmlinuz" -initrd "$OUT/initramfs.cpio.gz" \
  -append "console=ttyS0 intel_iommu=on panic=-1 quiet" \
  -display none -nodefaults -no-reboot -serial stdio > "$LOG" 2>&1
rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
cat "$LOG"
echo "e2e: QEMU (TCG) exit $rc after $ms ms, boot to power-off"
if [ "$rc" != 0 ]; then echo "FAIL: QEMU exited $rc"; exit 1; fi
if ! grep -aq '^PHYSPOOL-E2E: PASS' "$LOG"; then echo "FAIL: the guest did not report PASS"; exit 1; fi
echo "e2e: PASS"

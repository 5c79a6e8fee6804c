#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The end-to-end test of the vfio source: builds the guest, boots it under
# QEMU (TCG: no /dev/kvm needed) with an emulated Intel IOMMU and the edu
# DMA device (four of them) on two NUMA nodes, and passes only if QEMU
# exited cleanly and the guest's tenant (its verdicts come from bytes read
# back after real DMA) printed "PHYSPOOL-E2E: PASS", completed all five
# phases without a failed check ("PHYSPOOL-E2E-PHASE:
# <vfio|memfd|domains|numa|1g> complete, 0 failed checks"), printed no
# "FAIL:" line and exited 0.
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
# Two NUMA nodes, a CPU and a memory backend each. Node 1 holds the 1 GiB
# hugetlb page the kernel reserves at boot (hugepagesz=1G hugepages=1:1;
# -cpu max has pdpe1gb), which needs a free, 1 GiB-aligned GiB of it: q35
# puts RAM above 2 GiB at 4 GiB, so node 1 is [1.5G, 2G) (QEMU loads the
# initrd just below 2 GiB) and [4G, 5.5G), whose top takes the kernel's
# early (top-down) allocations and [4G, 5G) the page. Four edus: three
# with edu's 28-bit DMA mask, and at slot 0x10 (the last) one with a 40-bit
# mask for the numa and 1g phases (a 1 GiB page sits at IOVA 1 GiB).
timeout "${PHYSPOOL_E2E_TIMEOUT:-600}" qemu-system-x86_64 \
  -machine q35,kernel-irqchip=split -accel tcg -cpu max -m 3584M -smp 2 \
  -object memory-backend-ram,id=m0,size=1536M \
  -object memory-backend-ram,id=m1,size=2G \
  -numa node,nodeid=0,cpus=0,memdev=m0 -numa node,nodeid=1,cpus=1,memdev=m1 \
  -device intel-iommu,intremap=on -device edu -device edu -device edu \
  -device edu,dma_mask=0xffffffffff,addr=0x10 \
  -kernel "$OUT/vmlinuz" -initrd "$OUT/initramfs.cpio.gz" \
  -append "console=ttyS0 intel_iommu=on panic=-1 quiet hugepagesz=1G hugepages=1:1" \
  -display none -nodefaults -no-reboot -serial stdio > "$LOG" 2>&1
rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
cat "$LOG"
echo "e2e: QEMU (TCG) exit $rc after $ms ms, boot to power-off"
if [ "$rc" != 0 ]; then echo "FAIL: QEMU exited $rc"; exit 1; fi
# The serial console ends lines with \r\n.
TEXT="$OUT/serial.txt"
tr -d '\r' < "$LOG" > "$TEXT"
failed=0
fail() { echo "FAIL: $*"; failed=1; }
grep -aq '^PHYSPOOL-E2E: PASS' "$TEXT" || fail "the guest did not report PASS"
if grep -aq '^PHYSPOOL-E2E: FAIL' "$TEXT"; then fail "the guest reported FAIL"; fi
if grep -a '^FAIL: ' "$TEXT"; then fail "checks failed in the guest (above)"; fi
for phase in vfio memfd domains numa 1g; do
  grep -aq "^PHYSPOOL-E2E-PHASE: $phase complete, 0 failed checks" "$TEXT" ||
    fail "phase $phase did not complete without failures"
done
grep -aq '^INIT: tenant exit code 0 ' "$TEXT" || fail "the tenant did not exit 0"
[ "$failed" = 0 ] || exit 1
echo "e2e: PASS"

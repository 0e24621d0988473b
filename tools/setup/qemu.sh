# The qemu driver: the system emulators (x86_64, and aarch64 for arm64 guests) and qemu-img, a
# static busybox for the guest's initramfs, kmod (depmod) and xz for the guest kernel fixture
# (tools/fixtures/qemu-kernel.sh). arm64 guests boot their kernel directly on the virt machine,
# so no firmware (qemu-efi-aarch64) is needed.
setup_qemu() {
  apt_install qemu-system-x86 qemu-system-arm qemu-utils busybox-static kmod xz-utils
  # The arm64 fixtures (tools/fixtures/qemu-kernel-arm64.sh, busybox-rootfs-arm64.sh) download
  # arm64 packages with apt-get download, which needs arm64 in apt's architectures and lists.
  if [ "$(dpkg --print-architecture)" != arm64 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    say "adding the arm64 architecture to apt (for the arm64 guest fixtures)"
    dpkg --add-architecture arm64
    apt-get update -qq
    APT_UPDATED=1
  fi
}
setup_qemu

# The qemu driver: the system emulator and qemu-img, a static busybox for the guest's initramfs,
# kmod (depmod) and xz for the guest kernel fixture (tools/fixtures/qemu-kernel.sh).
setup_qemu() {
  apt_install qemu-system-x86 qemu-utils busybox-static kmod xz-utils
}
setup_qemu

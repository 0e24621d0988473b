export { ARCH_NAMES, type ArchNames, archNames, hostArch } from '@execenv/core/driver';

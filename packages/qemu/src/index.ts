/**
 * @execenv/qemu: the QEMU driver of execenv. Importing it registers the
 * driver as `qemu`.
 * @packageDocumentation
 */
import { register } from '@execenv/core';
import { QemuDriver } from './qemu-driver.js';

export {
  type AccelChoice,
  chooseAccel,
  hostTscKhz,
  KVM_PROBE_INPUT,
  type KvmProbe,
  kvmProbeArgv,
  probeKvm,
  readKvmProbe,
} from './accel.js';
export { elfArch, kernelImageArch, rootArch } from './binary-arch.js';
export { type CpioEntry, packCpio } from './cpio.js';
export { checkSnapshotName, DiskSnapshots, type DiskSnapshotsInit } from './disk-snapshots.js';
export { type GuestNetwork, nicArgv, type QemuNic, USER_NETWORK, userNetwork } from './guest-network.js';
export { type GuestAgent, GuestSession, type GuestStaging } from './guest-session.js';
export { AGENT_PORT_NAME, buildInitramfs, type InitramfsInputs, initScript } from './initramfs.js';
export { BOOT_MODULES, loadKernel, moduleLoadOrder, NET_MODULES, type QemuKernel } from './kernel.js';
export {
  machineArch,
  machineOption,
  QEMU_ARCHES,
  type QemuArch,
  type QemuMachine,
  type QemuMachineType,
  qemuArgv,
  ROOT_DRIVE,
} from './qemu-command.js';
export { DRIVER_NAME, QemuDriver } from './qemu-driver.js';
export { type GuestRestart, QemuEnvironment, type QemuEnvironmentInit } from './qemu-environment.js';
export {
  type CheckedEnvOptions,
  type CheckedPortForward,
  checkEnvOptions,
  type PortForward,
  type QemuDriverOptions,
  type QemuEnvOptions,
  type UserNetworkOptions,
} from './qemu-options.js';
export { QmpClient, type QmpEvent } from './qmp.js';
export {
  GUEST_PULL_DIR,
  GUEST_STAGING_DIR,
  PULL_TAG,
  PullStaging,
  PushStaging,
  STAGING_TAG,
  type StagedArchive,
} from './staging.js';

register('qemu', new QemuDriver());

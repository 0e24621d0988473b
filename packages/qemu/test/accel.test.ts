import type { ProcessRunner, RunningProcess, RunOptions, RunResult } from '@execenv/core';
import { FakeRunner } from '@execenv/core/testing';
import { describe, expect, it } from 'vitest';
import { chooseAccel, KVM_PROBE_INPUT, kvmProbeArgv, probeKvm, readKvmProbe } from '../src/accel.js';
import { QemuDriver } from '../src/qemu-driver.js';

const GREETING =
  '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}\n';

/** QEMU 7.2 on a host where KVM runs guests. */
const KVM_WORKS: Omit<RunResult, 'argv'> = {
  exitCode: 0,
  signal: null,
  stdout: `${GREETING}{"return": {}}
{"return": {"enabled": true, "present": true}, "id": "kvm"}
{"timestamp": {"seconds": 1795449213, "microseconds": 366309}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}
{"return": {}}
`,
  stderr: '',
};

/** QEMU 7.2 where /dev/kvm opens but cannot run a guest with the host's CPU (a nested guest without vmx/svm). */
const KVM_FAILS_ON_CPU: Omit<RunResult, 'argv'> = {
  exitCode: null,
  signal: 'SIGABRT',
  stdout: GREETING,
  stderr: `qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69
qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion \`ret == cpu->kvm_msr_buf->nmsrs' failed.
`,
};

/** QEMU 7.2 without the KVM module. */
const NO_KVM_MODULE: Omit<RunResult, 'argv'> = {
  exitCode: 1,
  signal: null,
  stdout: '',
  stderr: `Could not access KVM kernel module: No such file or directory
qemu-system-x86_64: -accel kvm: failed to initialize kvm: No such file or directory
`,
};

/** A runner whose every command answers as `answer` does. */
class RecordedRunner implements ProcessRunner {
  readonly ran: { argv: readonly string[]; opts: RunOptions | undefined }[] = [];
  constructor(readonly answer: Omit<RunResult, 'argv'>) {}
  async run(argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    this.ran.push({ argv, opts });
    return { argv, ...this.answer };
  }
  spawn(): RunningProcess {
    throw new Error('the probe spawns nothing');
  }
}

describe('the KVM probe', () => {
  it('starts the guests machine with KVM and the host CPU, stopped, and asks QMP', async () => {
    const runner = new RecordedRunner(KVM_WORKS);
    expect(await probeKvm(runner, 'qemu-system-x86_64', 'q35')).toEqual({ works: true });
    expect(runner.ran).toHaveLength(1);
    expect(runner.ran[0]!.argv).toEqual([
      'qemu-system-x86_64',
      '-machine',
      'q35',
      '-accel',
      'kvm',
      '-cpu',
      'host',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-S',
      '-qmp',
      'stdio',
    ]);
    expect(runner.ran[0]!.opts).toMatchObject({ input: KVM_PROBE_INPUT, check: false });
    expect(
      KVM_PROBE_INPUT.trim()
        .split('\n')
        .map((l) => JSON.parse(l)),
    ).toEqual([{ execute: 'qmp_capabilities' }, { execute: 'query-kvm', id: 'kvm' }, { execute: 'quit' }]);
    expect(kvmProbeArgv('qemu-system-x86_64', 'microvm')[2]).toBe('microvm,x-option-roms=off,rtc=on');
  });

  it("quotes QEMU's error when KVM does not start", () => {
    expect(readKvmProbe({ argv: ['qemu-system-x86_64'], ...KVM_FAILS_ON_CPU })).toEqual({
      works: false,
      error:
        "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69; qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.",
    });
    expect(readKvmProbe({ argv: ['qemu-system-x86_64'], ...NO_KVM_MODULE }).error).toBe(
      'Could not access KVM kernel module: No such file or directory; qemu-system-x86_64: -accel kvm: failed to initialize kvm: No such file or directory',
    );
  });

  it('says how QEMU ended when it printed nothing, and keeps warnings only when there is nothing else', () => {
    const argv = ['qemu-system-x86_64'];
    expect(readKvmProbe({ argv, exitCode: null, signal: 'SIGKILL', stdout: '', stderr: '' }).error).toBe(
      'QEMU ended with signal SIGKILL',
    );
    expect(readKvmProbe({ argv, exitCode: 0, signal: null, stdout: GREETING, stderr: '' }).error).toMatch(
      /query-kvm says KVM is not enabled/,
    );
    const warned = "qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.01H:ECX.pni [bit 0]\n";
    expect(readKvmProbe({ argv, exitCode: 1, signal: null, stdout: '', stderr: warned }).error).toMatch(/pni/);
    expect(
      readKvmProbe({ argv, exitCode: 1, signal: null, stdout: '', stderr: `${warned}qemu-system-x86_64: broken\n` })
        .error,
    ).toBe('qemu-system-x86_64: broken');
  });

  it('reports a binary that cannot run instead of throwing', async () => {
    const runner = new FakeRunner();
    runner.run = () => Promise.reject(new Error('spawn qemu-system-x86_64 ENOENT'));
    expect(await probeKvm(runner, 'qemu-system-x86_64', 'microvm')).toEqual({
      works: false,
      error: 'qemu-system-x86_64 could not run: spawn qemu-system-x86_64 ENOENT',
    });
  });
});

describe('chooseAccel', () => {
  it("takes KVM when QEMU started with it, else TCG with QEMU's reason; a forced choice is kept", () => {
    expect(chooseAccel('auto', { works: true }).accel).toBe('kvm');
    expect(chooseAccel('auto', { works: false, error: 'Could not access KVM kernel module' })).toEqual({
      accel: 'tcg',
      reason: 'KVM does not work here (Could not access KVM kernel module): software emulation (TCG)',
    });
    expect(chooseAccel('tcg', { works: true }).accel).toBe('tcg');
    expect(chooseAccel('kvm', { works: false }).accel).toBe('kvm');
  });
});

describe('QemuDriver.accel', () => {
  it('probes once per driver, on its machine type', async () => {
    const runner = new RecordedRunner(KVM_FAILS_ON_CPU);
    const driver = new QemuDriver({ runner, machine: 'pc' });
    const [first, second] = await Promise.all([driver.accel(), driver.accel()]);
    expect(first).toEqual(second);
    expect(await driver.accel()).toEqual(first);
    expect(first.accel).toBe('tcg');
    expect(first.reason).toMatch(/^KVM does not work here \(qemu-system-x86_64: error: failed to set MSR 0x10a/);
    expect(runner.ran).toHaveLength(1);
    expect(runner.ran[0]!.argv.slice(1, 3)).toEqual(['-machine', 'pc']);
  });

  it('takes KVM where it starts, and starts nothing when the accelerator is forced', async () => {
    const runner = new RecordedRunner(KVM_WORKS);
    expect((await new QemuDriver({ runner }).accel()).accel).toBe('kvm');
    expect((await new QemuDriver({ runner, accel: 'tcg' }).accel()).accel).toBe('tcg');
    expect((await new QemuDriver({ runner, accel: 'kvm' }).accel()).accel).toBe('kvm');
    expect(runner.ran).toHaveLength(1);
  });
});

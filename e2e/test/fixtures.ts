/** Path of the busybox fixture rootfs (plain tar); set by global-setup. */
export function busyboxTarball(ext: '' | '.gz' | '.xz' | '.zst' | '.bz2' = ''): string {
  const path = process.env.EXECENV_FIXTURE_BUSYBOX;
  if (!path) throw new Error('EXECENV_FIXTURE_BUSYBOX is not set: run through vitest (global-setup builds fixtures)');
  return `${path}${ext}`;
}

/** Path of the Debian bookworm minbase fixture rootfs (tar.zst); set by global-setup. */
export function minbaseTarball(): string {
  const path = process.env.EXECENV_FIXTURE_MINBASE;
  if (!path) throw new Error('EXECENV_FIXTURE_MINBASE is not set: run through vitest (global-setup builds fixtures)');
  return path;
}

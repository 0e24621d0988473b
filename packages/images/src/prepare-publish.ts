import { type Environment, type ExecOptions, isPublishable, publish, UnsupportedError } from '@execenv/core';

/**
 * One setup step: a command, or files to push.
 *
 * @example
 * ```ts
 * import { type PrepareStep, prepareAndPublish } from '@execenv/images';
 * const steps: PrepareStep[] = [
 *   { push: './sources.list', to: '/etc/apt/sources.list', mode: 0o644 }, // a host path, or bytes
 *   { run: ['apt-get', 'update'] },
 *   { run: ['apt-get', 'install', '-y', 'build-essential'], options: { env: { DEBIAN_FRONTEND: 'noninteractive' } } },
 * ];
 * const image = await prepareAndPublish(env, steps, 'build-env');
 * ```
 */
export type PrepareStep =
  | { run: string[]; options?: ExecOptions }
  | { push: string | Uint8Array; to: string; mode?: number };

/**
 * Runs setup steps in an environment and publishes the result as an image
 * named `alias` (the autopkgtest-build-lxd flow); returns the image
 * reference. A failing step throws ExecError and nothing is published; an
 * environment without the publish capability throws UnsupportedError before
 * any step runs. The environment stays open: its owner closes it.
 *
 * @example
 * ```ts
 * import { open } from '@execenv/core';
 * import { prepareAndPublish } from '@execenv/images';
 * const env = await open('lxd', { image: '/srv/minbase.tar.zst' });
 * try {
 *   const image = await prepareAndPublish(env, [{ run: ['apt-get', 'install', '-y', 'make'] }], 'build-env');
 *   console.log(image); // 'lxd:build-env'
 * } finally {
 *   await env.close();
 * }
 * ```
 */
export async function prepareAndPublish(
  env: Environment,
  steps: readonly PrepareStep[],
  alias: string,
): Promise<string> {
  if (!isPublishable(env)) throw new UnsupportedError(env.driver, 'publish', { envId: env.id, op: 'publish' });
  for (const step of steps) {
    if ('run' in step) await env.exec(step.run, { ...step.options, check: true });
    else await env.push(step.push, step.to, step.mode === undefined ? {} : { mode: step.mode });
  }
  return publish(env, alias);
}

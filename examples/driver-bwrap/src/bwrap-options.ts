import type { ProcessRunner } from '@execenv/core';

/** Options of a BwrapDriver, fixed when it is made. */
export interface BwrapDriverOptions {
  /**
   * Runs every host command (bwrap, cp); tests hand in a fake one.
   * @default hostRunner() from `@execenv/core`
   */
  runner?: ProcessRunner;
  /**
   * Where images are downloaded and unpacked, shared with the other drivers.
   * @default defaultCacheDir() from `@execenv/core`
   */
  cacheDir?: string;
}

/** The networks a bwrap environment can have. */
export const BWRAP_NETWORKS = ['none', 'host'] as const;

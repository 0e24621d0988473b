import { UnsupportedError } from '../errors.js';
import type { EnvSpec } from '../spec.js';

/**
 * Top-level fields of EnvSpec.
 *
 * @example
 * ```ts
 * import { refuseUnsupported, type SpecField } from '@execenv/core/driver';
 * const UNSUPPORTED: readonly SpecField[] = ['mounts', 'resources'];
 * refuseUnsupported('foo', spec, UNSUPPORTED);
 * ```
 */
export type SpecField = keyof EnvSpec;

/**
 * unsupportedField is the error for a spec field a driver cannot honour:
 * UNSUPPORTED, naming the field (`spec.mounts`), so callers and the
 * conformance suite know a gap from a bug. Never accept such a field and
 * ignore it: a caller who asked for `network: 'none'` or a read-only mount
 * must not get less without being told.
 *
 * @example
 * ```ts
 * import { unsupportedField } from '@execenv/core/driver';
 * // In a driver's open(), before anything is created:
 * if (spec.mounts?.some((m) => m.readOnly)) throw unsupportedField('foo', 'mounts', 'read-only mounts');
 * ```
 */
export function unsupportedField(driver: string, field: SpecField | string, why?: string): UnsupportedError {
  const error = new UnsupportedError(driver, `spec.${field}${why ? ` (${why})` : ''}`, { op: 'open' });
  return Object.assign(error, { field });
}

/**
 * refuseUnsupported throws unsupportedField for the first of `fields` that
 * `spec` sets; call it first in open, before anything is created.
 *
 * @example
 * ```ts
 * import { validateSpec } from '@execenv/core';
 * import { refuseUnsupported } from '@execenv/core/driver';
 * const checked = validateSpec(spec, 'foo');
 * refuseUnsupported('foo', checked, ['mounts', 'resources']); // UNSUPPORTED naming the first one set
 * ```
 */
export function refuseUnsupported(driver: string, spec: EnvSpec<unknown>, fields: readonly SpecField[]): void {
  for (const field of fields) {
    const value = spec[field];
    if (value === undefined) continue;
    if (Array.isArray(value) && value.length === 0) continue;
    throw unsupportedField(driver, field);
  }
}

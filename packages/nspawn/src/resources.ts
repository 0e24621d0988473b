import { parseSize, type ResourceSpec } from '@execenv/core';
import { unsupportedField } from '@execenv/core/driver';

/**
 * The systemd unit properties that enforce `resources` on the container's
 * scope: `cpu` as CPUQuota (100% per CPU), `memory` as MemoryMax. A disk
 * size cannot be enforced on a directory tree: UnsupportedError naming `resources.disk`.
 */
export function resourceProperties(resources: ResourceSpec | undefined): string[] {
  if (!resources) return [];
  if (resources.disk !== undefined)
    throw unsupportedField('nspawn', 'resources.disk', 'a directory tree has no size limit');
  const properties: string[] = [];
  if (resources.cpu !== undefined) properties.push(`CPUQuota=${resources.cpu * 100}%`);
  if (resources.memory !== undefined) properties.push(`MemoryMax=${parseSize(resources.memory)}`);
  return properties;
}

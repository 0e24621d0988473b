import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_REQUEST_TIMEOUT_MS, type ImageSettings, imageCacheOf, imageSettings } from '@execenv/images';
import { Command } from 'commander';
import type { CommandContext } from '../command-context.js';
import { configFilePath, type Setting } from '../config.js';
import { Output } from '../output.js';
import { examples, withJson, withVerbosity } from './common-options.js';

/** The variables @execenv/images reads, by the setting they set. */
const IMAGE_VARIABLES: Record<keyof ImageSettings, string[]> = {
  servers: ['EXECENV_IMAGE_SERVER', 'EXECENV_SIMPLESTREAMS_SERVER'],
  keys: ['EXECENV_IMAGE_KEYS'],
  verify: ['EXECENV_IMAGE_VERIFY'],
  cacheDir: ['EXECENV_IMAGE_CACHE_DIR'],
  budgetBytes: ['EXECENV_IMAGE_BUDGET'],
  refresh: ['EXECENV_IMAGE_REFRESH'],
  maxIndexAgeMs: ['EXECENV_INDEX_MAX_AGE'],
  timeoutMs: ['EXECENV_IMAGE_TIMEOUT'],
  attempts: [],
  backoffMs: [],
};

/** What an unset image setting means, as @execenv/images documents it. */
function imageDefault(key: keyof ImageSettings, env: NodeJS.ProcessEnv): unknown {
  switch (key) {
    case 'verify':
      return true;
    case 'cacheDir':
      return imageCacheOf({}, env).dir;
    case 'timeoutMs':
      return DEFAULT_REQUEST_TIMEOUT_MS;
    default:
      return undefined;
  }
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/**
 * The effective image settings with where each came from. @execenv/images
 * layers defaults, the configuration file's `images` section and `EXECENV_*`
 * variables; reading it again without the variables, and without the file,
 * tells the layers apart.
 */
export async function imageSettingSources(env: NodeJS.ProcessEnv): Promise<Record<string, Setting<unknown>>> {
  const file = configFilePath(env);
  const imageVariables = new Set(Object.values(IMAGE_VARIABLES).flat());
  const withoutVariables = Object.fromEntries(Object.entries(env).filter(([k]) => !imageVariables.has(k)));
  const noFile = join(tmpdir(), `execenv-no-config-${randomBytes(6).toString('hex')}`, 'config.json');
  const effective = await imageSettings({ env, configFile: file });
  const fromFile = await imageSettings({ env: withoutVariables, configFile: file });
  const defaults = await imageSettings({ env: withoutVariables, configFile: noFile });
  const out: Record<string, Setting<unknown>> = {};
  for (const key of Object.keys(IMAGE_VARIABLES) as (keyof ImageSettings)[]) {
    const value = effective[key];
    let setting: Setting<unknown>;
    if (!same(value, fromFile[key]))
      setting = {
        value,
        source: 'env',
        origin: IMAGE_VARIABLES[key]
          .filter((v) => env[v])
          .map((v) => `$${v}`)
          .join(', '),
      };
    else if (!same(value, defaults[key])) setting = { value, source: 'file', origin: `${file} (images.${key})` };
    else
      setting = {
        value: value ?? imageDefault(key, env),
        source: 'default',
        origin: value === undefined && imageDefault(key, env) === undefined ? 'not set' : '@execenv/images',
      };
    out[`images.${key}`] = setting;
  }
  return out;
}

function show(value: unknown): string {
  if (value === undefined) return '-';
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

/** `execenv config`. */
export function configCommand(ctx: CommandContext): Command {
  const command = new Command('config')
    .summary('show the effective settings and where each came from')
    .description(
      'Show the effective settings and where each came from: a default, the configuration file, or an EXECENV_* variable.\n' +
        'The file ($EXECENV_CONFIG, else $XDG_CONFIG_HOME/execenv/config.json) holds "driver", "image" and "plugins" for the\n' +
        'command line and an "images" section (servers, keys, verify, cacheDir, budgetBytes, ...) that every driver reads too.',
    );
  withVerbosity(withJson(command)).addHelpText(
    'after',
    examples(
      'execenv config',
      'EXECENV_DRIVER=podman execenv config --json',
      `echo '{"driver":"nspawn","images":{"budgetBytes":10737418240}}' > ~/.config/execenv/config.json`,
    ),
  );
  return command.action(async (flags: { json?: boolean; quiet?: boolean; verbose?: boolean }) => {
    try {
      const out = new Output(ctx.io, flags);
      const file = configFilePath(ctx.io.env);
      const exists = (await stat(file).catch(() => undefined))?.isFile() ?? false;
      const cli = await ctx.settings();
      const settings: Record<string, Setting<unknown>> = { ...cli, ...(await imageSettingSources(ctx.io.env)) };
      if (flags.json) return out.json({ configFile: { path: file, exists }, settings });
      out.line(`# configuration file: ${file}${exists ? '' : ' (absent)'}`);
      out.table(
        ['SETTING', 'VALUE', 'FROM'],
        Object.entries(settings).map(([name, s]) => [name, show(s.value), `${s.source}: ${s.origin}`]),
      );
    } catch (err) {
      ctx.fail(err);
    }
  });
}

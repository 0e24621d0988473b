import { execFile } from 'node:child_process';
import { cp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/** Runs a host command without a shell; rejects with its output when it fails. */
export const run = promisify(execFile);

/** The repository root. */
export const REPO = fileURLToPath(new URL('../..', import.meta.url));

/** What `npm pack` made: package name → tarball path. */
export type Packs = Map<string, string>;

/**
 * Packs workspace packages with `npm pack` into `dest`, exactly as they
 * would be published (their `files`, their built `dist`).
 */
export async function packWorkspaces(names: readonly string[], dest: string): Promise<Packs> {
  await mkdir(dest, { recursive: true });
  const { stdout } = await run(
    'npm',
    ['pack', '--json', '--pack-destination', dest, ...names.flatMap((n) => ['-w', n])],
    { cwd: REPO, maxBuffer: 64 << 20 },
  );
  const packed = JSON.parse(stdout) as { name: string; filename: string; files: { path: string }[] }[];
  for (const p of packed)
    if (!p.files.some((f) => f.path === 'dist/index.js'))
      throw new Error(`${p.name} was packed without dist/index.js: build it first (npx nx run-many -t build)`);
  return new Map(packed.map((p) => [p.name, join(dest, p.filename)]));
}

/** Copies examples/<name> to `dest` without what a build or an install leaves in it. */
export async function copyExample(name: string, dest: string): Promise<string> {
  const src = join(REPO, 'examples', name);
  await cp(src, dest, {
    recursive: true,
    filter: (path) => !/\/(node_modules|dist|test-results)(\/|$)/.test(path.slice(src.length)),
  });
  return dest;
}

/**
 * Points every `@execenv/*` dependency of the package in `dir` at the packed
 * tarballs (overrides included, so no `@execenv/*` package comes from a
 * registry), then runs `npm install` there, as an outside author would after
 * `npm install ./execenv-core-0.1.0.tgz`.
 */
export async function installFromPacks(dir: string, packs: Packs): Promise<void> {
  const path = join(dir, 'package.json');
  const pkg = JSON.parse(await readFile(path, 'utf8')) as Record<string, Record<string, string> | undefined>;
  for (const field of ['dependencies', 'devDependencies'] as const)
    for (const name of Object.keys(pkg[field] ?? {})) {
      const tarball = packs.get(name);
      if (tarball) pkg[field]![name] = `file:${tarball}`;
      else if (name.startsWith('@execenv/')) throw new Error(`${dir}: ${name} was not packed`);
    }
  pkg.overrides = Object.fromEntries([...packs].map(([name, tarball]) => [name, `file:${tarball}`]));
  await writeFile(path, `${JSON.stringify(pkg, null, 2)}\n`);
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd: dir,
    maxBuffer: 64 << 20,
  });
}

/** The package names installed under node_modules of `dir`, scoped ones as `@scope/name`. */
export async function installedPackages(dir: string): Promise<string[]> {
  const top = join(dir, 'node_modules');
  const names: string[] = [];
  for (const entry of await readdir(top)) {
    if (entry.startsWith('.')) continue;
    if (entry.startsWith('@')) for (const scoped of await readdir(join(top, entry))) names.push(`${entry}/${scoped}`);
    else names.push(entry);
  }
  return names.sort();
}

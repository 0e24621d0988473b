import { lstat, mkdir, readFile, realpath, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { extract as tarExtract } from 'tar-stream';
import { ExecenvError } from '../../errors.js';
import { type Check, type CheckContext, codeOf, rejection, unique } from '../context.js';
import { type ArchiveEntry, archiveOf } from './archive-of.js';
import { describeTree, sha256 } from './host.js';

/** Writes `bytes` of a deterministic pattern without holding them in memory. */
async function writePattern(path: string, bytes: number): Promise<void> {
  const block = Buffer.alloc(1 << 20);
  for (let i = 0; i < block.length; i++) block[i] = (i * 7 + (i >> 10)) & 0xff;
  const { open } = await import('node:fs/promises');
  const fh = await open(path, 'w');
  try {
    for (let left = bytes; left > 0; left -= block.length)
      await fh.write(block.subarray(0, Math.min(left, block.length)));
  } finally {
    await fh.close();
  }
}

async function makeTree(dir: string): Promise<void> {
  await mkdir(join(dir, 'sub/deeper'), { recursive: true });
  await writeFile(join(dir, 'readme'), 'top\n', { mode: 0o644 });
  await writeFile(join(dir, 'sub/script'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
  await writeFile(join(dir, 'sub/deeper/private'), 'secret', { mode: 0o600 });
  await writeFile(join(dir, 'sub/deeper/empty'), '');
  const { chmod } = await import('node:fs/promises');
  await chmod(join(dir, 'sub/script'), 0o755);
  await chmod(join(dir, 'sub/deeper/private'), 0o600);
  await symlink('../readme', join(dir, 'sub/relative-link'));
  await symlink('/etc/hostname', join(dir, 'absolute-link'));
}

async function fileModes(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const path = `/tmp/${unique('modes')}`;
  await env.push(new TextEncoder().encode('owned'), path, { mode: 0o640, uid: 1234, gid: 2345 });
  const st = await env.stat(path);
  ctx.expect(
    env.id,
    `stat ${path}`,
    st && { type: st.type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: st.size },
    {
      type: 'file',
      mode: 0o640,
      uid: 1234,
      gid: 2345,
      size: 5,
    },
  );
  const seen = await env.exec(['stat', '-c', '%a %u %g', path]);
  ctx.expect(env.id, `stat -c inside for ${path}`, seen.stdout.trim(), '640 1234 2345');
  const host = await ctx.hostDir();
  await env.pull(path, join(host, 'pulled'));
  ctx.expect(env.id, 'mode of a pulled file', (await stat(join(host, 'pulled'))).mode & 0o7777, 0o640);
  ctx.expect(env.id, 'content of a pulled file', await readFile(join(host, 'pulled'), 'utf8'), 'owned');
  const exe = `/tmp/${unique('exe')}`;
  await env.push(new TextEncoder().encode('#!/bin/sh\necho ran\n'), exe, { mode: 0o755 });
  ctx.expect(env.id, 'running a pushed script', (await env.exec([exe])).stdout, 'ran\n');
}

async function emptyFile(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const path = `/tmp/${unique('empty')}`;
  await env.push(new Uint8Array(), path);
  ctx.expect(env.id, `size of ${path}`, (await env.stat(path))?.size, 0);
  const host = await ctx.hostDir();
  await env.pull(path, join(host, 'empty'));
  ctx.expect(env.id, 'pulled empty file', (await stat(join(host, 'empty'))).size, 0);
}

async function largeFile(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const bytes = ctx.options.largeFileBytes ?? 100 * 1024 * 1024;
  const host = await ctx.hostDir();
  const src = join(host, 'large');
  await writePattern(src, bytes);
  const path = `/tmp/${unique('large')}`;
  await env.push(src, path);
  ctx.expect(env.id, `size of pushed ${path}`, (await env.stat(path))?.size, bytes);
  await env.pull(path, join(host, 'back'));
  ctx.expect(env.id, `sha256 of ${path} pulled back`, await sha256(join(host, 'back')), await sha256(src));
  await env.exec(['rm', '-f', path]);
}

async function directoryTree(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const host = await ctx.hostDir();
  const src = join(host, 'tree');
  await makeTree(src);
  const dest = `/tmp/${unique('tree')}`;
  await env.push(src, dest);
  ctx.expect(env.id, `readDir ${dest}`, await env.readDir(dest), ['absolute-link', 'readme', 'sub']);
  ctx.expect(env.id, `readDir ${dest}/sub`, await env.readDir(`${dest}/sub`), ['deeper', 'relative-link', 'script']);
  const link = await env.stat(`${dest}/absolute-link`);
  ctx.expect(env.id, 'stat of a pushed absolute symlink', [link?.type, link?.linkTarget], ['symlink', '/etc/hostname']);
  ctx.expect(
    env.id,
    'reading through a pushed relative symlink',
    (await env.exec(['cat', `${dest}/sub/relative-link`])).stdout,
    'top\n',
  );
  ctx.expect(env.id, 'running a pushed executable', (await env.exec([`${dest}/sub/script`])).stdout, 'hi\n');
  await env.pull(dest, join(host, 'back'));
  ctx.expect(env.id, `tree pulled back from ${dest}`, await describeTree(join(host, 'back')), await describeTree(src));
  ctx.expect(env.id, 'stat of a missing path', await env.stat(`${dest}/missing`), null);
}

async function archiveRoundTrip(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const host = await ctx.hostDir();
  const src = join(host, 'tree');
  await makeTree(src);
  const dest = `/tmp/${unique('archive')}`;
  await env.push(src, dest);
  const copy = `/tmp/${unique('archive-copy')}`;
  await env.pushArchive(env.pullArchive(dest), copy);
  await env.pull(copy, join(host, 'back'));
  ctx.expect(
    env.id,
    `pullArchive ${dest} | pushArchive ${copy}`,
    await describeTree(join(host, 'back')),
    await describeTree(src),
  );
}

/**
 * A missing path rejects with NOT_FOUND (an ExecenvError), never a raw
 * system error: inside, for pull, readDir and pullArchive; on the host, for
 * push of a host path, which then creates nothing inside.
 */
async function missingPath(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const missing = `/tmp/${unique('missing')}`;
  const host = await ctx.hostDir();
  const absent = join(host, 'absent');
  const pushed = await rejection(env.push(absent, missing));
  // A raw system error has a code too (ENOENT): only NOT_FOUND keeps the promise.
  ctx.expect(env.id, `push of the missing host path ${absent}`, codeOf(pushed), 'NOT_FOUND');
  ctx.expect(env.id, `stat ${missing} after a push of a missing host path`, await env.stat(missing), null);
  ctx.expect(env.id, `pull ${missing}`, codeOf(await rejection(env.pull(missing, join(host, 'x')))), 'NOT_FOUND');
  ctx.expect(env.id, `readDir ${missing}`, codeOf(await rejection(env.readDir(missing))), 'NOT_FOUND');
  const stream = env.pullArchive(missing);
  const err = await rejection(
    new Promise<void>((resolve, reject) => {
      stream.on('error', reject);
      stream.on('end', resolve);
      stream.resume();
    }),
  );
  ctx.expect(env.id, `pullArchive ${missing}`, codeOf(err), 'NOT_FOUND');
}

async function pushThroughSymlink(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const link = `/tmp/${unique('rootlink')}`;
  const name = unique('execenv-probe');
  await env.exec(['ln', '-s', '/', link], { check: true });
  await env.push(new TextEncoder().encode('landed inside'), `${link}/${name}`);
  const onHost = await stat(`/${name}`).then(
    () => true,
    () => false,
  );
  if (onHost)
    ctx.problem(
      env.id,
      `push to ${link}/${name} (${link} -> /)`,
      `the host file /${name}`,
      'a file inside the environment',
    );
  ctx.expect(env.id, `cat /${name} inside`, (await env.exec(['cat', `/${name}`])).stdout, 'landed inside');
  await env.exec(['rm', '-f', `/${name}`]);
}

function tarOf(entries: { name: string; content: string }[]): Readable {
  return archiveOf(entries);
}

async function unsafeArchive(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const dest = `/tmp/${unique('unsafe')}`;
  await env.exec(['mkdir', '-p', dest], { check: true });
  const escaped = unique('execenv-escape');
  for (const name of [`../${escaped}`, `a/../../${escaped}`, `/tmp/${escaped}`]) {
    const err = await rejection(
      env.pushArchive(
        tarOf([
          { name: 'ok', content: 'x' },
          { name, content: 'escaped' },
        ]),
        dest,
      ),
    );
    ctx.expect(env.id, `pushArchive with entry ${name}`, codeOf(err), 'UNSAFE_PATH');
  }
  ctx.expect(env.id, `readDir ${dest} after refused archives`, await env.readDir(dest), []);
  ctx.expect(env.id, `/tmp/${escaped} inside`, await env.stat(`/tmp/${escaped}`), null);
  for (const hostPath of [`/tmp/${escaped}`, `/${escaped}`])
    if (
      await stat(hostPath).then(
        () => true,
        () => false,
      )
    )
      ctx.problem(env.id, 'pushArchive with ../', `host file ${hostPath}`, 'nothing on the host');
}

async function pullSymlink(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const secret = unique('env-shadow');
  await env.exec(['sh', '-c', `echo ${secret} > /etc/shadow`], { check: true });
  const link = `/tmp/${unique('shadowlink')}`;
  await env.exec(['ln', '-s', '/etc/shadow', link], { check: true });
  const host = await ctx.hostDir();
  const dest = join(host, 'pulled');
  await env.pull(link, dest);
  const hostShadow = await readFile('/etc/shadow', 'utf8').catch(() => undefined);
  const st = await lstat(dest);
  const got = st.isSymbolicLink() ? undefined : await readFile(dest, 'utf8');
  if (got !== undefined && hostShadow !== undefined && got === hostShadow)
    ctx.problem(env.id, `pull ${link} (-> /etc/shadow)`, "the host's /etc/shadow", "the environment's");
  else if (got !== undefined) ctx.expect(env.id, `pull ${link} (-> /etc/shadow)`, got.trim(), secret);
}

/**
 * Modes survive every way in: a host file pushed by path keeps its mode,
 * and setuid, setgid and sticky bits survive push options, a pushed host
 * directory and an archive.
 */
async function modeBits(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const host = await ctx.hostDir();
  const { chmod } = await import('node:fs/promises');
  const modeOf = async (path: string) => {
    const st = await env.stat(path);
    return st ? (st.mode & 0o7777).toString(8) : 'missing';
  };
  for (const mode of [0o755, 0o600, 0o4755]) {
    const src = join(host, `file-${mode.toString(8)}`);
    await writeFile(src, '#!/bin/sh\necho ran\n');
    await chmod(src, mode);
    const dest = `/tmp/${unique(`host-mode-${mode.toString(8)}`)}`;
    await env.push(src, dest);
    ctx.expect(
      env.id,
      `mode of host file ${mode.toString(8)} pushed by path to ${dest}`,
      await modeOf(dest),
      mode.toString(8),
    );
  }
  for (const mode of [0o4755, 0o2755, 0o1777, 0o6711]) {
    const dest = `/tmp/${unique(`opt-mode-${mode.toString(8)}`)}`;
    await env.push(new TextEncoder().encode('x'), dest, { mode });
    ctx.expect(env.id, `mode of bytes pushed with mode ${mode.toString(8)}`, await modeOf(dest), mode.toString(8));
  }
  const tree = join(host, 'tree');
  await mkdir(join(tree, 'sticky'), { recursive: true });
  await writeFile(join(tree, 'setuid'), 'x');
  await writeFile(join(tree, 'setgid'), 'x');
  await chmod(join(tree, 'sticky'), 0o1777);
  await chmod(join(tree, 'setuid'), 0o4755);
  await chmod(join(tree, 'setgid'), 0o2755);
  const dir = `/tmp/${unique('mode-tree')}`;
  await env.push(tree, dir);
  ctx.expect(
    env.id,
    `modes in a host directory pushed to ${dir}`,
    [await modeOf(`${dir}/sticky`), await modeOf(`${dir}/setuid`), await modeOf(`${dir}/setgid`)],
    ['1777', '4755', '2755'],
  );
  const modes = archiveOf([
    { name: 'sticky', type: 'directory', mode: 0o1777 },
    { name: 'setuid', mode: 0o4755, content: 'x' },
    { name: 'setgid', mode: 0o2755, content: 'x' },
  ]);
  const unpacked = `/tmp/${unique('mode-archive')}`;
  await env.exec(['mkdir', '-p', unpacked], { check: true });
  await env.pushArchive(modes, unpacked);
  ctx.expect(
    env.id,
    `modes of archive entries extracted in ${unpacked}`,
    [await modeOf(`${unpacked}/sticky`), await modeOf(`${unpacked}/setuid`), await modeOf(`${unpacked}/setgid`)],
    ['1777', '4755', '2755'],
  );
}

/**
 * Symlinks inside that point at host paths are never followed onto the
 * host: not as a final component, not as a parent directory, by push,
 * pull, stat, readDir or pullArchive.
 */
async function hostSymlinks(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const host = await realpath(await ctx.hostDir());
  const secret = `${unique('host-secret')}\n`;
  await writeFile(join(host, 'secret'), secret);
  await mkdir(join(host, 'subdir'));
  const before = await describeTree(host);
  const dir = `/tmp/${unique('hostlinks')}`;
  await env.exec(['mkdir', '-p', dir], { check: true });
  await env.exec(['ln', '-s', join(host, 'secret'), `${dir}/final`], { check: true });
  await env.exec(['ln', '-s', host, `${dir}/parent`], { check: true });
  const out = await ctx.hostDir();
  // A pulled symlink is fine (pull-symlink allows it); only a regular file with the secret is a leak.
  const leaked = async (path: string) =>
    (await lstat(path).catch(() => undefined))?.isFile() === true && (await readFile(path, 'utf8')) === secret;
  for (const src of [`${dir}/final`, `${dir}/parent/secret`]) {
    const dest = join(out, unique('pulled'));
    const err = await rejection(env.pull(src, dest));
    if (await leaked(dest))
      ctx.problem(
        env.id,
        `pull ${src} (a link to ${host})`,
        "the host file's content",
        'a NOT_FOUND, or what the environment holds',
      );
    else if (err !== undefined && !(err instanceof ExecenvError))
      ctx.problem(env.id, `pull ${src} (a link to ${host})`, err, "an ExecenvError or the environment's file");
  }
  const st = await env.stat(`${dir}/parent/secret`);
  if (st?.size === secret.length && st.type === 'file')
    ctx.problem(env.id, `stat ${dir}/parent/secret (${dir}/parent -> ${host})`, "the host file's size", 'null');
  const names = await env.readDir(`${dir}/parent`).catch(() => [] as string[]);
  if (names.includes('secret') || names.includes('subdir'))
    ctx.problem(env.id, `readDir ${dir}/parent (-> ${host})`, names, "a NOT_FOUND, never the host directory's names");
  const archived = await archiveNames(env.pullArchive(`${dir}/parent`));
  if (archived.includes('secret') || archived.includes('subdir'))
    ctx.problem(
      env.id,
      `pullArchive ${dir}/parent (-> ${host})`,
      archived,
      "a NOT_FOUND, never the host directory's names",
    );
  const pushed = join(out, 'pushed');
  await writeFile(pushed, 'pushed from the host\n');
  for (const [src, dest] of [
    [new TextEncoder().encode('pushed bytes\n'), `${dir}/final`],
    [pushed, `${dir}/final`],
    [new TextEncoder().encode('pushed bytes\n'), `${dir}/parent/new`],
    [pushed, `${dir}/parent/subdir/new`],
  ] as const) {
    const err = await rejection(env.push(src, dest));
    if (err !== undefined && !(err instanceof ExecenvError))
      ctx.problem(env.id, `push to ${dest}`, err, 'no error, or an ExecenvError');
  }
  ctx.expect(env.id, `host directory ${host} after pushes through links to it`, await describeTree(host), before);
}

/** Names of the entries of a tar stream, or [] when it fails. */
async function archiveNames(stream: Readable): Promise<string[]> {
  const extractor = tarExtract();
  stream.on('error', (err) => extractor.destroy(err));
  stream.pipe(extractor);
  const names: string[] = [];
  try {
    for await (const entry of extractor) {
      names.push(entry.header.name.replace(/^\.\//, ''));
      entry.resume();
    }
  } catch {
    // A NOT_FOUND is the right answer here.
  }
  return names;
}

type Entry = ArchiveEntry;

/**
 * Archives may hold symlinks and hardlinks: they arrive as links. Links
 * that would take an entry out of the destination are refused with
 * UNSAFE_PATH and change nothing.
 */
async function archiveLinks(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const dest = `/tmp/${unique('links')}`;
  await env.exec(['mkdir', '-p', dest], { check: true });
  await env.pushArchive(
    archiveOf([
      { name: 'd', type: 'directory' },
      { name: 'd/f', content: 'data\n' },
      { name: 'd/rel', type: 'symlink', linkname: 'f' },
      { name: 'd/abs', type: 'symlink', linkname: '/etc/hostname' },
      { name: 'd/hard', type: 'link', linkname: 'd/f' },
    ]),
    dest,
  );
  const rel = await env.stat(`${dest}/d/rel`);
  const abs = await env.stat(`${dest}/d/abs`);
  ctx.expect(
    env.id,
    `symlink entries extracted in ${dest}`,
    [rel?.type, rel?.linkTarget, abs?.type, abs?.linkTarget],
    ['symlink', 'f', 'symlink', '/etc/hostname'],
  );
  const hard = await env.exec(['cat', `${dest}/d/hard`, `${dest}/d/rel`]);
  ctx.expect(env.id, `cat ${dest}/d/hard ${dest}/d/rel`, hard.stdout, 'data\ndata\n');
  const escaped = unique('escaped');
  const unsafe: [string, Entry[]][] = [
    ['a hardlink to ../', [{ name: 'x', type: 'link', linkname: `../${escaped}` }]],
    ['a hardlink to an absolute path', [{ name: 'x', type: 'link', linkname: '/etc/passwd' }]],
    ['a hardlink to no earlier entry', [{ name: 'x', type: 'link', linkname: 'nowhere' }]],
    [
      'a symlink climbing out',
      [
        { name: 'up', type: 'symlink', linkname: '../..' },
        { name: 'up/x', content: 'out' },
      ],
    ],
    [
      'a file through a symlink of the same archive',
      [
        { name: 'root', type: 'symlink', linkname: '/' },
        { name: `root/tmp/${escaped}`, content: 'out' },
      ],
    ],
  ];
  for (const [what, entries] of unsafe) {
    const into = `/tmp/${unique('unsafe-links')}`;
    await env.exec(['mkdir', '-p', into], { check: true });
    const err = await rejection(env.pushArchive(archiveOf(entries), into));
    ctx.expect(env.id, `pushArchive with ${what}`, codeOf(err), 'UNSAFE_PATH');
    ctx.expect(env.id, `readDir ${into} after a refused archive with ${what}`, await env.readDir(into), []);
  }
  ctx.expect(env.id, `/tmp/${escaped} after refused archives`, await env.stat(`/tmp/${escaped}`), null);
}

/** Checks of file transfer and path safety. */
export const fileChecks: Check[] = [
  { name: 'file-modes', run: fileModes },
  { name: 'empty-file', run: emptyFile },
  { name: 'large-file', run: largeFile, timeoutMs: 180_000 },
  { name: 'directory-tree', run: directoryTree },
  { name: 'archive-round-trip', run: archiveRoundTrip },
  { name: 'missing-path', run: missingPath },
  { name: 'push-through-symlink', run: pushThroughSymlink },
  { name: 'unsafe-archive', run: unsafeArchive },
  { name: 'pull-symlink', run: pullSymlink },
  { name: 'mode-bits', run: modeBits },
  { name: 'host-symlinks', run: hostSymlinks },
  { name: 'archive-links', run: archiveLinks },
];

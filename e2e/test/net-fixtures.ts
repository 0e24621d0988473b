import { type ChildProcess, execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The machine's own links, addresses and ruleset; other backends may change theirs meanwhile. */
export async function hostSnapshot() {
  const [link, addr, nft] = await Promise.all([
    run('ip', ['-o', 'link', 'show']),
    run('ip', ['-o', 'addr', 'show']),
    run('nft', ['list', 'ruleset']),
  ]);
  return { link: link.stdout, addr: addr.stdout, nft: nft.stdout };
}

/** The lines of a snapshot that are @execenv/net's: its links (`exv*`) and its nftables table. */
export function netLines(s: string): string[] {
  return s.split('\n').filter((l) => l.includes('exv') || l.includes('table inet execenv'));
}

/** Polls `check` every 10 ms until it says true; throws after `timeoutMs`. */
export async function waitFor(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The first line a child prints on stdout; rejects when it exits before printing one. */
export function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      buffered += chunk;
      const nl = buffered.indexOf('\n');
      if (nl >= 0) resolve(buffered.slice(0, nl));
    });
    child.once('exit', (code) => reject(new Error(`the child exited with ${code} before printing`)));
  });
}

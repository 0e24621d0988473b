// The piuparts case: a tool that needs root (dpkg installing, removing and
// purging a package) gets it inside an environment while this process has
// no root on the host. Rootless mode maps root inside to this user, and the
// subordinate ids of /etc/subuid to the other users inside.
//
//   node root-inside.mjs IMAGE PACKAGE.deb
//
// Installs the package, checks its files belong to root inside, purges it,
// and prints what it found as JSON; exits 1 if the purge left files behind.
import { basename } from 'node:path';
import { ChrootDriver } from '@execenv/chroot';

const [image, deb] = process.argv.slice(2);
if (!image || !deb) throw new Error('usage: root-inside.mjs IMAGE PACKAGE.deb');

// dpkg's own bookkeeping, which piuparts ignores too.
const IGNORED = [/^\/var\/log\/dpkg\.log$/, /^\/var\/lib\/dpkg\//, /^\/var\/cache\/debconf\//];

const driver = new ChrootDriver({ mode: 'rootless' });
const { mode, reason } = await driver.mode();
const env = await driver.open({ image });
try {
  const sh = (script) => env.exec(['sh', '-c', script], { check: true, timeout: 120_000 });
  const inside = `/tmp/${basename(deb)}`;
  await env.push(deb, inside);
  const name = (await sh(`dpkg-deb --field ${inside} Package`)).stdout.trim();
  const before = (await sh('find / -xdev -path /proc -prune -o -path /tmp -prune -o -print | sort')).stdout;
  await sh(`dpkg -i ${inside}`);
  const files = (await sh(`dpkg -L ${name} | while read f; do [ -f "$f" ] && echo "$f"; done`)).stdout
    .split('\n')
    .filter(Boolean);
  const owners = (await sh(`stat -c '%U:%G %n' ${files.join(' ')}`)).stdout.trim().split('\n');
  await sh(`dpkg --purge ${name}`);
  const after = (await sh('find / -xdev -path /proc -prune -o -path /tmp -prune -o -print | sort')).stdout;
  const left = after
    .split('\n')
    .filter((p) => p && !before.split('\n').includes(p) && !IGNORED.some((re) => re.test(p)));
  console.log(JSON.stringify({ hostUid: process.getuid(), mode, reason, package: name, owners, left }));
  if (left.length > 0) process.exitCode = 1;
} finally {
  await env.close();
}

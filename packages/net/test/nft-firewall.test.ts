import { describe, expect, it } from 'vitest';
import { parseSubnet } from '../src/ipv4.js';
import { addRulesScript, NftFirewall } from '../src/nft-firewall.js';
import { ScriptedRunner } from './scripted-runner.js';

const subnet = parseSubnet('10.213.0.0/24');

describe('addRulesScript', () => {
  it('isolates the bridge from other networks and masquerades its subnet, every rule tagged with the bridge', () => {
    expect(addRulesScript({ bridge: 'exvbaaaaaaaa', subnet, nat: true }).split('\n')).toEqual([
      'add table inet execenv',
      'add chain inet execenv forward { type filter hook forward priority filter; policy accept; }',
      'add chain inet execenv postrouting { type nat hook postrouting priority srcnat; policy accept; }',
      'add rule inet execenv forward iifname "exvbaaaaaaaa" oifname "exv*" oifname != "exvbaaaaaaaa" drop comment "exvbaaaaaaaa"',
      'add rule inet execenv forward oifname "exvbaaaaaaaa" ct state established,related accept comment "exvbaaaaaaaa"',
      'add rule inet execenv forward oifname "exvbaaaaaaaa" iifname != "exvbaaaaaaaa" drop comment "exvbaaaaaaaa"',
      'add rule inet execenv postrouting ip saddr 10.213.0.0/24 ip daddr != 10.213.0.0/24 masquerade comment "exvbaaaaaaaa"',
      '',
    ]);
  });

  it('keeps a network without NAT on the host', () => {
    const script = addRulesScript({ bridge: 'exvbaaaaaaaa', subnet, nat: false });
    expect(script).not.toContain('masquerade');
    expect(script).toContain(
      'add rule inet execenv forward iifname "exvbaaaaaaaa" oifname != "exvbaaaaaaaa" drop comment "exvbaaaaaaaa"',
    );
  });
});

function listing(rules: { chain: string; handle: number; comment?: string }[]) {
  return JSON.stringify({
    nftables: [
      { metainfo: { version: '1.0.6' } },
      { table: { family: 'inet', name: 'execenv', handle: 1 } },
      ...rules.map((r) => ({ rule: { family: 'inet', table: 'execenv', expr: [], ...r } })),
    ],
  });
}

describe('NftFirewall.remove', () => {
  it('deletes exactly the rules tagged with the bridge, in one transaction', async () => {
    const runner = new ScriptedRunner((argv) =>
      argv.includes('list')
        ? {
            stdout: listing([
              { chain: 'forward', handle: 4, comment: 'exvbaaaaaaaa' },
              { chain: 'forward', handle: 5, comment: 'exvbbbbbbbbb' },
              { chain: 'postrouting', handle: 9, comment: 'exvbaaaaaaaa' },
            ]),
          }
        : undefined,
    );
    await new NftFirewall(runner).remove('exvbaaaaaaaa');
    expect(runner.ran).toEqual([
      { argv: ['nft', '-j', '-a', 'list', 'table', 'inet', 'execenv'], input: undefined },
      {
        argv: ['nft', '-f', '-'],
        input: 'delete rule inet execenv forward handle 4\ndelete rule inet execenv postrouting handle 9\n',
      },
    ]);
  });

  it('deletes the table when only its rules are left in it', async () => {
    const runner = new ScriptedRunner((argv) =>
      argv.includes('list')
        ? { stdout: listing([{ chain: 'forward', handle: 4, comment: 'exvbaaaaaaaa' }]) }
        : undefined,
    );
    await new NftFirewall(runner).remove('exvbaaaaaaaa');
    expect(runner.ran[1]).toEqual({ argv: ['nft', '-f', '-'], input: 'delete table inet execenv\n' });
  });

  it('does nothing when the table is gone, and fails on any other listing error', async () => {
    const gone = new ScriptedRunner(() => ({ exitCode: 1, stderr: 'Error: No such file or directory\n' }));
    await new NftFirewall(gone).remove('exvbaaaaaaaa');
    expect(gone.ran).toHaveLength(1);
    const broken = new ScriptedRunner(() => ({ exitCode: 1, stderr: 'Error: Operation not permitted\n' }));
    await expect(new NftFirewall(broken).remove('exvbaaaaaaaa')).rejects.toThrow(/Operation not permitted/);
  });
});

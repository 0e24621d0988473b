import { describe, expect, it } from 'vitest';
import { IptablesFirewall } from '../src/iptables-firewall.js';
import { parseSubnet } from '../src/ipv4.js';
import { ScriptedRunner } from './scripted-runner.js';

const subnet = parseSubnet('10.213.0.0/24');
const tag = '-m comment --comment exvbaaaaaaaa';

describe('IptablesFirewall', () => {
  it('inserts the rules at the top of FORWARD and nat POSTROUTING in order, each tagged', async () => {
    const runner = new ScriptedRunner();
    await new IptablesFirewall(runner).add({ bridge: 'exvbaaaaaaaa', subnet, nat: true });
    expect(runner.commands).toEqual([
      `iptables -w -t filter -I FORWARD 1 -i exvbaaaaaaaa -o exvbaaaaaaaa ${tag} -j ACCEPT`,
      `iptables -w -t filter -I FORWARD 2 -i exvbaaaaaaaa -o exv+ ${tag} -j DROP`,
      `iptables -w -t filter -I FORWARD 3 -o exvbaaaaaaaa -m conntrack --ctstate RELATED,ESTABLISHED ${tag} -j ACCEPT`,
      `iptables -w -t filter -I FORWARD 4 -o exvbaaaaaaaa ! -i exvbaaaaaaaa ${tag} -j DROP`,
      `iptables -w -t nat -I POSTROUTING 1 -s 10.213.0.0/24 ! -d 10.213.0.0/24 ${tag} -j MASQUERADE`,
    ]);
  });

  it('deletes only the rules carrying its comment', async () => {
    const runner = new ScriptedRunner((argv) => {
      if (argv.includes('-S') && argv.includes('FORWARD'))
        return {
          stdout: [
            '-P FORWARD DROP',
            `-A FORWARD -i exvbaaaaaaaa -o exv+ ${tag} -j DROP`,
            '-A FORWARD -i docker0 -m comment --comment exvbaaaaaaaa-not -j ACCEPT',
            '-A FORWARD -i exvbbbbbbbbb -o exv+ -m comment --comment exvbbbbbbbbb -j DROP',
            '',
          ].join('\n'),
        };
      if (argv.includes('-S'))
        return {
          stdout: `-P POSTROUTING ACCEPT\n-A POSTROUTING -s 10.213.0.0/24 ! -d 10.213.0.0/24 ${tag} -j MASQUERADE\n`,
        };
      return undefined;
    });
    await new IptablesFirewall(runner).remove('exvbaaaaaaaa');
    expect(runner.commands).toEqual([
      'iptables -w -t filter -S FORWARD',
      `iptables -w -t filter -D FORWARD -i exvbaaaaaaaa -o exv+ ${tag} -j DROP`,
      'iptables -w -t nat -S POSTROUTING',
      `iptables -w -t nat -D POSTROUTING -s 10.213.0.0/24 ! -d 10.213.0.0/24 ${tag} -j MASQUERADE`,
    ]);
  });
});

import type { ProcessRunner } from '@execenv/core';
import { hostEnv } from '@execenv/core/driver';
import type { Firewall, NetworkRules } from './firewall.js';
import { NAME_PREFIX } from './names.js';

/** The iptables rules of one network, as argv after `iptables -w`, in the order they must end up in. */
export function iptablesRules(r: NetworkRules): { table: 'filter' | 'nat'; chain: string; rule: string[] }[] {
  const tag = ['-m', 'comment', '--comment', r.bridge];
  const rules: { table: 'filter' | 'nat'; chain: string; rule: string[] }[] = [
    // iptables takes one -o per rule: traffic within the bridge (seen here with br_netfilter) goes through first.
    { table: 'filter', chain: 'FORWARD', rule: ['-i', r.bridge, '-o', r.bridge, ...tag, '-j', 'ACCEPT'] },
    { table: 'filter', chain: 'FORWARD', rule: ['-i', r.bridge, '-o', `${NAME_PREFIX}+`, ...tag, '-j', 'DROP'] },
    {
      table: 'filter',
      chain: 'FORWARD',
      rule: ['-o', r.bridge, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', ...tag, '-j', 'ACCEPT'],
    },
    { table: 'filter', chain: 'FORWARD', rule: ['-o', r.bridge, '!', '-i', r.bridge, ...tag, '-j', 'DROP'] },
  ];
  if (r.nat)
    rules.push({
      table: 'nat',
      chain: 'POSTROUTING',
      rule: ['-s', r.subnet.cidr, '!', '-d', r.subnet.cidr, ...tag, '-j', 'MASQUERADE'],
    });
  else
    rules.push({
      table: 'filter',
      chain: 'FORWARD',
      rule: ['-i', r.bridge, '!', '-o', r.bridge, ...tag, '-j', 'DROP'],
    });
  return rules;
}

/**
 * IptablesFirewall is the fallback for hosts without nft: the same rules in
 * the built-in FORWARD and nat POSTROUTING chains, each carrying the bridge
 * name as its comment. The nat and filter tables iptables creates on first
 * use stay after the last rule is gone. Rules are inserted at the top, ahead of a host's own
 * (a DROP policy set by another tool included), and removed by their comment.
 */
export class IptablesFirewall implements Firewall {
  readonly name = 'iptables';
  readonly #runner: ProcessRunner;

  constructor(runner: ProcessRunner) {
    this.#runner = runner;
  }

  async add(rules: NetworkRules): Promise<void> {
    const all = iptablesRules(rules);
    const position = new Map<string, number>();
    for (const r of all) {
      const key = `${r.table}/${r.chain}`;
      const at = (position.get(key) ?? 0) + 1;
      position.set(key, at);
      await this.#iptables(['-t', r.table, '-I', r.chain, String(at), ...r.rule]);
    }
  }

  async remove(bridge: string): Promise<void> {
    for (const [table, chain] of [
      ['filter', 'FORWARD'],
      ['nat', 'POSTROUTING'],
    ] as const) {
      const listed = await this.#iptables(['-t', table, '-S', chain]);
      for (const line of listed.split('\n')) {
        const words = line.trim().split(/\s+/);
        const at = words.indexOf('--comment');
        if (words[0] !== '-A' || at < 0 || words[at + 1] !== bridge) continue;
        await this.#iptables(['-t', table, '-D', ...words.slice(1)]);
      }
    }
  }

  async #iptables(args: string[]): Promise<string> {
    return (await this.#runner.run(['iptables', '-w', ...args], { env: hostEnv() })).stdout;
  }
}

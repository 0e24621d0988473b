import { ExecenvError, type ProcessRunner } from '@execenv/core';
import { hostEnv } from '@execenv/core/driver';
import type { Firewall, NetworkRules } from './firewall.js';
import { NAME_PREFIX, NFT_TABLE } from './names.js';

const T = `inet ${NFT_TABLE}`;

/**
 * The nft script adding one network's rules to the project's table: the
 * table and its two base chains are created when missing; every rule carries
 * the bridge name as its comment, which is how removal finds exactly them.
 */
export function addRulesScript(r: NetworkRules): string {
  const br = `"${r.bridge}"`;
  const tag = `comment "${r.bridge}"`;
  const lines = [
    `add table ${T}`,
    `add chain ${T} forward { type filter hook forward priority filter; policy accept; }`,
    `add chain ${T} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
    // Environments on different networks never reach each other, even with forwarding on.
    `add rule ${T} forward iifname ${br} oifname "${NAME_PREFIX}*" oifname != ${br} drop ${tag}`,
    // Nothing outside starts a connection to an environment; replies come back.
    `add rule ${T} forward oifname ${br} ct state established,related accept ${tag}`,
    `add rule ${T} forward oifname ${br} iifname != ${br} drop ${tag}`,
  ];
  if (r.nat && r.subnet6)
    lines.push(`add rule ${T} postrouting ip6 saddr ${r.subnet6} ip6 daddr != ${r.subnet6} masquerade ${tag}`);
  if (r.nat)
    lines.push(`add rule ${T} postrouting ip saddr ${r.subnet.cidr} ip daddr != ${r.subnet.cidr} masquerade ${tag}`);
  else lines.push(`add rule ${T} forward iifname ${br} oifname != ${br} drop ${tag}`);
  return `${lines.join('\n')}\n`;
}

interface NftRule {
  rule?: { family: string; table: string; chain: string; handle: number; comment?: string };
}

/**
 * NftFirewall adds and removes the rules of networks in one nftables table
 * (`inet execenv`) owned by the project. It never touches another table; it
 * deletes its table only when no rule is left in it.
 */
export class NftFirewall implements Firewall {
  readonly name = 'nft';
  readonly #runner: ProcessRunner;

  constructor(runner: ProcessRunner) {
    this.#runner = runner;
  }

  /** Adds a network's rules in one atomic nft transaction. */
  async add(rules: NetworkRules): Promise<void> {
    await this.#runner.run(['nft', '-f', '-'], { env: hostEnv(), input: addRulesScript(rules) });
  }

  /**
   * Removes every rule tagged with `bridge` in one transaction, and the table
   * with them when nothing else is left in it. Does nothing when there is no table.
   */
  async remove(bridge: string): Promise<void> {
    const listed = await this.#runner.run(['nft', '-j', '-a', 'list', 'table', 'inet', NFT_TABLE], {
      env: hostEnv(),
      check: false,
    });
    if (listed.exitCode !== 0) {
      if (/No such file or directory|does not exist/i.test(listed.stderr)) return;
      throw new ExecenvError('EXEC_FAILED', `execenv: cannot list nftables table ${T}: ${listed.stderr.trim()}`);
    }
    const rules = ((JSON.parse(listed.stdout) as { nftables?: NftRule[] }).nftables ?? [])
      .map((item) => item.rule)
      .filter((rule): rule is NonNullable<NftRule['rule']> => rule !== undefined);
    const ours = rules.filter((rule) => rule.comment === bridge);
    const script =
      ours.length === rules.length
        ? `delete table ${T}\n`
        : ours.map((rule) => `delete rule ${T} ${rule.chain} handle ${rule.handle}\n`).join('');
    if (script) await this.#runner.run(['nft', '-f', '-'], { env: hostEnv(), input: script });
  }
}

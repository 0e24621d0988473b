import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dnsmasqArgv, writeDnsmasqHosts } from '../src/dnsmasq.js';
import { parseSubnet } from '../src/ipv4.js';
import { checkNetworkName, networkMode } from '../src/names.js';
import type { Allocation } from '../src/network-types.js';
import { kernelIpParameter, resolvConf } from '../src/resolv-conf.js';

describe('dnsmasqArgv', () => {
  it('serves only the bridge, only the listed hosts, as nobody; forwards upstream only when asked', () => {
    const argv = dnsmasqArgv('exvbaaaaaaaa', parseSubnet('10.213.0.0/24'), '/run/x/exvbaaaaaaaa', true);
    expect(argv).toEqual([
      'dnsmasq',
      '--conf-file=/dev/null',
      '--pid-file=/run/x/exvbaaaaaaaa/dnsmasq.pid',
      '--user=nobody',
      '--group=nogroup',
      '--bind-interfaces',
      '--interface=exvbaaaaaaaa',
      '--except-interface=lo',
      '--listen-address=10.213.0.1',
      '--dhcp-range=10.213.0.0,static,255.255.255.0,1h',
      '--dhcp-hostsfile=/run/x/exvbaaaaaaaa/dhcp-hosts',
      '--dhcp-authoritative',
      '--leasefile-ro',
      '--no-hosts',
      '--addn-hosts=/run/x/exvbaaaaaaaa/hosts',
      '--domain=execenv',
      '--local=/execenv/',
      '--expand-hosts',
      '--domain-needed',
    ]);
    expect(dnsmasqArgv('exvbaaaaaaaa', parseSubnet('10.213.0.0/24'), '/d', false).at(-1)).toBe('--no-resolv');
  });

  it('writes the DHCP and DNS host lists readable by nobody', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'execenv-net-dnsmasq-'));
    try {
      await writeDnsmasqHosts(dir, [{ mac: '0a:58:0a:d5:00:02', address: '10.213.0.2', hostname: 'execenv-a' }]);
      expect(await readFile(join(dir, 'dhcp-hosts'), 'utf8')).toBe('0a:58:0a:d5:00:02,10.213.0.2,execenv-a\n');
      expect(await readFile(join(dir, 'hosts'), 'utf8')).toBe('10.213.0.2 execenv-a\n');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

const allocation = {
  address: '10.213.0.2',
  gateway: '10.213.0.1',
  netmask: '255.255.255.0',
  hostname: 'execenv-a',
  nameservers: ['10.213.0.1'],
  searchDomains: ['execenv'],
} as unknown as Allocation;

describe('resolvConf and kernelIpParameter', () => {
  it('point the environment at the network’s dnsmasq, or at nothing without DNS', () => {
    expect(resolvConf(allocation)).toBe('nameserver 10.213.0.1\nsearch execenv\n');
    expect(resolvConf({ ...allocation, nameservers: [], searchDomains: [] })).toBeUndefined();
  });

  it('configure a VM statically from the kernel command line', () => {
    expect(kernelIpParameter(allocation)).toBe('ip=10.213.0.2::10.213.0.1:255.255.255.0:execenv-a:eth0:off');
  });
});

describe('checkNetworkName', () => {
  it('takes names from EnvSpec.network and refuses none, host and odd names', () => {
    expect(checkNetworkName('nat')).toBe('nat');
    expect(checkNetworkName('build-1.x_y')).toBe('build-1.x_y');
    for (const bad of ['none', 'host', '', 'Upper', '-x', 'a/b', 'a'.repeat(64), 7])
      expect(() => checkNetworkName(bad)).toThrow(expect.objectContaining({ code: 'INVALID_SPEC', field: 'network' }));
  });
});

describe('networkMode', () => {
  it('reads EnvSpec.network: none by default, the host, or a private network by name', () => {
    expect(networkMode(undefined)).toEqual({ mode: 'none' });
    expect(networkMode('none')).toEqual({ mode: 'none' });
    expect(networkMode('host')).toEqual({ mode: 'host' });
    expect(networkMode('nat')).toEqual({ mode: 'private', network: 'nat' });
    expect(networkMode('ci-builds')).toEqual({ mode: 'private', network: 'ci-builds' });
    expect(() => networkMode('NAT!')).toThrow(expect.objectContaining({ code: 'INVALID_SPEC', field: 'network' }));
  });
});

import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ExecenvError, type Owner, withLock } from '@execenv/core';

/** How the host reaches one holder's address: the host end of a veth, or a tap. */
export interface LinkRecord {
  /** `veth` (a pair into a network namespace) or `tap` (for a VM). */
  kind: 'veth' | 'tap';
  /** Host-side interface name, recorded before it is created. */
  name: string;
}

/** One holder of a network: an environment with an address, or the holder of a subnet reservation. */
export interface HolderRecord {
  /** The process that holds it; when it is dead, gc and the next allocation reclaim it. */
  owner: Owner;
  /** The holder's address; absent for a subnet reservation. */
  address?: string;
  /** The holder's IPv6 address, on a network with IPv6. */
  address6?: string;
  /** The MAC address DHCP hands `address` to. */
  mac?: string;
  /** The name DNS answers for `address`. */
  hostname?: string;
  /** The host interface made for this holder, if any. */
  link?: LinkRecord;
}

/** The step of a network's setup, recorded before it is done so a crash leaves something gc can undo. */
export type SetupStep = 'bridge' | 'firewall' | 'dnsmasq';

/** NetworkRecord is what the state directory keeps about one network. */
export interface NetworkRecord {
  /** The network's name (`nat` or a name given in `EnvSpec.network`). */
  name: string;
  /** `bridge`: a bridge on this host; `reservation`: only the subnet, for a backend that makes its own bridge. */
  kind: 'bridge' | 'reservation';
  /** The subnet's CIDR. */
  subnet: string;
  /** The bridge interface, for kind `bridge`. */
  bridge?: string;
  /** The IPv6 /64, for a network with IPv6. */
  subnet6?: string;
  /** Whether traffic to other hosts is masqueraded. */
  nat: boolean;
  /** Whether a dnsmasq serves DHCP and DNS on the bridge. */
  dns: boolean;
  /** The firewall backend holding its rules. @default 'nft' */
  firewall?: 'nft' | 'iptables';
  /** Setup steps begun, in order. */
  steps: SetupStep[];
  /** True once every step finished. */
  ready: boolean;
  /** The directory of dnsmasq's files. */
  runDir?: string;
  /** The dnsmasq process, once started. */
  dnsmasq?: { pid: number; startTime: string };
  /** Holders by id. */
  holders: Record<string, HolderRecord>;
  /** ISO time of creation. */
  createdAt: string;
}

/** The whole persisted state: every network of this state directory. */
export interface NetState {
  /** Format version. */
  version: 1;
  /** Networks by name. */
  networks: Record<string, NetworkRecord>;
}

/** What a transaction gets: the state to change, and a way to persist it before a host change. */
export interface Transaction {
  /** The state, read under the lock; changes are saved when the transaction ends. */
  readonly state: NetState;
  /** Persists the state now (an intent record before a host change). */
  save(): Promise<void>;
}

/** The last queued transaction of this process, per state directory. */
const queues = new Map<string, Promise<void>>();

/**
 * StateStore keeps the networks of one state directory in
 * `<stateDir>/net/networks.json`, changed only under the inter-process lock
 * `<stateDir>/net/lock`, so parallel processes never hand out one address twice.
 */
export class StateStore {
  readonly #dir: string;
  readonly #lockTimeoutMs: number | undefined;

  constructor(stateDir: string, lockTimeoutMs?: number) {
    this.#dir = join(stateDir, 'net');
    this.#lockTimeoutMs = lockTimeoutMs;
  }

  /** The file holding the state. */
  get path(): string {
    return join(this.#dir, 'networks.json');
  }

  /**
   * Runs `fn` holding the lock, with the current state; saves the state
   * afterwards, also when `fn` throws. Transactions of one process on one
   * state directory queue here first, so only one of them polls the file lock.
   */
  transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
    const previous = queues.get(this.#dir) ?? Promise.resolve();
    const mine = previous
      .then(() => this.#locked(fn))
      .catch((err: unknown) => {
        throw asExecenvError(err, `using the network state in ${this.#dir}`);
      });
    const tail = mine.then(
      () => undefined,
      () => undefined,
    );
    queues.set(this.#dir, tail);
    void tail.then(() => {
      if (queues.get(this.#dir) === tail) queues.delete(this.#dir);
    });
    return mine;
  }

  async #locked<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    return withLock(
      join(this.#dir, 'lock'),
      async () => {
        const state = await this.#read();
        const save = () => this.#write(state);
        try {
          return await fn({ state, save });
        } finally {
          await save();
        }
      },
      this.#lockTimeoutMs === undefined ? {} : { timeoutMs: this.#lockTimeoutMs },
    );
  }

  /** Reads the state without the lock (a snapshot for listing). */
  async read(): Promise<NetState> {
    return this.#read().catch((err: unknown) => {
      throw asExecenvError(err, `reading the network state in ${this.#dir}`);
    });
  }

  async #read(): Promise<NetState> {
    try {
      const parsed = JSON.parse(await readFile(this.path, 'utf8')) as NetState;
      if (parsed.version === 1 && parsed.networks) return parsed;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return { version: 1, networks: {} };
  }

  async #write(state: NetState): Promise<void> {
    const tmp = `${this.path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
    await rename(tmp, this.path);
  }
}

/** Any failure as an ExecenvError: ours pass through, others (a lock timeout, a corrupt file) get code EXEC_FAILED. */
function asExecenvError(err: unknown, what: string): ExecenvError {
  if (err instanceof ExecenvError) return err;
  return new ExecenvError('EXEC_FAILED', `execenv: ${what}: ${(err as Error)?.message ?? String(err)}`, {
    op: 'network',
    cause: err,
  });
}

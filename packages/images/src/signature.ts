import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { ImageVerifyFailedError, InvalidSpecError } from '@execenv/core';
import * as openpgp from 'openpgp';

/**
 * Keys that may sign images: armored public keys, or paths of keyring files (armored or binary).
 *
 * @example
 * ```ts
 * import { loadKeys, type TrustedKeys } from '@execenv/images';
 * import { readFile } from 'node:fs/promises';
 * const armored = await readFile('./ci-signing-key.asc', 'utf8');
 * const keys: TrustedKeys = ['/etc/execenv/keys/linuxcontainers.gpg', armored]; // key file paths and armored keys
 * const ring = await loadKeys(keys);
 * ```
 */
export type TrustedKeys = readonly string[];

const ARMORED_KEY = '-----BEGIN PGP PUBLIC KEY BLOCK-----';

/**
 * KeyRing holds the public keys that may sign images and checks signatures
 * against them. Its keys are OpenPGP's own objects, kept private: nothing of
 * the OpenPGP library shows in this package's types.
 *
 * @example
 * ```ts
 * import { hasCode } from '@execenv/core';
 * import { KeyRing } from '@execenv/images';
 * import { readFile } from 'node:fs/promises';
 * const ring = await KeyRing.load(['/etc/execenv/keys/linuxcontainers.gpg']); // ring.fingerprints: lower-case hex
 * const asc = await readFile('./rootfs.tar.xz.asc', 'utf8');
 * await ring.verifyDetached({ path: './rootfs.tar.xz' }, asc, 'rootfs.tar.xz').catch((err: unknown) => {
 *   if (hasCode(err, 'IMAGE_VERIFY_FAILED')) console.error('untrusted:', err.message);
 *   throw err;
 * });
 * ```
 */
export class KeyRing {
  readonly #keys: openpgp.PublicKey[];
  /** Fingerprints of the primary keys, lower-case hex. */
  readonly fingerprints: readonly string[];

  private constructor(keys: openpgp.PublicKey[]) {
    this.#keys = keys;
    this.fingerprints = Object.freeze(keys.map((k) => k.getFingerprint().toLowerCase()));
  }

  /**
   * Reads every key of `keys`. A file that cannot be read or holds no
   * OpenPGP public key throws InvalidSpecError naming the `keys` option and
   * the path.
   */
  static async load(keys: TrustedKeys): Promise<KeyRing> {
    const loaded: openpgp.PublicKey[] = [];
    for (const [i, k] of keys.entries()) {
      if (k.includes(ARMORED_KEY)) {
        loaded.push(...(await parseKeys(k, undefined, `keys[${i}] (armored key)`)));
        continue;
      }
      let bytes: Buffer;
      try {
        bytes = await readFile(k);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        throw new InvalidSpecError('keys', `cannot read the key file ${k} (${code})`, { op: 'resolve', cause: err });
      }
      const text = bytes.toString('latin1');
      loaded.push(...(await parseKeys(text.includes('-----BEGIN PGP') ? text : undefined, bytes, `key file ${k}`)));
    }
    return new KeyRing(loaded);
  }

  /** How many keys it holds. */
  get size(): number {
    return this.#keys.length;
  }

  /** A stable name of this set of keys (a sha256 of the sorted fingerprints), for cache keys. */
  get id(): string {
    return createHash('sha256')
      .update([...this.fingerprints].sort().join('\n'))
      .digest('hex');
  }

  #requireKeys(what: string): void {
    if (this.#keys.length === 0)
      throw new ImageVerifyFailedError(
        `execenv: ${what}: no trusted keys configured; give keys, or verify: false to skip the check`,
      );
  }

  /**
   * Checks an OpenPGP cleartext-signed document (a simplestreams `.sjson`)
   * and returns the text that was signed. Throws ImageVerifyFailedError
   * naming `what` when the signature is bad, made by an unknown key, or no
   * keys are held.
   */
  async verifyCleartext(signed: string, what: string): Promise<string> {
    this.#requireKeys(what);
    try {
      const message = await openpgp.readCleartextMessage({ cleartextMessage: signed });
      const result = await openpgp.verify({ message, verificationKeys: this.#keys });
      await allVerified(result.signatures);
      return result.data as string;
    } catch (err) {
      throw badSignature(what, err);
    }
  }

  /**
   * Checks the detached armored signature `armoredSignature` of `data`: a
   * file's path (streamed) or the bytes themselves. Throws
   * ImageVerifyFailedError naming `what` when the signature is bad, made by
   * an unknown key, or no keys are held.
   */
  async verifyDetached(data: { path: string } | { bytes: Uint8Array }, armoredSignature: string, what: string) {
    this.#requireKeys(what);
    try {
      const signature = await openpgp.readSignature({ armoredSignature });
      if ('bytes' in data) {
        const message = await openpgp.createMessage({ binary: data.bytes });
        const result = await openpgp.verify({ message, signature, verificationKeys: this.#keys, format: 'binary' });
        await allVerified(result.signatures);
        return;
      }
      const message = await openpgp.createMessage({
        binary: Readable.toWeb(createReadStream(data.path, { highWaterMark: 1 << 20 })) as ReadableStream<Uint8Array>,
      });
      const result = await openpgp.verify({ message, signature, verificationKeys: this.#keys, format: 'binary' });
      // The data must be read through for the signature to be computed.
      const reader = (result.data as unknown as ReadableStream<Uint8Array>).getReader();
      while (!(await reader.read()).done) {
        // discard: only the hash is needed
      }
      await allVerified(result.signatures);
    } catch (err) {
      throw badSignature(what, err);
    }
  }
}

async function parseKeys(armored: string | undefined, binary: Uint8Array | undefined, what: string) {
  try {
    return armored !== undefined
      ? await openpgp.readKeys({ armoredKeys: armored })
      : await openpgp.readKeys({ binaryKeys: binary as Uint8Array });
  } catch (err) {
    throw new InvalidSpecError('keys', `${what} holds no readable OpenPGP public key: ${(err as Error).message}`, {
      op: 'resolve',
      cause: err,
    });
  }
}

async function allVerified(signatures: { verified: Promise<unknown> }[]): Promise<void> {
  if (signatures.length === 0) throw new Error('no signature');
  for (const s of signatures) await s.verified;
}

function badSignature(what: string, err: unknown): ImageVerifyFailedError {
  if (err instanceof ImageVerifyFailedError) return err;
  return new ImageVerifyFailedError(`execenv: ${what}: bad or untrusted signature: ${(err as Error).message}`, {
    cause: err,
  });
}

/**
 * Reads every public key of `keys` (see KeyRing.load).
 *
 * @example
 * ```ts
 * import { imageSettings, loadKeys } from '@execenv/images';
 * const ring = await loadKeys((await imageSettings()).keys ?? []); // a missing key file is INVALID_SPEC (keys)
 * const json = await ring.verifyCleartext(signedText, 'streams/v1/index.sjson'); // the text that was signed
 * ```
 */
export function loadKeys(keys: TrustedKeys): Promise<KeyRing> {
  return KeyRing.load(keys);
}

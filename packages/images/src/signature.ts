import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { ImageVerifyFailedError } from '@execenv/core';
import * as openpgp from 'openpgp';

/** Keys that may sign images: armored public keys, or paths of keyring files (armored or binary). */
export type TrustedKeys = readonly string[];

/** Reads every public key of `keys`. */
export async function loadKeys(keys: TrustedKeys): Promise<openpgp.PublicKey[]> {
  const loaded: openpgp.PublicKey[] = [];
  for (const k of keys) {
    if (k.includes('-----BEGIN PGP PUBLIC KEY BLOCK-----')) {
      loaded.push(...(await openpgp.readKeys({ armoredKeys: k })));
      continue;
    }
    const bytes = await readFile(k);
    const text = bytes.toString('latin1');
    loaded.push(
      ...(text.includes('-----BEGIN PGP')
        ? await openpgp.readKeys({ armoredKeys: text })
        : await openpgp.readKeys({ binaryKeys: bytes })),
    );
  }
  return loaded;
}

function noKeys(what: string): ImageVerifyFailedError {
  return new ImageVerifyFailedError(
    `execenv: ${what}: no trusted keys configured; give keys, or verify: false to skip the check`,
  );
}

/**
 * Checks an OpenPGP cleartext-signed document (a simplestreams `.sjson`)
 * against `keys` and returns the text that was signed. Throws
 * ImageVerifyFailedError naming `what` when the signature is bad, made by an
 * unknown key, or missing keys.
 */
export async function verifyCleartext(signed: string, keys: openpgp.PublicKey[], what: string): Promise<string> {
  if (keys.length === 0) throw noKeys(what);
  try {
    const message = await openpgp.readCleartextMessage({ cleartextMessage: signed });
    const result = await openpgp.verify({ message, verificationKeys: keys });
    if (result.signatures.length === 0) throw new Error('no signature');
    for (const s of result.signatures) await s.verified;
    return result.data as string;
  } catch (err) {
    throw new ImageVerifyFailedError(`execenv: ${what}: bad or untrusted signature: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/**
 * Checks the detached signature `armoredSignature` of the file at `path`
 * against `keys`, streaming the file. Throws ImageVerifyFailedError naming
 * `what` when the signature is bad, made by an unknown key, or missing keys.
 */
export async function verifyDetached(
  path: string,
  armoredSignature: string,
  keys: openpgp.PublicKey[],
  what: string,
): Promise<void> {
  if (keys.length === 0) throw noKeys(what);
  try {
    const signature = await openpgp.readSignature({ armoredSignature });
    const message = await openpgp.createMessage({
      binary: Readable.toWeb(createReadStream(path, { highWaterMark: 1 << 20 })) as ReadableStream<Uint8Array>,
    });
    const result = await openpgp.verify({ message, signature, verificationKeys: keys, format: 'binary' });
    // The data must be read through for the signature to be computed.
    const reader = (result.data as unknown as ReadableStream<Uint8Array>).getReader();
    while (!(await reader.read()).done) {
      // discard: only the hash is needed
    }
    await result.signatures[0]?.verified;
    if (result.signatures.length === 0) throw new Error('no signature');
  } catch (err) {
    throw new ImageVerifyFailedError(`execenv: ${what}: bad or untrusted signature: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

import type { FakeFileSystem } from './fake-filesystem.js';

/** The part of a fake command's context the built-in commands use. */
export interface BuiltinCommandContext {
  /** The argv that was run. */
  argv: readonly string[];
  /** Reads stdin to its end. */
  stdin(): Promise<Uint8Array>;
  /** The environment's files. */
  files: FakeFileSystem;
}

/** What a built-in command leaves. */
export interface BuiltinCommandResult {
  exitCode?: number;
  stdout?: string | Uint8Array;
  stderr?: string | Uint8Array;
}

/** The commands every fake environment knows: `true`, `false`, `echo` and `cat`. */
export const FAKE_BUILTINS: Readonly<
  Record<string, (ctx: BuiltinCommandContext) => BuiltinCommandResult | Promise<BuiltinCommandResult>>
> = {
  true: () => ({}),
  false: () => ({ exitCode: 1 }),
  echo: ({ argv }) => ({ stdout: `${argv.slice(1).join(' ')}\n` }),
  cat: async ({ argv, stdin, files }) => {
    if (argv.length === 1) return { stdout: await stdin() };
    const out: Uint8Array[] = [];
    for (const path of argv.slice(1)) {
      const data = files.readFile(path);
      if (!data) return { exitCode: 1, stderr: `cat: ${path}: No such file or directory\n` };
      out.push(data);
    }
    return { stdout: Buffer.concat(out) };
  },
};

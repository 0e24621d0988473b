import { Readable } from 'node:stream';
import v8 from 'node:v8';
import vm from 'node:vm';
import { type Check, type CheckContext, codeOf, HUNG, rejection, unique } from '../context.js';

const ALL_BYTES = Uint8Array.from({ length: 256 }, (_, i) => i);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function exitCodes(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const cases: [string[], number | null, string | null][] = [
    [['true'], 0, null],
    [['false'], 1, null],
    [['sh', '-c', 'exit 127'], 127, null],
    [['sh', '-c', 'exit 255'], 255, null],
    [['sh', '-c', 'kill -KILL $$'], null, 'SIGKILL'],
    [['sh', '-c', 'kill -TERM $$'], null, 'SIGTERM'],
  ];
  for (const [argv, code, signal] of cases) {
    const r = await env.exec(argv);
    ctx.expect(
      env.id,
      `exec ${JSON.stringify(argv)}`,
      { exitCode: r.exitCode, signal: r.signal },
      { exitCode: code, signal },
    );
  }
  const missing = await env.exec(['/nonexistent-command']);
  if (missing.exitCode !== 127 && missing.exitCode !== 126)
    ctx.problem(env.id, 'exec of a missing command', missing.exitCode, '127 or 126 as a result');
  const err = await rejection(env.exec(['sh', '-c', 'exit 3'], { check: true }));
  ctx.expect(
    env.id,
    'exec exit 3 with check',
    [codeOf(err), (err as { result?: { exitCode?: number } })?.result?.exitCode],
    ['EXEC_FAILED', 3],
  );
}

/** Parses the output of `env` into variables. */
function parseEnv(stdout: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) vars[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return vars;
}

/**
 * A command sees the spec's env, the exec's env and PATH, never the host's:
 * neither in an environment opened before a host variable was set, nor in one
 * opened after (a driver that copies the host's environment at open).
 */
async function envIsolation(ctx: CheckContext): Promise<void> {
  const name = `EXECENV_HOST_SECRET_${unique('v').replace('-', '_')}`;
  const shared = await ctx.env();
  process.env[name] = 'leaked';
  try {
    const fresh = await ctx.open({ ...ctx.options.spec, env: { SPEC_VAR: 'from-spec', OVER: 'spec' } });
    for (const [env, when] of [
      [shared, 'opened before the host variable was set'],
      [fresh, 'opened after the host variable was set'],
    ] as const) {
      const r = await ctx.within(30_000, env.id, 'env', 'an exit', env.exec(['env'], { env: { A: 'x y' } }));
      if (r === HUNG) continue;
      const vars = parseEnv(r.stdout);
      if (name in vars)
        ctx.problem(env.id, `env in an environment ${when}`, `${name}=${vars[name]}`, 'no host variable');
      ctx.expect(env.id, `A of exec env {A: "x y"} (${when})`, vars.A, 'x y');
      if (!vars.PATH?.includes('/bin')) ctx.problem(env.id, `PATH (${when})`, vars.PATH, 'a PATH including /bin');
    }
    const r = await ctx.within(
      30_000,
      fresh.id,
      'env with an exec override',
      'an exit',
      fresh.exec(['env'], { env: { OVER: 'exec' } }),
    );
    if (r !== HUNG) {
      const vars = parseEnv(r.stdout);
      ctx.expect(fresh.id, 'spec env with an exec override', [vars.SPEC_VAR, vars.OVER], ['from-spec', 'exec']);
    }
  } finally {
    delete process.env[name];
  }
}

async function cwd(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  ctx.expect(env.id, 'pwd with cwd /tmp', (await env.exec(['pwd'], { cwd: '/tmp' })).stdout.trim(), '/tmp');
  ctx.expect(env.id, 'pwd by default', (await env.exec(['pwd'])).stdout.trim(), '/');
}

async function user(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const id = async (u?: string) => {
    const r = await env.exec(['sh', '-c', 'echo "$(id -u) $(id -g)"'], u ? { user: u } : {});
    return r.exitCode === 0 ? r.stdout.trim() : `exit ${r.exitCode}: ${r.stderr.trim()}`;
  };
  ctx.expect(env.id, 'id by default', await id(), '0 0');
  ctx.expect(env.id, 'id as nobody', await id('nobody'), '65534 65534');
  ctx.expect(env.id, 'id as 1234:2345', await id('1234:2345'), '1234 2345');
  const err = await rejection(env.exec(['true'], { user: 'no-such-user-here' }));
  ctx.expect(env.id, 'exec as an unknown user', codeOf(err), 'INVALID_SPEC');
}

async function stdin(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  ctx.expect(env.id, 'cat with string stdin', (await env.exec(['cat'], { stdin: 'text in' })).stdout, 'text in');
  const bytes = (await env.exec(['cat'], { stdin: ALL_BYTES })).stdoutBytes;
  ctx.expect(env.id, 'cat with all 256 byte values', Buffer.from(bytes).equals(Buffer.from(ALL_BYTES)), true);
  const stream = Readable.from([Buffer.from('one '), Buffer.from('two '), Buffer.from('three')]);
  ctx.expect(env.id, 'cat with a stream', (await env.exec(['cat'], { stdin: stream })).stdout, 'one two three');
  // cat ends only when its stdin closes: without stdin, or with 'ignore', that is at once.
  for (const [op, opts] of [
    ['cat without stdin', {}],
    ["cat with stdin 'ignore'", { stdin: 'ignore' as const }],
  ] as const) {
    const r = await ctx.within(
      10_000,
      env.id,
      op,
      'an exit at once (stdin closed)',
      env.exec(['cat'], { ...opts, timeout: 3000 }),
    );
    if (r !== HUNG) ctx.expect(env.id, op, { stdout: r.stdout, timedOut: r.timedOut }, { stdout: '', timedOut: false });
  }
  const p = env.spawn(['cat']);
  const chunks: Buffer[] = [];
  p.stdout.on('data', (c: Buffer) => chunks.push(c));
  p.stdin?.end('via spawn');
  if ((await ctx.within(10_000, env.id, 'spawn cat fed through its stdin', 'an exit', p.result)) === HUNG) return;
  ctx.expect(env.id, 'spawn cat fed through its stdin', Buffer.concat(chunks).toString(), 'via spawn');
}

async function separateOutput(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const r = await env.exec(['sh', '-c', 'echo out; echo err >&2; echo out2'], {
    onStdout: (c) => out.push(Buffer.from(c)),
    onStderr: (c) => err.push(Buffer.from(c)),
  });
  ctx.expect(env.id, 'buffered stdout/stderr', [r.stdout, r.stderr], ['out\nout2\n', 'err\n']);
  ctx.expect(
    env.id,
    'streamed stdout/stderr',
    [Buffer.concat(out).toString(), Buffer.concat(err).toString()],
    ['out\nout2\n', 'err\n'],
  );
}

/** A function that runs a full garbage collection, made available at run time. */
function collector(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

async function streamingMemory(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const total = ctx.options.streamBytes ?? 50 * 1024 * 1024;
  const gc = collector();
  const retained = () => {
    gc();
    const m = process.memoryUsage();
    return m.arrayBuffers + m.heapUsed;
  };
  const base = retained();
  const p = env.spawn(['head', '-c', String(total), '/dev/zero']);
  const chunks = p.stdout[Symbol.asyncIterator]();
  let count = 0;
  while (count < Math.min(1 << 20, total)) {
    const next = await chunks.next();
    if (next.done) break;
    count += (next.value as Buffer).length;
  }
  // Stop reading: a driver with backpressure stalls the command, one that buffers reads on into host memory.
  await sleep(2000);
  const held = retained() - base;
  for (;;) {
    const next = await chunks.next();
    if (next.done) break;
    count += (next.value as Buffer).length;
  }
  await p.result;
  ctx.expect(env.id, `bytes streamed from head -c ${total}`, count, total);
  if (held > total * 0.3)
    ctx.problem(env.id, 'host memory held while the reader paused', `${held} bytes`, `< ${total * 0.3} (backpressure)`);
}

async function binaryOutput(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const path = `/tmp/${unique('binary')}`;
  const data = Buffer.concat(Array.from({ length: 64 }, () => Buffer.from(ALL_BYTES)));
  await env.push(data, path);
  const r = await env.exec(['cat', path]);
  ctx.expect(env.id, 'cat of a binary file', Buffer.from(r.stdoutBytes).equals(data), true);
}

/** Starts a command whose background grandchild would create `marker` after 2 s. */
function grandchild(marker: string): string[] {
  return ['sh', '-c', `(sleep 2; touch ${marker}) & sleep 60`];
}

async function markerAppeared(ctx: CheckContext, marker: string): Promise<boolean> {
  await sleep(3000);
  const env = await ctx.env();
  return (await env.exec(['test', '-e', marker])).exitCode === 0;
}

async function timeout(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const marker = `/tmp/${unique('timeout')}`;
  const started = Date.now();
  const r = await env.exec(grandchild(marker), { timeout: 500 });
  ctx.expect(env.id, 'exec past its timeout: timedOut', r.timedOut, true);
  if (Date.now() - started > 20_000)
    ctx.problem(env.id, 'exec with timeout 500 ms', `${Date.now() - started} ms`, 'a few seconds at most');
  if (await markerAppeared(ctx, marker))
    ctx.problem(env.id, 'background grandchild after timeout', 'still running', 'killed');
  const err = await rejection(env.exec(['sleep', '60'], { timeout: 300, check: true }));
  ctx.expect(env.id, 'timeout with check', codeOf(err), 'TIMEOUT');
}

async function abort(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  // Aborts that land while the command is still being started (0-4 ms in) must kill it too.
  const starting: string[] = [];
  for (let i = 0; i < 8; i++) {
    const marker = `/tmp/${unique(`abort-early-${i}`)}`;
    starting.push(marker);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), i % 5);
    const err = await rejection(env.exec(grandchild(marker), { signal: ac.signal }));
    ctx.expect(env.id, `exec aborted ${i % 5} ms after its start`, codeOf(err), 'ABORTED');
  }
  const marker = `/tmp/${unique('abort')}`;
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 300);
  const err = await rejection(env.exec(grandchild(marker), { signal: ac.signal }));
  ctx.expect(env.id, 'exec aborted after 300 ms', codeOf(err), 'ABORTED');
  if (await markerAppeared(ctx, marker))
    ctx.problem(env.id, 'background grandchild after abort', 'still running', 'killed');
  const left = (await env.exec(['sh', '-c', 'for m; do test -e "$m" && echo "$m"; done; true', 'sh', ...starting]))
    .stdout;
  if (left.trim())
    ctx.problem(
      env.id,
      'commands aborted while they started',
      `still ran: ${left.trim().split('\n').join(', ')}`,
      'killed',
    );
  const ran = `/tmp/${unique('pre-aborted')}`;
  const early = await rejection(env.exec(['touch', ran], { signal: AbortSignal.abort() }));
  ctx.expect(env.id, 'exec with an aborted signal', codeOf(early), 'ABORTED');
  ctx.expect(env.id, 'command of an exec aborted before start', (await env.exec(['test', '-e', ran])).exitCode, 1);
}

async function maxBuffer(ctx: CheckContext): Promise<void> {
  const env = await ctx.env();
  const err = await rejection(env.exec(['head', '-c', '1000000', '/dev/zero'], { maxBuffer: 1000 }));
  ctx.expect(env.id, 'exec past maxBuffer', codeOf(err), 'EXEC_FAILED');
}

/** Checks of exec semantics. */
export const execChecks: Check[] = [
  { name: 'exit-codes', run: exitCodes },
  { name: 'env-isolation', run: envIsolation },
  { name: 'cwd', run: cwd },
  { name: 'user', run: user },
  { name: 'stdin', run: stdin },
  { name: 'separate-output', run: separateOutput },
  { name: 'streaming-memory', run: streamingMemory, timeoutMs: 120_000 },
  { name: 'binary-output', run: binaryOutput },
  { name: 'timeout', run: timeout },
  { name: 'abort', run: abort },
  { name: 'max-buffer', run: maxBuffer },
];

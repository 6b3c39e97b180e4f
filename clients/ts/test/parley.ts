// A real parley for the tests: built once per run from this repository with
// `go build`, started with the in-memory backend on loopback, and killed at
// the end. Nothing here is part of the package.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/** clients/ts, where `go build ../../app/cmd/parley` is run from. */
const packageDir = fileURLToPath(new URL('../../', import.meta.url));

const workDir = mkdtempSync(join(tmpdir(), 'parley-ts-'));
const live = new Set<ChildProcess>();

// A test run that dies half-way must not leave a server behind.
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
  rmSync(workDir, { recursive: true, force: true });
});

let built: Promise<string> | undefined;

/**
 * buildParley compiles the server once per test process and returns the
 * binary's path. PARLEY_BIN names an already built binary instead.
 */
export function buildParley(): Promise<string> {
  const given = process.env['PARLEY_BIN'];
  if (given) return Promise.resolve(given);
  built ??= (async () => {
    const bin = join(workDir, 'parley');
    await promisify(execFile)('go', ['build', '-o', bin, '../../app/cmd/parley'], { cwd: packageDir });
    return bin;
  })();
  return built;
}

/** Options of a test server. */
export interface ServerOptions {
  /** Live settings, written to a settings file (e.g. parley.ack_timeout_ms). */
  settings?: Record<string, string | number>;
  /** Turns the operator API on with this bearer token. */
  adminToken?: string;
}

/**
 * Server is one parley process. restart keeps the port and the JWT secret,
 * so that clients find it where it was and their tokens stay valid; the
 * memory backend keeps no messages across it.
 */
export class Server {
  private proc: ChildProcess | undefined;
  private logs = '';
  private readonly secret = randomBytes(32).toString('hex');
  private readonly dir = mkdtempSync(join(workDir, 'srv-'));
  addr = '127.0.0.1:0';

  private constructor(private readonly bin: string, private readonly opts: ServerOptions) {}

  static async start(opts: ServerOptions = {}): Promise<Server> {
    const s = new Server(await buildParley(), opts);
    await s.launch();
    return s;
  }

  /** startAgain starts a stopped server on the port it had. */
  startAgain(): Promise<void> {
    return this.launch();
  }

  /** The base URL, http://127.0.0.1:port. */
  get url(): string {
    return `http://${this.addr}`;
  }

  /** The server's recent log lines, for failure messages. */
  get log(): string {
    return this.logs;
  }

  private async launch(): Promise<void> {
    const ready = join(this.dir, 'ready');
    rmSync(ready, { force: true });
    const args = ['-backend', 'memory', '-addr', this.addr, '-ready-file', ready, '-jwt-secret', this.secret,
      '-dev-tokens', '-log-format', 'json', '-log-level', 'warn', '-shutdown-timeout', '3s'];
    if (this.opts.adminToken) args.push('-admin-token', this.opts.adminToken);
    if (this.opts.settings) {
      const file = join(this.dir, 'settings.yaml');
      writeFileSync(file, Object.entries(this.opts.settings).map(([k, v]) => `${k}: ${v}\n`).join(''));
      args.push('-settings', file);
    }
    const proc = spawn(this.bin, args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: this.dir });
    this.proc = proc;
    live.add(proc);
    proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
      this.logs = (this.logs + d).slice(-16_000);
    });
    let exited = false;
    proc.once('exit', () => {
      exited = true;
      live.delete(proc);
    });
    const deadline = Date.now() + 20_000;
    for (;;) {
      let addr = '';
      try {
        addr = readFileSync(ready, 'utf8').trim();
      } catch {
        // Not written yet.
      }
      if (/^127\.0\.0\.1:\d+$/.test(addr) && !addr.endsWith(':0')) {
        this.addr = addr;
        return;
      }
      if (exited) throw new Error(`parley exited at start:\n${this.logs}`);
      if (Date.now() > deadline) throw new Error(`parley not ready within 20 s:\n${this.logs}`);
      await sleep(20);
    }
  }

  /** stop ends the process with signal and waits for it to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill(signal);
    await exited;
  }

  /** ban suspends subject (`user:<id>`) for forS seconds through the operator API and returns the end, Unix ms. */
  async ban(subject: string, forS: number): Promise<number> {
    const res = await fetch(`${this.url}/v1/admin/bans`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${this.opts.adminToken ?? ''}` },
      body: JSON.stringify({ subject, for_s: forS, reason: 'test' }),
    });
    const data = (await res.json()) as { until?: number };
    if (!res.ok || !data.until) throw new Error(`ban ${subject}: HTTP ${res.status} ${JSON.stringify(data)}`);
    return data.until;
  }

  /** token returns a development token for user. */
  async token(user: string): Promise<string> {
    const res = await fetch(`${this.url}/v1/dev/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user }),
    });
    const data = (await res.json()) as { token?: string };
    if (!res.ok || !data.token) throw new Error(`dev token for ${user}: HTTP ${res.status}`);
    return data.token;
  }
}

/**
 * Proxy forwards TCP connections to a target and can cut them all at once,
 * as a lost network would, and refuse new ones until restored.
 */
export class Proxy {
  private readonly pairs = new Set<net.Socket>();
  private blocked = false;
  private constructor(private readonly server: net.Server, readonly url: string) {}

  static async start(targetAddr: string): Promise<Proxy> {
    const [host, port] = splitAddr(targetAddr);
    let proxy: Proxy | undefined;
    const server = net.createServer((down) => {
      if (!proxy || proxy.blocked) {
        down.destroy();
        return;
      }
      const up = net.connect(port, host);
      const pairs = proxy.pairs;
      pairs.add(down);
      pairs.add(up);
      const end = () => {
        down.destroy();
        up.destroy();
        pairs.delete(down);
        pairs.delete(up);
      };
      down.on('error', end).on('close', end);
      up.on('error', end).on('close', end);
      down.pipe(up);
      up.pipe(down);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const a = server.address() as net.AddressInfo;
    proxy = new Proxy(server, `http://127.0.0.1:${a.port}`);
    return proxy;
  }

  /** cut drops every connection without a close frame and refuses new ones. */
  cut(): void {
    this.blocked = true;
    for (const s of this.pairs) s.destroy();
    this.pairs.clear();
  }

  /** restore accepts connections again. */
  restore(): void {
    this.blocked = false;
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

function splitAddr(addr: string): [string, number] {
  const i = addr.lastIndexOf(':');
  return [addr.slice(0, i), Number(addr.slice(i + 1))];
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** waitFor polls cond until it holds, or fails with what after timeoutMs. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

// Test harness: builds and starts the real Switchboard server, launches one Chromium process per
// participant (fake camera/mic), and offers polling helpers. Used by the *.test.js files here.
//
// Environment:
//   SWITCHBOARD_SERVER_CMD  run this shell command instead of `cargo build` + target/debug/switchboard
//                           (it gets the same flags appended and must print the same listening line)
//   CHROMIUM                browser binary (default /usr/bin/chromium)
//   SAVE_SCREENSHOT=1       group.test.js writes docs/screenshot-call.png (a four-person call)

import { spawn, spawnSync } from 'node:child_process';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const WEB_DIR = path.resolve(here, '..');
export const REPO_ROOT = path.resolve(WEB_DIR, '..');
export const PUBLIC_DIR = path.join(WEB_DIR, 'public');

const LISTEN_RE = /Switchboard listening on (http:\/\/\S+) \(media UDP ([^)\s]+)\)/;

let built = false;

/** `cargo build -p switchboard` once per process; the first build can take minutes. */
export function buildServer() {
  if (built || process.env.SWITCHBOARD_SERVER_CMD) return;
  const t0 = Date.now();
  const r = spawnSync('cargo', ['build', '-p', 'switchboard'], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) {
    throw new Error(`cargo build -p switchboard failed (${r.status}):\n${(r.stderr || '').slice(-6000)}`);
  }
  console.log(`# server built in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  built = true;
}

/**
 * Start a server on ephemeral ports. Resolves with {url, mediaAddr, mediaPort, logs(), stop()}.
 */
export async function startServer({ ringTimeoutSecs = 5 } = {}) {
  buildServer();
  const args = ['--http-addr', '127.0.0.1:0', '--media-addr', '127.0.0.1:0', '--ring-timeout-secs', String(ringTimeoutSecs),
    // One server serves a whole test file whose scenarios call the same people back to back,
    // also right after a reject: the ring throttles (tested in signaling/tests/ring_limits.rs)
    // would refuse those calls.
    '--decline-cooldown-secs', '0', '--ring-burst-per-callee', '100'];
  // A fresh call history and recording directory per server, outside the repository.
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'switchboard-web-test-'));
  // A known secret, so tests can mint tokens with narrower grants (mintToken).
  const tokenSecret = randomBytes(32).toString('hex');
  const env = {
    ...process.env,
    SWITCHBOARD_TOKEN_SECRET: tokenSecret,
    SWITCHBOARD_WEB_DIR: PUBLIC_DIR,
    SWITCHBOARD_DATABASE_URL: `sqlite://${path.join(scratch, 'history.sqlite')}?mode=rwc`,
    SWITCHBOARD_RECORDING_DIR: path.join(scratch, 'recordings'),
    SWITCHBOARD_RECORDING_MIN_FREE_MB: '1',
    RUST_LOG: process.env.RUST_LOG || 'info',
  };
  let child;
  if (process.env.SWITCHBOARD_SERVER_CMD) {
    child = spawn('sh', ['-c', `exec ${process.env.SWITCHBOARD_SERVER_CMD} ${args.join(' ')}`], { cwd: REPO_ROOT, env });
  } else {
    // Where cargo put it: CARGO_TARGET_DIR when set (relative to the repo), else target/.
    const targetDir = process.env.CARGO_TARGET_DIR
      ? path.resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR)
      : path.join(REPO_ROOT, 'target');
    const bin = path.join(targetDir, 'debug', 'switchboard');
    if (!existsSync(bin)) throw new Error(`missing ${bin} after build`);
    child = spawn(bin, args, { cwd: REPO_ROOT, env });
  }
  let output = '';
  const found = new Promise((resolve, reject) => {
    const onData = (d) => {
      output += d.toString();
      if (output.length > 2_000_000) output = output.slice(-1_000_000);
      const m = output.match(LISTEN_RE);
      if (m) resolve(m);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code, sig) => reject(new Error(`server exited early (${code ?? sig}):\n${output.slice(-4000)}`)));
    setTimeout(() => reject(new Error(`no listening line within 30s:\n${output.slice(-4000)}`)), 30_000);
  });
  let m;
  try {
    m = await found;
  } catch (e) {
    child.kill('SIGKILL');
    rmSync(scratch, { recursive: true, force: true });
    throw e;
  }
  const mediaAddr = m[2];
  const server = {
    url: m[1].replace(/\/$/, ''),
    mediaAddr,
    mediaPort: Number(mediaAddr.slice(mediaAddr.lastIndexOf(':') + 1)),
    scratch,
    tokenSecret,
    logs: () => output,
    async stop() {
      if (child.exitCode === null && !child.signalCode) {
        const gone = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 3000);
        await gone;
        clearTimeout(t);
      }
      rmSync(scratch, { recursive: true, force: true });
    },
  };
  return server;
}

/**
 * An HS256 session token signed with the server's secret, as an application backend would
 * mint it (docs/security.md §2): `{token, user}`, ready for launchParticipant's `session`.
 */
export function mintToken(server, name, grants, { ttlSecs = 3600 } = {}) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const user = { id: randomUUID(), name };
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({
    sub: user.id,
    name,
    exp: Math.floor(Date.now() / 1000) + ttlSecs,
    grants,
  })}`;
  const sig = createHmac('sha256', server.tokenSecret).update(body).digest('base64url');
  return { token: `${body}.${sig}`, user };
}

export const BASE_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--use-fake-device-for-media-stream',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required',
];

/**
 * One participant = one Chromium process (so each has its own fake devices) + one page.
 * media: 'fake' (fake devices, permission auto-granted; getDisplayMedia then captures a fake
 * 1280x720 screen) | 'denied' (permission prompts refused).
 * extraArgs: more Chromium flags, e.g. `--use-file-for-fake-video-capture=FILE.y4m`.
 */
export async function launchParticipant(
  server,
  name,
  { media = 'fake', viewport = { width: 1000, height: 700 }, session = null, extraArgs = [] } = {},
) {
  const args = [...BASE_FLAGS, ...extraArgs];
  if (media === 'fake') args.push('--use-fake-ui-for-media-stream');
  else args.push('--deny-permission-prompts');
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args,
  });
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const consoleLines = [];
  page.on('console', (msg) => {
    consoleLines.push(`[${name} ${msg.type()}] ${msg.text()}`);
    if (consoleLines.length > 200) consoleLines.shift();
  });
  page.on('pageerror', (err) => consoleLines.push(`[${name} pageerror] ${err.message}`));
  await page.goto(server.url + '/');
  if (session) {
    // A minted token instead of the demo sign-in: the page picks the saved session up on load.
    await page.evaluate((s) => sessionStorage.setItem('switchboard.session', JSON.stringify(s)), session);
    await page.reload();
  } else {
    await page.getByTestId('name-input').fill(name);
    await page.getByTestId('signin-button').click();
  }
  await page.getByTestId('lobby-view').waitFor({ state: 'visible', timeout: 10_000 });
  await waitFor(page, () => window.switchboard.state().connected, null, { what: `${name} connected` });
  const me = await page.evaluate(() => window.switchboard.state().me);
  return {
    name,
    id: me.id,
    browser,
    context,
    page,
    consoleLines,
    state: () => page.evaluate(() => window.switchboard.state()),
    stats: () => page.evaluate(() => window.switchboard.stats()),
    close: () => browser.close().catch(() => {}),
  };
}

/** Poll `fn` in the page until it returns something truthy. Throws with `what` on timeout. */
export async function waitFor(page, fn, arg, { timeout = 15_000, interval = 200, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await page.evaluate(fn, arg);
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout}ms waiting for ${what}`);
    await sleep(interval);
  }
}

/** Poll an async node-side predicate until it returns something truthy. */
export async function until(fn, { timeout = 15_000, interval = 250, what = 'condition', describe } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) {
      const extra = describe ? `\n${await describe()}` : '';
      throw new Error(`timed out after ${timeout}ms waiting for ${what}${extra}`);
    }
    await sleep(interval);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The lobby row button to call `peer` (`kind` = 'voice' | 'video'). */
export function callButton(page, peer, kind) {
  return page.getByRole('button', { name: `${kind === 'voice' ? 'Voice' : 'Video'} call ${peer.name}`, exact: true });
}

/** Caller rings callee, callee accepts; resolves when both are in the active phase. */
export async function placeCall(caller, callee, kind = 'video') {
  const btn = callButton(caller.page, callee, kind);
  await btn.waitFor({ state: 'visible' });
  await until(() => btn.isEnabled(), { what: `${callee.name}'s call button enabled` });
  await btn.click();
  await callee.page.getByTestId('incoming-call').waitFor({ state: 'visible' });
  await callee.page.getByTestId('accept-call').click();
  for (const p of [caller, callee]) {
    await waitFor(p.page, () => window.switchboard.state().call?.phase === 'active', null, { what: `${p.name} active` });
  }
}

/** Make sure a participant is idle (hang up whatever is going on) before the next test. */
export async function ensureIdle(...participants) {
  for (const p of participants) {
    const s = await p.state().catch(() => null);
    if (s && s.call) {
      if (s.call.phase === 'incoming') await p.page.getByTestId('reject-call').click().catch(() => {});
      else await p.page.getByTestId('end-call').click().catch(() => {});
    }
  }
  for (const p of participants) {
    await waitFor(p.page, () => !window.switchboard.state().call, null, { what: `${p.name} idle` });
  }
  // Presence must show everyone free again before a new call can be placed.
  for (const p of participants) {
    await waitFor(
      p.page,
      () => window.switchboard.state().users.every((u) => !u.busy),
      null,
      { what: `${p.name} sees everyone free` },
    );
  }
}

/** Media digest of one participant, for failure messages. */
export async function describe(...participants) {
  const parts = [];
  for (const p of participants) {
    const [st, stats] = await Promise.all([p.state().catch((e) => String(e)), p.stats().catch((e) => String(e))]);
    parts.push(`--- ${p.name}\nstate: ${JSON.stringify(st)}\nstats: ${JSON.stringify(stats, null, 1)}\nconsole:\n${p.consoleLines.slice(-15).join('\n')}`);
  }
  return parts.join('\n');
}

/** inbound-rtp counter of the subscriber connection, e.g. inbound(p, 'video', 'framesDecoded'). */
export async function inbound(p, kind, field) {
  const s = await p.stats();
  const v = s && s.subscriber && s.subscriber.inbound[kind] && s.subscriber.inbound[kind][field];
  return typeof v === 'number' ? v : 0;
}

/**
 * Wait until the counter grows across two samples `gap` ms apart (media really flowing),
 * returning the second sample.
 */
export async function expectGrowing(p, kind, field, { timeout = 30_000, gap = 1500, others = [] } = {}) {
  const deadline = Date.now() + timeout;
  let a = await inbound(p, kind, field);
  for (;;) {
    await sleep(gap);
    const b = await inbound(p, kind, field);
    if (b > a && a > 0) return b;
    if (Date.now() > deadline) {
      throw new Error(
        `${p.name}: inbound ${kind} ${field} not growing (${a} -> ${b}) within ${timeout}ms\n${await describe(p, ...others)}`,
      );
    }
    a = b;
  }
}

/** Wait until the counter stays flat across two samples `gap` ms apart. */
export async function expectFlat(p, kind, field, { timeout = 15_000, gap = 2000, others = [] } = {}) {
  const deadline = Date.now() + timeout;
  let a = await inbound(p, kind, field);
  for (;;) {
    await sleep(gap);
    const b = await inbound(p, kind, field);
    if (b === a) return b;
    if (Date.now() > deadline) {
      throw new Error(`${p.name}: inbound ${kind} ${field} still growing (${a} -> ${b})\n${await describe(p, ...others)}`);
    }
    a = b;
  }
}

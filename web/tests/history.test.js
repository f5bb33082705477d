// Recent calls and recording, with two (and briefly three) real browsers against one real
// server: the REC indicator on both sides, the call in both histories with its recordings
// (downloaded through a blob URL), a missed call highlighted for the callee, and call-back.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe as suite, test as nodeTest } from 'node:test';
import {
  callButton,
  describe,
  ensureIdle,
  expectGrowing,
  launchParticipant,
  mintToken,
  placeCall,
  startServer,
  until,
  waitFor,
} from './harness.js';

const item = (p, callId) => p.page.locator(`[data-testid="history-item"][data-call-id="${callId}"]`);

/** Wait until `p`'s Recent calls shows call `callId` and `check(attrs)` holds; returns the attrs. */
async function historyEntry(p, callId, check = () => true, { timeout = 20_000, what = 'history entry' } = {}) {
  let last = null;
  try {
    return await until(
      async () => {
        last = await p.page.evaluate((id) => {
          const li = document.querySelector(`[data-testid="history-item"][data-call-id="${CSS.escape(id)}"]`);
          if (!li || li.offsetParent === null) return null;
          const q = (t) => li.querySelector(`[data-testid="${t}"]`);
          return {
            direction: li.dataset.direction,
            outcome: li.dataset.outcome,
            kind: li.dataset.kind,
            missed: li.dataset.missed,
            peer: q('history-peer').textContent,
            outcomeText: q('history-outcome').textContent,
            durationText: q('history-duration').hidden ? null : q('history-duration').textContent,
            durationMs: Number(q('history-duration').dataset.ms || 0),
            time: q('history-time').textContent,
            kindLabel: q('history-kind').getAttribute('aria-label'),
            recordings: li.querySelectorAll('[data-testid="history-recording"]').length,
            nameColor: getComputedStyle(q('history-peer')).color,
            classes: li.className,
          };
        }, callId);
        return last && check(last) ? last : null;
      },
      { timeout, what: `${p.name}: ${what}` },
    );
  } catch (e) {
    e.message += `\nlast seen: ${JSON.stringify(last)}\n${await describe(p)}`;
    throw e;
  }
}

const recIndicator = async (p) => {
  const el = p.page.getByTestId('rec-indicator');
  return (await el.isVisible()) ? await p.page.getByTestId('rec-by').textContent() : null;
};

suite('recent calls and recording', { timeout: 10 * 60_000 }, () => {
  let server;
  let alice;
  let bob;

  const test = (name, fn) =>
    nodeTest(name, async (t) => {
      await ensureIdle(alice, bob);
      await fn(t);
    });

  before(async () => {
    server = await startServer({ ringTimeoutSecs: 5 });
    console.log(`# server ${server.url}, media UDP ${server.mediaAddr}`);
    [alice, bob] = await Promise.all([launchParticipant(server, 'Alice'), launchParticipant(server, 'Bob')]);
    await callButton(alice.page, bob, 'video').waitFor({ state: 'visible' });
    await callButton(bob.page, alice, 'video').waitFor({ state: 'visible' });
    // Fresh users: the panel is there and empty.
    for (const p of [alice, bob]) {
      await p.page.getByTestId('history-view').waitFor({ state: 'visible' });
      await until(async () => (await p.page.getByTestId('history-status').textContent()) === 'No calls yet.', {
        what: `${p.name}: empty history`,
      });
    }
  });

  after(async () => {
    await alice?.close();
    await bob?.close();
    await server?.stop();
  });

  test('record a video call: REC on both sides, then the call and its recordings in both histories', async () => {
    await placeCall(alice, bob, 'video');
    const callId = (await alice.state()).call.id;
    // Let media reach the SFU so there is something to record.
    await expectGrowing(bob, 'video', 'framesDecoded', { others: [alice] });

    const rec = alice.page.getByTestId('toggle-recording');
    assert.equal(await rec.getAttribute('aria-pressed'), 'false');
    assert.equal(await bob.page.getByTestId('rec-indicator').isVisible(), false, 'no REC before recording');
    await rec.click();
    for (const p of [alice, bob]) {
      await until(async () => (await recIndicator(p)) === 'Recording started by Alice', {
        what: `${p.name} sees REC started by Alice`,
        describe: () => describe(p),
      });
      assert.equal(await p.page.locator('[data-testid="rec-indicator"] .rec-label').textContent(), 'REC');
    }
    await until(async () => (await rec.getAttribute('aria-pressed')) === 'true', { what: 'Record button pressed' });
    assert.equal(await rec.locator('.label').textContent(), 'Stop recording');
    // Bob's button offers to stop too (anyone may stop a recording).
    assert.equal(await bob.page.getByTestId('toggle-recording').getAttribute('aria-label'), 'Stop recording');

    await alice.page.waitForTimeout(3000);
    await rec.click();
    for (const p of [alice, bob]) {
      await until(async () => (await recIndicator(p)) === null, { what: `${p.name}: REC gone` });
      await until(
        async () => (await p.page.getByTestId('toast').allTextContents()).some((t) => t.startsWith('Recording stopped')),
        { what: `${p.name}: "Recording stopped" toast` },
      );
    }
    assert.equal(await rec.locator('.label').textContent(), 'Record');

    await alice.page.waitForTimeout(1000);
    await alice.page.getByTestId('end-call').click();
    for (const p of [alice, bob]) {
      await waitFor(p.page, () => !window.switchboard.state().call, null, { what: `${p.name} idle` });
    }

    const done = (e) => e.outcome === 'completed' && e.durationMs > 0 && e.recordings > 0;
    const a = await historyEntry(alice, callId, done, { what: 'completed call with recordings' });
    const b = await historyEntry(bob, callId, done, { what: 'completed call with recordings' });
    assert.equal(a.direction, 'outgoing');
    assert.equal(b.direction, 'incoming');
    assert.equal(a.peer, 'Bob');
    assert.equal(b.peer, 'Alice');
    for (const e of [a, b]) {
      assert.equal(e.kind, 'video');
      assert.equal(e.kindLabel, 'Video call');
      assert.equal(e.missed, 'false');
      assert.match(e.outcomeText, /Completed/);
      assert.match(e.durationText, /^\d\d:\d\d$/);
      assert.ok(e.durationMs >= 3000, `duration ${e.durationMs} ms`);
      assert.equal(e.time, 'just now');
    }
    assert.match(a.outcomeText, /^Outgoing/);
    assert.match(b.outcomeText, /^Incoming/);

    // Download through fetch + Authorization + blob URL: a real WebM file arrives.
    const [download] = await Promise.all([
      bob.page.waitForEvent('download', { timeout: 15_000 }),
      item(bob, callId).getByTestId('recording-download').first().click(),
    ]);
    assert.match(download.suggestedFilename(), /\.webm$/);
    assert.match(download.url(), /^blob:/);
    const file = readFileSync(await download.path());
    assert.ok(file.length > 1000, `recording has ${file.length} bytes`);
    assert.equal(file.subarray(0, 4).toString('hex'), '1a45dfa3', 'EBML (WebM) header');
  });

  test('a call that rang out is a missed call for the callee, highlighted in red', async () => {
    await callButton(alice.page, bob, 'voice').click();
    await bob.page.getByTestId('incoming-call').waitFor({ state: 'visible' });
    const callId = await waitFor(alice.page, () => window.switchboard.state().call?.id, null, { what: 'call id' });
    // Nobody answers; the server's ring timeout is 5 s.
    for (const p of [alice, bob]) {
      await waitFor(p.page, () => !window.switchboard.state().call, null, { timeout: 15_000, what: `${p.name} idle` });
    }
    const b = await historyEntry(bob, callId, (e) => e.outcome === 'missed');
    assert.equal(b.direction, 'incoming');
    assert.equal(b.missed, 'true');
    assert.match(b.outcomeText, /Missed/);
    assert.match(b.classes, /\bmissed\b/);
    assert.equal(b.nameColor, 'rgb(220, 38, 38)', 'missed call name is red');
    assert.equal(b.durationText, null);
    assert.equal(b.kind, 'voice');

    const a = await historyEntry(alice, callId, (e) => e.outcome === 'missed');
    assert.equal(a.direction, 'outgoing');
    assert.equal(a.missed, 'false', 'not a missed call for the caller');
    assert.match(a.outcomeText, /No answer/);
    assert.notEqual(a.nameColor, 'rgb(220, 38, 38)');
  });

  test('call back from Recent calls rings the other side; offline users cannot be called back', async () => {
    // Bob's newest entry is the missed voice call from Alice: call her back.
    const first = bob.page.getByTestId('history-item').first();
    assert.equal(await first.getAttribute('data-peer-id'), alice.id);
    const back = first.getByTestId('history-callback');
    await until(() => back.isEnabled(), { what: 'call-back enabled' });
    assert.equal(await back.getAttribute('aria-label'), 'Call Alice back (voice)');
    await back.click();
    await alice.page.getByTestId('incoming-call').waitFor({ state: 'visible' });
    assert.equal(await alice.page.getByTestId('incoming-caller').textContent(), 'Bob');
    assert.match(await alice.page.getByTestId('incoming-kind').textContent(), /voice/i);
    const s = await bob.state();
    assert.equal(s.call.kind, 'voice');
    assert.equal(s.call.peer.id, alice.id);
    await alice.page.getByTestId('reject-call').click();
    await waitFor(bob.page, () => !window.switchboard.state().call, null, { what: 'Bob idle' });

    // Carol calls Bob, Bob declines, Carol leaves: her entry's call-back is disabled, with a reason.
    const carol = await launchParticipant(server, 'Carol');
    try {
      await callButton(carol.page, bob, 'video').click();
      await bob.page.getByTestId('incoming-call').waitFor({ state: 'visible' });
      const callId = (await bob.state()).call.id;
      await bob.page.getByTestId('reject-call').click();
      await historyEntry(bob, callId, (e) => e.outcome === 'rejected');
      const entry = item(bob, callId).getByTestId('history-callback');
      await until(() => entry.isEnabled(), { what: "Carol's call-back enabled while she is online" });
      await carol.close();
      await until(async () => !(await entry.isEnabled()), { what: "Carol's call-back disabled once she is offline" });
      assert.equal(await entry.getAttribute('title'), 'Carol is offline');
    } finally {
      await carol.close();
    }
  });

  test('recording refused (token without the record grant): a toast, and no REC anywhere', async () => {
    const session = mintToken(server, 'Dave', { call: true, publish: ['audio', 'video'], subscribe: true });
    const dave = await launchParticipant(server, 'Dave', { session });
    try {
      await placeCall(dave, alice, 'voice');
      await dave.page.getByTestId('toggle-recording').click();
      await until(
        async () => (await dave.page.getByTestId('toast').allTextContents()).some((t) => /not allowed to record.*missing_grant/.test(t)),
        { what: 'Dave: missing_grant toast', describe: () => describe(dave) },
      );
      // Only the readable toast from the ack, not a second raw one from the error event.
      const toasts = await dave.page.getByTestId('toast').allTextContents();
      assert.equal(toasts.length, 1, JSON.stringify(toasts));
      assert.equal(await recIndicator(dave), null);
      assert.equal(await recIndicator(alice), null);
      assert.equal(await dave.page.getByTestId('toggle-recording').getAttribute('aria-pressed'), 'false');
      await dave.page.getByTestId('end-call').click();
      await waitFor(alice.page, () => !window.switchboard.state().call, null, { what: 'Alice idle' });
    } finally {
      await dave.close();
    }
  });
});

// Two real browsers (Alice, Bob) against one real server: the call flows of the demo.
import assert from 'node:assert/strict';
import { after, before, describe as suite, test as nodeTest } from 'node:test';
import {
  callButton,
  describe,
  ensureIdle,
  expectFlat,
  expectGrowing,
  launchParticipant,
  placeCall,
  startServer,
  until,
  waitFor,
} from './harness.js';

const noticeText = (p) => p.page.getByTestId('notice-text').textContent();

/** After a call: both idle, every local track ended, both peer connections closed. */
async function assertReleased(p) {
  await waitFor(p.page, () => !window.switchboard.state().call, null, { what: `${p.name} idle` });
  await p.page.getByTestId('lobby-view').waitFor({ state: 'visible' });
  assert.equal(await p.page.getByTestId('call-view').isVisible(), false, `${p.name}: call view hidden`);
  const r = await p.page.evaluate(() => {
    const last = window.switchboard.last();
    return {
      tracks: last.localStream ? last.localStream.getTracks().map((t) => `${t.kind}:${t.readyState}`) : null,
      publisher: last.publisher ? last.publisher.signalingState : null,
      subscriber: last.subscriber ? last.subscriber.signalingState : null,
      pcs: window.switchboard.pcs(),
    };
  });
  assert.ok(r.tracks && r.tracks.length > 0, `${p.name}: had local tracks`);
  for (const t of r.tracks) assert.match(t, /:ended$/, `${p.name}: local track stopped (${r.tracks})`);
  for (const which of ['publisher', 'subscriber']) {
    if (r[which] !== null) assert.equal(r[which], 'closed', `${p.name}: ${which} closed`);
  }
  assert.equal(r.pcs.publisher, null);
  assert.equal(r.pcs.subscriber, null);
}

suite('calls between two browsers', { timeout: 30 * 60_000 }, () => {
  let server;
  let alice;
  let bob;

  // Each test starts from idle even when the previous one failed mid-call. (Not an afterEach:
  // node:test runs those after every t.test subtest too.)
  const test = (name, fn) =>
    nodeTest(name, async (t) => {
      await ensureIdle(alice, bob);
      await fn(t);
    });

  before(async () => {
    server = await startServer({ ringTimeoutSecs: 5 });
    console.log(`# server ${server.url}, media UDP ${server.mediaAddr}`);
    alice = await launchParticipant(server, 'Alice');
    bob = await launchParticipant(server, 'Bob');
    // Presence is live: each sees the other.
    await callButton(alice.page, bob, 'video').waitFor({ state: 'visible' });
    await callButton(bob.page, alice, 'voice').waitFor({ state: 'visible' });
  });

  after(async () => {
    await alice?.close();
    await bob?.close();
    await server?.stop();
  });

  test('video call: accept, media flows both ways through the SFU', async (t) => {
    await callButton(alice.page, bob, 'video').click();
    await waitFor(alice.page, () => document.querySelector('[data-testid="call-status"]').textContent === 'Calling…', null, {
      what: 'Alice sees Calling…',
    });
    await bob.page.getByTestId('incoming-call').waitFor({ state: 'visible' });
    assert.equal(await bob.page.getByTestId('incoming-caller').textContent(), 'Alice');
    assert.match(await bob.page.getByTestId('incoming-kind').textContent(), /video/i);
    await bob.page.getByTestId('accept-call').click();

    for (const p of [alice, bob]) {
      await waitFor(p.page, () => window.switchboard.state().call?.phase === 'active', null, { what: `${p.name} active` });
      await p.page.getByTestId('remote-tile').waitFor({ state: 'visible' });
      await p.page.getByTestId('local-video').waitFor({ state: 'visible' });
    }
    // The timer runs.
    await until(async () => (await alice.page.getByTestId('call-timer').textContent()) >= '00:02', {
      what: 'timer reaches 00:02',
    });

    await t.test('audio packets arrive on both sides', async () => {
      await expectGrowing(alice, 'audio', 'packetsReceived', { others: [bob] });
      await expectGrowing(bob, 'audio', 'packetsReceived', { others: [alice] });
    });

    await t.test("media goes via the SFU: selected pairs end at the server's media port", async () => {
      for (const p of [alice, bob]) {
        const s = await p.stats();
        for (const which of ['subscriber', 'publisher']) {
          const pair = s[which] && s[which].selectedPair;
          assert.ok(pair, `${p.name}: ${which} has a selected candidate pair\n${await describe(p)}`);
          assert.equal(pair.remote.port, server.mediaPort, `${p.name}: ${which} remote port is the SFU's`);
        }
      }
      await until(async () => (await alice.page.getByTestId('call-status').textContent()) === 'Connected', {
        what: 'status Connected',
      });
    });

    await t.test('video frames are decoded on both sides', async () => {
      await expectGrowing(alice, 'video', 'framesDecoded', { others: [bob] });
      await expectGrowing(bob, 'video', 'framesDecoded', { others: [alice] });
    });

    await t.test('quality indicators: signal bars with the numbers, for both participants', async () => {
      for (const p of [alice, bob]) {
        for (const testid of ['remote-quality', 'local-quality']) {
          const bars = p.page.getByTestId(testid);
          await bars.waitFor({ state: 'visible', timeout: 15_000 });
          const level = await bars.getAttribute('data-level');
          // Loopback through the SFU is clean.
          assert.ok(['excellent', 'good'].includes(level), `${p.name} ${testid}: ${level}`);
          const title = await bars.getAttribute('title');
          assert.match(title, /loss \d+\.\d %, jitter \d+ ms, round trip \d+ ms, [\d.]+ Mbit\/s \(MOS [1-4]\.\d\)/);
        }
      }
    });

    await alice.page.getByTestId('end-call').click();
    await assertReleased(alice);
    await assertReleased(bob);
  });

  test('reject: the caller is told, both return to idle, ringtone stops', async () => {
    await callButton(alice.page, bob, 'voice').click();
    await bob.page.getByTestId('incoming-call').waitFor({ state: 'visible' });
    // The ringtone is really playing (an oscillator on a running AudioContext).
    await waitFor(bob.page, () => {
      const s = window.switchboard.state();
      return s.ringing && s.ringtoneAudio === 'running';
    }, null, { what: 'ringtone playing' });
    await bob.page.getByTestId('reject-call').click();

    await waitFor(alice.page, () => !window.switchboard.state().call, null, { what: 'Alice idle' });
    await until(async () => /Call rejected by Bob/.test(await noticeText(alice)), { what: 'rejection notice' });
    assert.equal(await bob.page.getByTestId('incoming-call').isVisible(), false);
    assert.equal((await bob.state()).ringing, false, 'ringtone stopped');
    await assertReleased(alice);
  });

  test('end call from the caller: both idle, tracks stopped, connections closed', async () => {
    await placeCall(alice, bob, 'video');
    await alice.page.getByTestId('end-call').click();
    await assertReleased(alice);
    await assertReleased(bob);
    await until(async () => /Alice ended the call/.test(await noticeText(bob)), { what: 'Bob told' });
  });

  test('end call from the callee (voice call shows avatars)', async () => {
    await placeCall(alice, bob, 'voice');
    // Voice: avatars, no camera button, no local video.
    assert.equal(await alice.page.getByTestId('toggle-camera').isVisible(), false);
    assert.equal(await alice.page.getByTestId('local-avatar').isVisible(), true);
    await alice.page.getByTestId('remote-tile').locator('.avatar').waitFor({ state: 'visible' });
    const tracks = await alice.page.evaluate(() => window.switchboard.last().localStream.getTracks().map((t) => t.kind));
    assert.deepEqual(tracks, ['audio'], 'voice call asks for the microphone only');
    await bob.page.getByTestId('end-call').click();
    await assertReleased(bob);
    await assertReleased(alice);
    await until(async () => /Bob ended the call/.test(await noticeText(alice)), { what: 'Alice told' });
  });

  test('mute: the other side sees the indicator and audio stops arriving', async (t) => {
    await placeCall(alice, bob, 'video');
    await t.test('indicator', async () => {
      await bob.page.getByTestId('toggle-mute').click();
      await alice.page.getByTestId('remote-muted-badge').waitFor({ state: 'visible' });
      await bob.page.getByTestId('local-muted-badge').waitFor({ state: 'visible' });
      assert.equal(await bob.page.getByTestId('toggle-mute').getAttribute('aria-pressed'), 'true');
    });
    await t.test('inbound audio packets stop, then resume on unmute', async () => {
      // Unmute first to get audio flowing, then mute and check it stops.
      await bob.page.getByTestId('toggle-mute').click();
      await alice.page.getByTestId('remote-muted-badge').waitFor({ state: 'hidden' });
      await expectGrowing(alice, 'audio', 'packetsReceived', { others: [bob] });
      await bob.page.getByTestId('toggle-mute').click();
      await alice.page.getByTestId('remote-muted-badge').waitFor({ state: 'visible' });
      await expectFlat(alice, 'audio', 'packetsReceived', { others: [bob] });
      await bob.page.getByTestId('toggle-mute').click();
      await expectGrowing(alice, 'audio', 'packetsReceived', { others: [bob] });
    });
  });

  test('camera off: the other side sees the indicator and video frames stop', async (t) => {
    await placeCall(alice, bob, 'video');
    await t.test('indicator', async () => {
      await alice.page.getByTestId('toggle-camera').click();
      await bob.page.getByTestId('remote-camera-off-badge').waitFor({ state: 'visible' });
      await alice.page.getByTestId('local-camera-off-badge').waitFor({ state: 'visible' });
      // The avatar replaces the video on Bob's side.
      await bob.page.getByTestId('remote-tile').locator('.avatar').waitFor({ state: 'visible' });
      await alice.page.getByTestId('toggle-camera').click();
      await bob.page.getByTestId('remote-camera-off-badge').waitFor({ state: 'hidden' });
    });
    await t.test('inbound video frames stop, then resume', async () => {
      await expectGrowing(bob, 'video', 'framesDecoded', { others: [alice] });
      await alice.page.getByTestId('toggle-camera').click();
      await bob.page.getByTestId('remote-camera-off-badge').waitFor({ state: 'visible' });
      await expectFlat(bob, 'video', 'framesDecoded', { others: [alice] });
      await expectGrowing(bob, 'audio', 'packetsReceived', { others: [alice] });
      await alice.page.getByTestId('toggle-camera').click();
      await expectGrowing(bob, 'video', 'framesDecoded', { others: [alice] });
    });
  });

  test('no answer: after the ring timeout both see missed/unanswered', async () => {
    await callButton(bob.page, alice, 'video').click();
    await alice.page.getByTestId('incoming-call').waitFor({ state: 'visible' });
    // Server runs with --ring-timeout-secs 5.
    await waitFor(bob.page, () => !window.switchboard.state().call, null, { timeout: 15_000, what: 'Bob idle' });
    await waitFor(alice.page, () => !window.switchboard.state().call, null, { timeout: 5_000, what: 'Alice idle' });
    assert.match(await noticeText(bob), /no answer|unanswered/i);
    assert.match(await noticeText(alice), /missed/i);
    assert.equal(await alice.page.getByTestId('incoming-call').isVisible(), false);
    assert.equal((await alice.state()).ringing, false, 'ringtone stopped');
    await assertReleased(bob);
  });
});

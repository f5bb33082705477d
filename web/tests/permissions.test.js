// Camera/microphone refused: a clear message, the other side is told, nothing hangs.
import assert from 'node:assert/strict';
import { after, before, describe as suite, test } from 'node:test';
import { callButton, ensureIdle, launchParticipant, startServer, until, waitFor } from './harness.js';

const noticeText = (p) => p.page.getByTestId('notice-text').textContent();

suite('media permission denied', { timeout: 20 * 60_000 }, () => {
  let server;
  let alice; // fake devices, permission granted
  let dan; // every permission prompt denied

  before(async () => {
    server = await startServer();
    alice = await launchParticipant(server, 'Alice');
    dan = await launchParticipant(server, 'Dan', { media: 'denied' });
    await callButton(alice.page, dan, 'video').waitFor({ state: 'visible' });
  });

  after(async () => {
    await alice?.close();
    await dan?.close();
    await server?.stop();
  });

  test('callee cannot get media after accepting: both told, both idle', async () => {
    await ensureIdle(alice, dan);
    await callButton(alice.page, dan, 'video').click();
    await dan.page.getByTestId('incoming-call').waitFor({ state: 'visible' });
    await dan.page.getByTestId('accept-call').click();
    await until(async () => (await noticeText(dan)).includes('Could not access camera/microphone'), {
      what: 'Dan sees the media error',
    });
    await waitFor(dan.page, () => !window.switchboard.state().call, null, { what: 'Dan idle' });
    await until(async () => /Dan could not access their camera\/microphone/.test(await noticeText(alice)), {
      what: 'Alice told why',
    });
    await waitFor(alice.page, () => !window.switchboard.state().call, null, { what: 'Alice idle' });
    const tracks = await alice.page.evaluate(() => window.switchboard.last().localStream.getTracks().map((t) => t.readyState));
    assert.ok(tracks.every((t) => t === 'ended'), `Alice's tracks stopped: ${tracks}`);
  });

  test('caller cannot get media: message shown, nobody is rung', async () => {
    await ensureIdle(alice, dan);
    await callButton(dan.page, alice, 'voice').click();
    await until(async () => (await noticeText(dan)).includes('Could not access camera/microphone'), {
      what: 'Dan sees the media error',
    });
    await waitFor(dan.page, () => !window.switchboard.state().call, null, { what: 'Dan idle' });
    await alice.page.waitForTimeout(500);
    assert.equal(await alice.page.getByTestId('incoming-call').isVisible(), false, 'Alice never rang');
    assert.equal(await dan.page.getByText('Could not access camera/microphone').first().isVisible(), true);
  });
});

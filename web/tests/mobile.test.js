// Phone-sized screen (375x667): lobby, incoming call and active call all fit and are usable.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe as suite, test } from 'node:test';
import { WEB_DIR, callButton, launchParticipant, startServer, waitFor } from './harness.js';

const PHONE = { width: 375, height: 667 };
const OUT = path.join(WEB_DIR, 'test-results');

/** Visible and entirely inside the viewport horizontally (nothing cut off on a phone). */
async function assertOnScreen(page, testId) {
  const loc = page.getByTestId(testId).first();
  await loc.waitFor({ state: 'visible' });
  const box = await loc.boundingBox();
  assert.ok(box, `${testId} has a box`);
  assert.ok(box.x >= 0 && box.x + box.width <= PHONE.width + 0.5, `${testId} fits horizontally: ${JSON.stringify(box)}`);
  assert.ok(box.y >= 0 && box.y + box.height <= PHONE.height + 0.5, `${testId} fits vertically: ${JSON.stringify(box)}`);
  assert.ok(box.width > 0 && box.height > 0, `${testId} not empty`);
}

suite('phone-sized screen', { timeout: 20 * 60_000 }, () => {
  let server;
  let alice;
  let bob;

  before(async () => {
    mkdirSync(OUT, { recursive: true });
    server = await startServer();
    alice = await launchParticipant(server, 'Alice', { viewport: PHONE });
    bob = await launchParticipant(server, 'Bob Builder', { viewport: PHONE });
  });

  after(async () => {
    await alice?.close();
    await bob?.close();
    await server?.stop();
  });

  test('lobby, incoming call and video call fit a 375x667 screen', async () => {
    await callButton(alice.page, bob, 'video').waitFor({ state: 'visible' });
    for (const id of ['lobby-view', 'user', 'voice-call-button', 'video-call-button', 'sign-out']) {
      await assertOnScreen(alice.page, id);
    }
    const noScroll = await alice.page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
    assert.ok(noScroll, 'no horizontal scrolling');
    await alice.page.screenshot({ path: path.join(OUT, 'phone-lobby.png') });

    await callButton(alice.page, bob, 'video').click();
    await bob.page.getByTestId('incoming-call').waitFor({ state: 'visible' });
    for (const id of ['incoming-caller', 'accept-call', 'reject-call']) await assertOnScreen(bob.page, id);
    await bob.page.screenshot({ path: path.join(OUT, 'phone-incoming.png') });

    await bob.page.getByTestId('accept-call').click();
    for (const p of [alice, bob]) {
      await waitFor(p.page, () => window.switchboard.state().call?.phase === 'active', null, { what: `${p.name} active` });
      for (const id of ['call-title', 'call-timer', 'local-tile', 'remote-tile', 'toggle-mute', 'toggle-camera', 'toggle-screen', 'add-participant', 'toggle-recording', 'end-call']) {
        await assertOnScreen(p.page, id);
      }
    }
    await alice.page.waitForTimeout(1500);
    await alice.page.screenshot({ path: path.join(OUT, 'phone-call.png') });
    await alice.page.getByTestId('end-call').click();
    await waitFor(bob.page, () => !window.switchboard.state().call, null, { what: 'Bob idle' });
  });
});

// Sign-in, live presence, session kept across reloads, and calling someone offline or unknown.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe as suite, test } from 'node:test';
import { io } from 'socket.io-client';
import { callButton, launchParticipant, startServer, until, waitFor } from './harness.js';

/** A participant without a browser: the official Socket.IO client from node. */
async function socketUser(server, name) {
  const res = await fetch(`${server.url}/api/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
  });
  assert.equal(res.status, 200);
  const { token, user } = await res.json();
  const socket = io(server.url, { auth: { token }, transports: ['websocket'], reconnection: false });
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  return { ...user, socket };
}

suite('lobby', { timeout: 20 * 60_000 }, () => {
  let server;
  let alice;

  before(async () => {
    server = await startServer();
    alice = await launchParticipant(server, 'Alice');
  });

  after(async () => {
    await alice?.close();
    await server?.stop();
  });

  test('sign-in validates the name', async () => {
    const b = await launchParticipant(server, 'Tmp');
    try {
      await b.page.getByTestId('sign-out').click();
      await b.page.getByTestId('signin-view').waitFor({ state: 'visible' });
      // 41 characters: over the server's limit (the input's maxlength is bypassed on purpose).
      await b.page.getByTestId('name-input').evaluate((el) => {
        el.removeAttribute('maxlength');
        el.value = 'x'.repeat(41);
      });
      await b.page.getByTestId('signin-button').click();
      await b.page.getByTestId('signin-error').waitFor({ state: 'visible' });
      assert.ok((await b.page.getByTestId('signin-error').textContent()).length > 0);
    } finally {
      await b.close();
    }
  });

  test('presence updates live as users come and go', async () => {
    const carol = await socketUser(server, 'Carol');
    await callButton(alice.page, carol, 'voice').waitFor({ state: 'visible' });
    await callButton(alice.page, carol, 'video').waitFor({ state: 'visible' });
    assert.equal(await callButton(alice.page, carol, 'voice').getAttribute('title'), 'Voice call Carol');
    carol.socket.disconnect();
    await callButton(alice.page, carol, 'voice').waitFor({ state: 'detached' });
  });

  test('reload keeps the session (sessionStorage token)', async () => {
    const before = (await alice.state()).me;
    await alice.page.reload();
    await alice.page.getByTestId('lobby-view').waitFor({ state: 'visible' });
    await waitFor(alice.page, () => window.switchboard.state().connected, null, { what: 'reconnected' });
    assert.deepEqual((await alice.state()).me, before);
    assert.equal(await alice.page.getByTestId('me-name').textContent(), 'Alice');
  });

  test('calling a user who went offline: told at once (user_offline)', async () => {
    const dave = await socketUser(server, 'Dave');
    await callButton(alice.page, dave, 'voice').waitFor({ state: 'visible' });
    dave.socket.disconnect();
    await callButton(alice.page, dave, 'voice').waitFor({ state: 'detached' });
    // The list no longer offers Dave, so place the call through the same code path directly.
    await alice.page.evaluate((d) => window.switchboard.startCall({ id: d.id, name: d.name }, 'voice'), {
      id: dave.id,
      name: dave.name,
    });
    await until(async () => /Dave is offline/.test(await alice.page.getByTestId('notice-text').textContent()), {
      timeout: 5000,
      what: 'offline notice',
    });
    await alice.page.getByTestId('toast').first().waitFor({ state: 'visible' });
    await waitFor(alice.page, () => !window.switchboard.state().call, null, { what: 'idle' });
    const tracks = await alice.page.evaluate(() => window.switchboard.last().localStream.getTracks().map((t) => t.readyState));
    assert.deepEqual(tracks, ['ended'], 'microphone released');
  });

  test('calling an unknown user id: told at once', async () => {
    await alice.page.evaluate(
      (id) => window.switchboard.startCall({ id, name: 'Nobody' }, 'video'),
      randomUUID(),
    );
    await until(
      async () => /Nobody (is not a known user|is offline)/.test(await alice.page.getByTestId('notice-text').textContent()),
      { timeout: 5000, what: 'unknown/offline notice' },
    );
    await waitFor(alice.page, () => !window.switchboard.state().call, null, { what: 'idle' });
  });
});

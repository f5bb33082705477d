// Group calls with four real browsers against one real server (protocol.md §7.1): start a call
// with several people, add one more while it runs (a late join), a grid of four whose videos
// really differ, a screen share decoded by the other three, per-tile quality, the active speaker,
// and one participant leaving while the others carry on.
//
// Every participant is its own Chromium process with its own fake camera: a Y4M file of one
// solid colour with a moving white square (written here, removed afterwards), so each remote
// <video> can be told apart by its pixels. Each also gets its own fake microphone, a WAV file
// of a steady tone: Chromium's default fake microphone beeps for a few milliseconds every half
// second, which the SFU's active-speaker detection rightly never takes for speech (it wants
// speech in at least half of the samples, docs/quality.md). getDisplayMedia is real: with
// --use-fake-ui-for-media-stream and the fake devices, headless Chromium picks a fake 1280x720
// "screen" without a prompt (no test hook replaces it).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe as suite, test } from 'node:test';
import { REPO_ROOT, describe, launchParticipant, sleep, startServer, until, waitFor } from './harness.js';

/** The people, the colour of each one's camera and the pitch of their microphone. */
const PEOPLE = [
  { name: 'Alice', rgb: [220, 40, 40], hz: 220 },
  { name: 'Bob', rgb: [40, 180, 60], hz: 330 },
  { name: 'Carol', rgb: [40, 80, 220], hz: 440 },
  { name: 'Dave', rgb: [230, 200, 40], hz: 550 },
];

/** A looping fake microphone: 2 s of a steady sine at −13 dBFS, 48 kHz mono 16-bit WAV. */
function writeWav(file, hz) {
  const rate = 48000;
  const n = rate * 2;
  const data = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) data.writeInt16LE(Math.round(0.3 * 32767 * Math.sin((2 * Math.PI * hz * i) / rate)), i * 2);
  const h = Buffer.alloc(44);
  h.write('RIFF', 0);
  h.writeUInt32LE(36 + data.length, 4);
  h.write('WAVEfmt ', 8);
  h.writeUInt32LE(16, 16); // fmt chunk size
  h.writeUInt16LE(1, 20); // PCM
  h.writeUInt16LE(1, 22); // mono
  h.writeUInt32LE(rate, 24);
  h.writeUInt32LE(rate * 2, 28); // bytes per second
  h.writeUInt16LE(2, 32); // block align
  h.writeUInt16LE(16, 34); // bits per sample
  h.write('data', 36);
  h.writeUInt32LE(data.length, 40);
  writeFileSync(file, Buffer.concat([h, data]));
}

/**
 * A looping fake camera: 320x240 at 15 fps, 2 s, one colour with a 40x40 white square moving
 * along the middle (so the encoder always has something to send). BT.601 limited-range YUV 4:2:0.
 */
function writeY4m(file, [r, g, b]) {
  const W = 320;
  const H = 240;
  const FRAMES = 30;
  const [R, G, B] = [r / 255, g / 255, b / 255];
  const y = Math.round(16 + 65.481 * R + 128.553 * G + 24.966 * B);
  const u = Math.round(128 - 37.797 * R - 74.203 * G + 112.0 * B);
  const v = Math.round(128 + 112.0 * R - 93.786 * G - 18.214 * B);
  const frameSize = W * H * 1.5;
  const header = Buffer.from(`YUV4MPEG2 W${W} H${H} F15:1 Ip A1:1 C420jpeg\n`);
  const marker = Buffer.from('FRAME\n');
  const out = Buffer.alloc(header.length + FRAMES * (marker.length + frameSize));
  header.copy(out, 0);
  let off = header.length;
  for (let f = 0; f < FRAMES; f++) {
    marker.copy(out, off);
    off += marker.length;
    const frame = out.subarray(off, off + frameSize);
    frame.fill(y, 0, W * H);
    frame.fill(u, W * H, W * H * 1.25);
    frame.fill(v, W * H * 1.25);
    const x0 = Math.floor((f / FRAMES) * (W - 40));
    for (let yy = 100; yy < 140; yy++) frame.fill(235, yy * W + x0, yy * W + x0 + 40);
    const cx = Math.floor(x0 / 2);
    for (let yy = 50; yy < 70; yy++) {
      frame.fill(128, W * H + yy * (W / 2) + cx, W * H + yy * (W / 2) + cx + 20);
      frame.fill(128, W * H * 1.25 + yy * (W / 2) + cx, W * H * 1.25 + yy * (W / 2) + cx + 20);
    }
    off += frameSize;
  }
  writeFileSync(file, out);
}

/** Which of PEOPLE's colours is nearest to `rgb`. */
function nearestPerson(rgb) {
  let best = null;
  let bestD = Infinity;
  for (const p of PEOPLE) {
    const d = p.rgb.reduce((acc, c, i) => acc + (c - rgb[i]) ** 2, 0);
    if (d < bestD) [best, bestD] = [p.name, d];
  }
  return best;
}

/** The average colour of the top-left corner of each remote camera tile's <video>, by user id. */
function tileColours(p) {
  return p.page.evaluate(() => {
    const out = {};
    for (const tile of document.querySelectorAll('[data-testid="remote-tile"]')) {
      const v = tile.querySelector('video');
      if (!v.videoWidth) continue;
      const c = document.createElement('canvas');
      c.width = v.videoWidth;
      c.height = v.videoHeight;
      const ctx = c.getContext('2d', { willReadFrequently: true });
      ctx.drawImage(v, 0, 0);
      const d = ctx.getImageData(4, 4, Math.floor(v.videoWidth / 5), Math.floor(v.videoHeight / 6)).data;
      const sum = [0, 0, 0];
      for (let i = 0; i < d.length; i += 4) for (let k = 0; k < 3; k++) sum[k] += d[i + k];
      out[tile.dataset.userId] = sum.map((s) => Math.round(s / (d.length / 4)));
    }
    return out;
  });
}

const remoteMedia = (p) => p.page.evaluate(() => window.switchboard.remoteMedia());

/**
 * Wait until `p` receives what it shows of every user in `userIds` from `source`: for video the
 * inbound stream's framesDecoded grows across two samples, for the microphone packetsReceived.
 * Returns {userId: counter}.
 */
async function expectDecoding(p, userIds, source, { timeout = 30_000, others = [] } = {}) {
  const [kind, field] = source === 'microphone' ? ['audio', 'packetsReceived'] : ['video', 'framesDecoded'];
  const counters = async () => {
    const out = {};
    for (const s of await remoteMedia(p)) {
      if (s.kind === kind && s.shown && s.source === source && userIds.includes(s.userId)) {
        out[s.userId] = Math.max(out[s.userId] || 0, s[field] || 0);
      }
    }
    return out;
  };
  const deadline = Date.now() + timeout;
  let a = await counters();
  for (;;) {
    await sleep(1500);
    const b = await counters();
    if (userIds.every((id) => a[id] > 0 && b[id] > a[id])) return b;
    if (Date.now() > deadline) {
      throw new Error(
        `${p.name}: ${source} ${field} not growing from all of ${userIds} (${JSON.stringify(a)} -> ${JSON.stringify(b)})\n` +
          `${JSON.stringify(await remoteMedia(p))}\n${await describe(p, ...others)}`,
      );
    }
    a = b;
  }
}

const otherIds = (all, p) => all.filter((x) => x !== p).map((x) => x.id);

suite('group calls with four browsers', { timeout: 10 * 60_000 }, () => {
  let server;
  let scratch;
  let all = [];
  let alice;
  let bob;
  let carol;
  let dave;

  before(async () => {
    scratch = mkdtempSync(path.join(os.tmpdir(), 'switchboard-group-test-'));
    server = await startServer({ ringTimeoutSecs: 20 });
    console.log(`# server ${server.url}, media UDP ${server.mediaAddr}`);
    all = await Promise.all(
      PEOPLE.map((person) => {
        const camera = path.join(scratch, `${person.name}.y4m`);
        const mic = path.join(scratch, `${person.name}.wav`);
        writeY4m(camera, person.rgb);
        writeWav(mic, person.hz);
        return launchParticipant(server, person.name, {
          extraArgs: [`--use-file-for-fake-video-capture=${camera}`, `--use-file-for-fake-audio-capture=${mic}`],
        });
      }),
    );
    [alice, bob, carol, dave] = all;
    // Kept for the checks on what the server says when a screen share stops.
    for (const p of all) {
      await p.page.evaluate(() => {
        window.published = [];
        window.unpublished = [];
        const socket = window.switchboard.socket();
        socket.on('track_published', (m) => window.published.push(m));
        socket.on('track_unpublished', (m) => window.unpublished.push(m.track_id));
      });
    }
    for (const p of all) {
      await waitFor(p.page, (n) => window.switchboard.state().users.length === n, all.length, {
        what: `${p.name} sees everyone online`,
      });
    }
  });

  after(async () => {
    await Promise.all(all.map((p) => p.close()));
    await server?.stop();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  test('start with two, add a third: four people, each decodes the other three, all different', async () => {
    // Alice ticks Bob and Carol and starts one video call with both.
    for (const p of [bob, carol]) {
      await alice.page.locator(`[data-testid="user"][data-user-id="${p.id}"] [data-testid="select-user"]`).check();
    }
    await alice.page.getByTestId('group-bar').waitFor({ state: 'visible' });
    assert.match(await alice.page.getByTestId('group-count').textContent(), /^2 selected: Bob and Carol$/);
    await alice.page.getByTestId('group-video-call').click();
    // Both ring at once; Alice sees a "Ringing…" tile for each.
    for (const p of [bob, carol]) {
      await p.page.getByTestId('incoming-call').waitFor({ state: 'visible' });
      assert.equal(await p.page.getByTestId('incoming-caller').textContent(), 'Alice');
    }
    await until(async () => (await alice.page.getByTestId('ringing-tile').count()) === 2, { what: 'two ringing tiles' });
    await bob.page.getByTestId('accept-call').click();
    await carol.page.getByTestId('accept-call').click();
    for (const p of [alice, bob, carol]) {
      await waitFor(p.page, () => window.switchboard.state().call?.phase === 'active', null, { what: `${p.name} active` });
    }

    // Alice is muted when Dave joins: he must see it although she changes nothing after.
    await alice.page.getByTestId('toggle-mute').click();
    await bob.page.locator(`[data-testid="remote-tile"][data-user-id="${alice.id}"] [data-testid="remote-muted-badge"]`).waitFor();

    // Bob adds Dave during the call (any participant may): the panel lists only free people.
    await bob.page.getByTestId('add-participant').click();
    await bob.page.getByTestId('invite-panel').waitFor({ state: 'visible' });
    const listed = await bob.page.getByTestId('invite-user').evaluateAll((els) => els.map((e) => e.dataset.userId));
    assert.deepEqual(listed, [dave.id], 'only Dave is free to be added');
    await bob.page.getByRole('button', { name: 'Add Dave to the call' }).click();
    await dave.page.getByTestId('incoming-call').waitFor({ state: 'visible' });
    assert.equal(await dave.page.getByTestId('incoming-caller').textContent(), 'Bob');
    assert.match(await dave.page.getByTestId('incoming-others').textContent(), /^with Alice and Carol$/);
    for (const p of [alice, carol]) {
      await p.page.locator(`[data-testid="ringing-tile"][data-user-id="${dave.id}"]`).waitFor({ state: 'visible' });
    }
    await bob.page.getByTestId('invite-close').click();
    await dave.page.getByTestId('accept-call').click();
    await waitFor(dave.page, () => window.switchboard.state().call?.phase === 'active', null, { what: 'Dave active' });
    await dave.page.locator(`[data-testid="remote-tile"][data-user-id="${alice.id}"] [data-testid="remote-muted-badge"]`).waitFor();
    await alice.page.getByTestId('toggle-mute').click();
    await dave.page.locator(`[data-testid="remote-tile"][data-user-id="${alice.id}"] [data-testid="remote-muted-badge"]`).waitFor({ state: 'hidden' });

    // Everyone: three remote tiles in a 2x2 grid, no ringing tile left.
    for (const p of all) {
      await until(async () => (await p.page.getByTestId('remote-tile').count()) === 3, {
        what: `${p.name} has three remote tiles`,
        describe: () => describe(p),
      });
      assert.equal(await p.page.getByTestId('ringing-tile').count(), 0);
      const grid = await p.page.getByTestId('tiles').evaluate((el) => ({
        count: el.dataset.count,
        columns: getComputedStyle(el).gridTemplateColumns.split(' ').length,
        rows: getComputedStyle(el).gridTemplateRows.split(' ').length,
      }));
      assert.deepEqual(grid, { count: '4', columns: 2, rows: 2 }, `${p.name}: 2x2 grid`);
      assert.match(await p.page.getByTestId('call-title').textContent(), /^Video call with \w+, \w+ and \w+$/);
    }

    // Each decodes the other three cameras (Dave joined late: he gets what was already there)
    // and hears the other three.
    for (const p of all) await expectDecoding(p, otherIds(all, p), 'camera', { others: all.filter((x) => x !== p) });
    for (const p of all) await expectDecoding(p, otherIds(all, p), 'microphone', { others: all.filter((x) => x !== p) });

    // ... and they are three different pictures: each tile shows its owner's colour.
    for (const p of all) {
      const seen = await until(
        async () => {
          const c = await tileColours(p);
          return Object.keys(c).length === 3 && Object.entries(c).every(([id, rgb]) => all.find((x) => x.id === id).name === nearestPerson(rgb))
            ? c
            : null;
        },
        { timeout: 15_000, what: `${p.name}: every tile shows its owner's colour`, describe: async () => JSON.stringify(await tileColours(p)) },
      );
      assert.equal(new Set(Object.values(seen).map(nearestPerson)).size, 3);
    }

    if (process.env.SAVE_SCREENSHOT === '1') {
      // README's picture: Alice's view of the four-person call, once the quality bars are in.
      const file = path.join(REPO_ROOT, 'docs', 'screenshot-call.png');
      mkdirSync(path.dirname(file), { recursive: true });
      await until(async () => (await alice.page.locator('.quality:not([hidden])').count()) === 4, { what: 'bars on all four tiles' }).catch(() => {});
      await alice.page.screenshot({ path: file });
      console.log(`# wrote ${file}`);
    }

    // On a phone the same four tiles stack 2x2 and stay on screen.
    await carol.page.setViewportSize({ width: 375, height: 667 });
    for (const id of [alice.id, bob.id, dave.id]) {
      const box = await carol.page.locator(`[data-testid="remote-tile"][data-user-id="${id}"]`).boundingBox();
      assert.ok(box && box.x >= 0 && box.x + box.width <= 375.5 && box.y >= 0 && box.y + box.height <= 667.5, JSON.stringify(box));
    }
    for (const id of ['toggle-mute', 'toggle-camera', 'toggle-screen', 'add-participant', 'toggle-recording', 'end-call']) {
      const box = await carol.page.getByTestId(id).boundingBox();
      assert.ok(box && box.x >= 0 && box.x + box.width <= 375.5 && box.y + box.height <= 667.5, `${id} on a phone: ${JSON.stringify(box)}`);
    }
    await carol.page.setViewportSize({ width: 1000, height: 700 });
  });

  test('quality: participant_quality for everyone, numbers in range, bars on every tile', async () => {
    for (const p of all) {
      const q = await waitFor(
        p.page,
        (ids) => {
          const c = window.switchboard.state().call;
          return c && ids.every((id) => c.quality[id]) ? c.quality : null;
        },
        all.map((x) => x.id),
        { timeout: 20_000, what: `${p.name} has a quality report for all four` },
      );
      for (const [id, r] of Object.entries(q)) {
        const who = `${p.name} about ${all.find((x) => x.id === id)?.name}`;
        assert.ok(['excellent', 'good', 'poor', 'lost'].includes(r.level), `${who}: level ${r.level}`);
        assert.ok(r.loss_percent >= 0 && r.loss_percent <= 100, `${who}: loss ${r.loss_percent}`);
        assert.ok(r.jitter_ms >= 0 && Number.isFinite(r.jitter_ms), `${who}: jitter ${r.jitter_ms}`);
        assert.ok(r.rtt_ms >= 0 && Number.isFinite(r.rtt_ms), `${who}: rtt ${r.rtt_ms}`);
        assert.ok(r.bitrate_bps >= 0 && Number.isFinite(r.bitrate_bps), `${who}: bitrate ${r.bitrate_bps}`);
        assert.ok(r.mos >= 1 && r.mos <= 5, `${who}: mos ${r.mos}`);
      }
      // The bars of each tile show that person's latest report (read in one go: reports move).
      const bars = await p.page.evaluate(() => {
        const q = window.switchboard.state().call.quality;
        const out = [];
        for (const tile of document.querySelectorAll('[data-testid="remote-tile"], [data-testid="local-tile"]')) {
          const el = tile.querySelector('.quality');
          const id = tile.dataset.userId || window.switchboard.state().me.id;
          out.push({ id, shown: el.dataset.level, hidden: el.hidden, want: q[id] && q[id].level, title: el.title, loss: q[id] && q[id].loss_percent });
        }
        return out;
      });
      assert.equal(bars.length, 4);
      for (const b of bars) {
        assert.equal(b.hidden, false, `${p.name}: bars visible (${JSON.stringify(b)})`);
        assert.equal(b.shown, b.want, `${p.name}: bars follow the report (${JSON.stringify(b)})`);
        assert.match(b.title, /loss \d+\.\d %, jitter \d+ ms, round trip \d+ ms, [\d.]+ Mbit\/s \(MOS [1-5]\.\d\)/);
        assert.ok(b.title.includes(`loss ${b.loss.toFixed(1)} %`), `${p.name}: tooltip has the loss (${b.title})`);
      }
    }
  });

  test('screen share: the three others decode it in the spotlight; stop from the button and from the browser', async () => {
    await bob.page.getByTestId('toggle-screen').click();
    await bob.page.locator(`[data-testid="screen-tile"][data-user-id="${bob.id}"]`).waitFor({ state: 'visible' });
    assert.equal(await bob.page.getByTestId('toggle-screen').getAttribute('aria-pressed'), 'true');
    const viewers = [alice, carol, dave];
    for (const p of viewers) {
      await p.page.locator(`[data-testid="screen-tile"][data-user-id="${bob.id}"]`).waitFor({ state: 'visible', timeout: 15_000 });
      await p.page.locator(`[data-testid="remote-tile"][data-user-id="${bob.id}"] [data-testid="remote-sharing-badge"]`).waitFor({ state: 'visible' });
      await expectDecoding(p, [bob.id], 'screen', { others: [bob] });
      // The spotlight sits above the grid and is the bigger of the two.
      const [spot, tiles] = await Promise.all([p.page.getByTestId('spotlight').boundingBox(), p.page.getByTestId('tiles').boundingBox()]);
      assert.ok(spot.y < tiles.y && spot.height > tiles.height, `spotlight above and larger: ${JSON.stringify({ spot, tiles })}`);
      const pub = await p.page.evaluate((id) => Object.values(window.switchboard.state().call.published).filter((t) => t.userId === id), bob.id);
      assert.deepEqual([...new Set(pub.map((t) => t.source))].sort(), ['camera', 'microphone', 'screen']);
      // Bob's camera keeps coming too.
      await expectDecoding(p, [bob.id], 'camera', { others: [bob] });
    }
    await waitFor(alice.page, (id) => window.switchboard.state().call.remote[id]?.screen === true, bob.id, { what: 'media_state screen' });

    // Stop from the controls: the spotlight goes away everywhere.
    await bob.page.getByTestId('toggle-screen').click();
    for (const p of all) await p.page.getByTestId('spotlight').waitFor({ state: 'hidden', timeout: 15_000 });
    await waitFor(alice.page, (id) => window.switchboard.state().call.remote[id]?.screen === false, bob.id, { what: 'media_state screen off' });
    assert.equal((await bob.state()).call.screen, false);

    // Share again, then end it the way the browser's own "Stop sharing" bar does: the capture
    // track fires 'ended'.
    await carol.page.getByTestId('toggle-screen').click();
    for (const p of [alice, bob, dave]) {
      await p.page.locator(`[data-testid="screen-tile"][data-user-id="${carol.id}"]`).waitFor({ state: 'visible', timeout: 15_000 });
    }
    await expectDecoding(dave, [carol.id], 'screen', { others: [carol] });
    await carol.page.evaluate(() => {
      const sender = window.switchboard.pcs().publisher.getSenders().find((s) => s.track && s.track.label.startsWith('screen'));
      sender.track.dispatchEvent(new Event('ended'));
    });
    for (const p of all) await p.page.getByTestId('spotlight').waitFor({ state: 'hidden', timeout: 15_000 });
    assert.equal(await carol.page.getByTestId('toggle-screen').getAttribute('aria-pressed'), 'false');
  });

  // A publisher renegotiation (the share starting and stopping) must not leave silent
  // publications behind: they would never be unpublished and would read as "lost" quality.
  test('after a screen share: the others got track_unpublished for it, and nobody reads as lost', async () => {
    for (const p of [alice, dave]) {
      const shares = await p.page.evaluate(() => window.published.filter((m) => m.source === 'screen').map((m) => m.user_id));
      assert.deepEqual(shares.sort(), [bob.id, carol.id].sort(), `${p.name}: one screen publication each from Bob and Carol`);
      await waitFor(
        p.page,
        () => window.published.filter((m) => m.source === 'screen').every((m) => window.unpublished.includes(m.track_id)),
        null,
        { timeout: 5_000, what: `${p.name} got track_unpublished for both shares` },
      );
    }
    await waitFor(alice.page, () => Object.values(window.switchboard.state().call.quality).every((q) => q.level !== 'lost'), null, {
      timeout: 10_000,
      what: 'no quality report reads lost',
    });
  });

  test('active speaker: follows the only unmuted microphone', async () => {
    // The SFU reads RFC 6464 audio levels: it must have negotiated the extension with Chromium.
    for (const p of all) {
      const ext = await p.page.evaluate(() => window.switchboard.pcs().publisher.remoteDescription.sdp.match(/a=extmap:\d+ urn:ietf:params:rtp-hdrext:ssrc-audio-level/));
      assert.ok(ext, `${p.name}: the SFU's answer negotiates ssrc-audio-level`);
    }
    const speakerIs = async (who) => {
      for (const p of all) {
        await waitFor(p.page, (id) => window.switchboard.state().call.speaker === id, who.id, {
          timeout: 15_000,
          what: `${p.name} sees ${who.name} speaking`,
        });
        const tile = p === who ? p.page.getByTestId('local-tile') : p.page.locator(`[data-testid="remote-tile"][data-user-id="${who.id}"]`);
        assert.match(await tile.getAttribute('class'), /\bspeaking\b/, `${p.name}: ${who.name}'s tile highlighted`);
        assert.equal(await p.page.locator('.tile.speaking').count(), 1, `${p.name}: one highlighted tile`);
      }
    };
    const setMuted = async (p, muted) => {
      const btn = p.page.getByTestId('toggle-mute');
      if ((await btn.getAttribute('aria-pressed')) !== String(muted)) await btn.click();
      await until(async () => (await btn.getAttribute('aria-pressed')) === String(muted), { what: `${p.name} muted=${muted}` });
    };
    // Only Carol talks.
    for (const p of [alice, bob, dave]) await setMuted(p, true);
    await setMuted(carol, false);
    await speakerIs(carol);
    // Now only Dave.
    await setMuted(dave, false);
    await setMuted(carol, true);
    await speakerIs(dave);
    for (const p of all) await setMuted(p, false);
  });

  test('one leaves: the others keep decoding each other, the tile disappears; the last but one ends it', async () => {
    await dave.page.getByTestId('end-call').click();
    await waitFor(dave.page, () => !window.switchboard.state().call, null, { what: 'Dave idle' });
    await dave.page.getByTestId('lobby-view').waitFor({ state: 'visible' });
    const daveTracks = await dave.page.evaluate(() => window.switchboard.last().localStream.getTracks().map((t) => t.readyState));
    assert.ok(daveTracks.every((s) => s === 'ended'), `Dave's camera and microphone stopped: ${daveTracks}`);
    const rest = [alice, bob, carol];
    for (const p of rest) {
      await p.page.locator(`[data-testid="remote-tile"][data-user-id="${dave.id}"]`).waitFor({ state: 'detached', timeout: 15_000 });
      assert.equal(await p.page.getByTestId('remote-tile').count(), 2);
      assert.equal((await p.state()).call.phase, 'active');
      await until(async () => (await p.page.getByTestId('toast').allTextContents()).some((t) => t === 'Dave left the call.'), {
        what: `${p.name} told Dave left`,
      });
    }
    for (const p of rest) {
      await expectDecoding(p, otherIds(rest, p), 'camera', { others: rest.filter((x) => x !== p) });
      const grid = await p.page.getByTestId('tiles').evaluate((el) => el.dataset.count);
      assert.equal(grid, '3');
    }

    // Alice leaves too: Bob and Carol go on. Then Bob leaves: fewer than two, Carol's call ends.
    await alice.page.getByTestId('end-call').click();
    await waitFor(alice.page, () => !window.switchboard.state().call, null, { what: 'Alice idle' });
    for (const p of [bob, carol]) {
      await p.page.locator(`[data-testid="remote-tile"][data-user-id="${alice.id}"]`).waitFor({ state: 'detached', timeout: 15_000 });
    }
    await expectDecoding(carol, [bob.id], 'camera', { others: [bob] });
    await bob.page.getByTestId('end-call').click();
    for (const p of [bob, carol]) await waitFor(p.page, () => !window.switchboard.state().call, null, { what: `${p.name} idle` });
    for (const p of all) {
      await waitFor(p.page, () => window.switchboard.state().users.every((u) => !u.busy), null, { what: `${p.name} sees everyone free` });
    }
  });

  test('voice call of three: avatars per person, a screen share still shows as video', async () => {
    // Dave ticks three people for a voice call; only Alice and Bob pick up (Carol declines).
    for (const p of [alice, bob, carol]) {
      await dave.page.locator(`[data-testid="user"][data-user-id="${p.id}"] [data-testid="select-user"]`).check();
    }
    await dave.page.getByTestId('group-voice-call').click();
    for (const p of [alice, bob, carol]) await p.page.getByTestId('incoming-call').waitFor({ state: 'visible' });
    assert.match(await alice.page.getByTestId('incoming-kind').textContent(), /voice/i);
    await carol.page.getByTestId('reject-call').click();
    await until(async () => (await dave.page.getByTestId('toast').allTextContents()).includes('Carol declined.'), { what: 'Dave told Carol declined' });
    await alice.page.getByTestId('accept-call').click();
    await bob.page.getByTestId('accept-call').click();
    const three = [alice, bob, dave];
    for (const p of three) {
      await waitFor(p.page, () => window.switchboard.state().call?.phase === 'active', null, { what: `${p.name} active` });
      await until(async () => (await p.page.getByTestId('remote-tile').count()) === 2, { what: `${p.name}: two remote tiles` });
      assert.equal(await p.page.getByTestId('ringing-tile').count(), 0, `${p.name}: Carol's ringing tile gone`);
      for (const tile of await p.page.getByTestId('remote-tile').all()) {
        assert.equal(await tile.locator('.avatar').isVisible(), true, `${p.name}: avatar on every tile`);
      }
      assert.equal(await p.page.getByTestId('toggle-camera').isVisible(), false);
    }
    for (const p of three) await expectDecoding(p, otherIds(three, p), 'microphone', { others: three.filter((x) => x !== p) });
    // Alice shares her screen: her publisher gains its first video section.
    await alice.page.getByTestId('toggle-screen').click();
    for (const p of [bob, dave]) {
      const video = p.page.locator(`[data-testid="screen-tile"][data-user-id="${alice.id}"] video`);
      await video.waitFor({ state: 'visible', timeout: 15_000 });
      await expectDecoding(p, [alice.id], 'screen', { others: [alice] });
      await until(() => video.evaluate((v) => v.videoWidth > 0), { what: `${p.name} shows Alice's screen` });
    }
    await alice.page.getByTestId('toggle-screen').click();
    for (const p of [bob, dave]) await p.page.getByTestId('spotlight').waitFor({ state: 'hidden', timeout: 15_000 });
    // Alice leaves, then Bob: Dave is left alone and his call ends.
    for (const p of [alice, bob]) {
      await p.page.getByTestId('end-call').click();
      await waitFor(p.page, () => !window.switchboard.state().call, null, { what: `${p.name} idle` });
    }
    for (const p of all) {
      await waitFor(p.page, () => !window.switchboard.state().call && window.switchboard.state().users.every((u) => !u.busy), null, {
        what: `${p.name} idle, everyone free`,
      });
    }
  });
});

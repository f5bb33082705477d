// Recording (docs/protocol.md §8): the Record button asks the server; the REC indicator follows
// only the server's recording_started / recording_stopped, so every participant sees the same.

import { ICONS } from './icons.js';
import { scheduleHistoryRefresh } from './recent-calls.js';
import { currentCall, render, state } from './state.js';
import { $, paintToggle, toast } from './ui.js';

const RECORDING_ERRORS = {
  missing_grant: 'You are not allowed to record calls.',
  already_recording: 'This call is already being recorded.',
  not_recording: 'This call is not being recorded.',
  invalid_state: 'The call can only be recorded once it is connected.',
  internal: 'The server cannot record right now.',
  expired_token: 'Your session has expired: recording cannot start.',
};

const RECORDING_STOPPED = {
  requested: 'Recording stopped.',
  call_ended: 'Recording stopped: the call ended.',
  disk_full: 'Recording stopped: server disk is full',
  shutdown: 'Recording stopped: the server is shutting down.',
};

// What the Record button shows when not recording (off) and recording (on).
const RECORD = {
  off: { label: 'Record call', icon: ICONS.record, text: 'Record' },
  on: { label: 'Stop recording', icon: ICONS.stop, text: 'Stop recording' },
};

export async function toggleRecording() {
  const call = state.call;
  if (!call || call.phase !== 'active' || !call.id || call.recordingBusy) return;
  const event = call.recording ? 'stop_recording' : 'start_recording';
  call.recordingBusy = true;
  render();
  try {
    await state.signaling.request(event, { call_id: call.id });
    // The indicator changes on recording_started / recording_stopped, which follow the ack.
  } catch (e) {
    if (state.call === call) toast(`${RECORDING_ERRORS[e.code] || e.message} (${e.code})`);
  } finally {
    call.recordingBusy = false;
    if (state.call === call) render();
  }
}

/** The REC indicator and the Record / Stop recording button. */
export function renderRecording(c) {
  const rec = $('rec-indicator');
  rec.hidden = !c.recording;
  $('rec-by').textContent = c.recording ? `Recording started by ${c.recording.by.name}` : '';
  const recBtn = $('toggle-recording');
  const recording = !!c.recording;
  paintToggle(recBtn, recording, RECORD);
  recBtn.disabled = c.phase !== 'active' || !c.accepted || !!c.recordingBusy;
}

export function wireRecordingEvents(sig) {
  sig.on('recording_started', (msg) => {
    const c = currentCall(msg && msg.call_id);
    if (!c) return;
    c.recording = { by: (msg.by && msg.by.name ? msg.by : { id: null, name: 'someone' }) };
    render();
  });
  sig.on('recording_stopped', (msg) => {
    const c = currentCall(msg && msg.call_id);
    if (!c || !c.recording) return;
    c.recording = null;
    render();
    // call_ended follows a call_ended stop at once: the end banner says enough.
    if (msg.reason !== 'call_ended') {
      toast(RECORDING_STOPPED[msg.reason] || `Recording stopped (${msg.reason}).`, msg.reason === 'requested' ? 'info' : 'error');
    }
    scheduleHistoryRefresh();
  });
}

// Server-Sent Events over fetch(): EventSource cannot send an Authorization header,
// so this reads the text/event-stream body itself, parses it (the WHATWG format:
// id, event, data, retry, comments), and reconnects with Last-Event-ID on a drop.

import { apiUrl, auth, problemOf, unauthorized } from './api.js';

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

/**
 * Open a stream. `onEvent({id, type, data})` gets each event (data parsed as JSON when
 * it is JSON); `onState(state, detail)` hears 'open', 'reconnecting' and 'gone' (404,
 * 410); `done(event)` returning true ends the stream for good (a job's `completed`);
 * `shouldReconnect()` (async) may decline to reconnect after the server closed.
 * Returns `{close()}`.
 */
export function openStream(path, { onEvent, onState = () => {}, lastEventId = null,
  done = () => false, shouldReconnect = async () => true } = {}) {
  const controller = new AbortController();
  const { signal } = controller;
  let retry = 2000;
  let failures = 0;

  const dispatch = (ev) => {
    let data = ev.data;
    try { data = JSON.parse(data); } catch { /* plain text */ }
    const event = { id: ev.id, type: ev.type || 'message', data };
    onEvent(event);
    return done(event);
  };

  async function connect() {
    const headers = { Accept: 'text/event-stream', Authorization: `Bearer ${auth.get()}` };
    if (lastEventId !== null) headers['Last-Event-ID'] = String(lastEventId);
    const res = await fetch(apiUrl(path), { headers, signal, cache: 'no-store' });
    if (res.status === 401) { unauthorized(); return 'stop'; }
    if (res.status === 404 || res.status === 410) {
      onState('gone', await problemOf(res));
      return 'stop';
    }
    if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let ev = { id: null, type: '', data: [] };
    let opened = false;
    for (;;) {
      const { value, done: ended } = await reader.read();
      if (ended) return 'closed';
      if (!opened) { // after the first bytes: the server has fixed its resume point
        opened = true;
        onState('open');
      }
      buf += value;
      const lines = buf.split(/\r?\n/);
      buf = lines.pop(); // an unfinished line waits for the next chunk
      for (const line of lines) {
        if (line === '') { // a blank line ends an event
          if (ev.data.length) {
            failures = 0;
            if (dispatch({ id: lastEventId, type: ev.type, data: ev.data.join('\n') })) {
              reader.cancel().catch(() => {});
              return 'stop';
            }
          }
          ev = { id: null, type: '', data: [] };
          continue;
        }
        if (line.startsWith(':')) continue; // comment (keep-alive)
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? '' : line.slice(colon + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'data') ev.data.push(val);
        else if (field === 'event') ev.type = val;
        else if (field === 'id' && !val.includes('\0')) lastEventId = val;
        else if (field === 'retry' && /^\d+$/.test(val)) retry = Number(val);
      }
    }
  }

  (async () => {
    while (!signal.aborted) {
      let outcome;
      try {
        outcome = await connect();
      } catch (err) {
        if (signal.aborted) return;
        outcome = 'error';
      }
      if (outcome === 'stop' || signal.aborted) return;
      if (outcome === 'closed' && !(await shouldReconnect())) return;
      onState('reconnecting');
      await sleep(Math.min(30000, retry * 2 ** Math.min(failures, 4)), signal);
      failures++;
    }
  })();

  return { close: () => controller.abort() };
}

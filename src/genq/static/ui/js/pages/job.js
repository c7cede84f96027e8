// One job: live status and progress, errors in plain words, output previews (image
// grid with zoom, video player, 3D viewer), downloads, the input, and the timeline
// replayed from GET /v1/jobs/{id}/events?after=0.

import { api } from '../api.js';
import { h, notice, replace } from '../dom.js';
import {
  age, clock, credits, dateTime, duration, ERROR_TEXT, isActive, summary, bytes,
} from '../format.js';
import { downloads, previews } from '../outputs.js';
import { openStream } from '../sse.js';
import { liveIndicator, progressBar, spinner, statusBadge } from '../widgets.js';

export function render(main, id) {
  let job = null;
  let stream = null;
  let outputsKey = null;
  let lastTimeline = null;
  let provider; // undefined: not looked up yet; null: a local engine

  const title = h('h1', { tabindex: -1 }, 'Job');
  const sub = h('p', { class: 'sub' }, h('span', { class: 'mono' }, id));
  const badge = h('span', { class: 'badge-slot' });
  const live = liveIndicator();
  const actions = h('div', { class: 'actions' });
  const messages = h('div', { class: 'messages' });
  const errorBox = h('div');
  const bar = progressBar({ status: 'queued', progress: 0 });
  const previewBox = h('div', { class: 'previews' });
  const downloadBox = h('div');
  const timeline = h('ol', { class: 'timeline', 'aria-live': 'polite' });
  const details = h('dl', { class: 'details' });
  const inputBox = h('div');
  const raw = h('pre', { class: 'raw' });

  replace(main,
    h('div', { class: 'page-head' }, h('a', { href: '#/jobs', class: 'back' }, '← Jobs')),
    h('div', { class: 'job-head' },
      h('div', { class: 'job-title' }, title, sub),
      h('div', { class: 'job-status' }, badge, live, actions)),
    messages, bar, errorBox,
    h('div', { class: 'job-body' },
      h('div', { class: 'job-main' },
        h('section', { 'aria-labelledby': 'h-outputs' },
          h('h2', { id: 'h-outputs' }, 'Outputs'), previewBox, downloadBox),
        h('section', { 'aria-labelledby': 'h-timeline' },
          h('h2', { id: 'h-timeline' }, 'Timeline'), timeline)),
      h('aside', { class: 'job-side' },
        h('section', { 'aria-labelledby': 'h-input' }, h('h2', { id: 'h-input' }, 'Input'),
          inputBox),
        h('section', { 'aria-labelledby': 'h-details' },
          h('h2', { id: 'h-details' }, 'Details'), details),
        h('details', {}, h('summary', {}, 'Raw JSON'), raw))));
  replace(previewBox, spinner());

  function show() {
    title.textContent = summary(job);
    replace(sub, h('span', { class: 'mono' }, job.id), ' · ', job.engine, ' · ',
      h('time', { datetime: job.created_at, title: job.created_at }, age(job.created_at)));
    replace(badge, statusBadge(job.status));
    live.hidden = !isActive(job);
    bar.update(job);
    bar.hidden = !isActive(job) && job.status !== 'succeeded';
    replace(actions,
      isActive(job) ? h('button', { type: 'button', class: 'danger', onclick: cancel },
        'Cancel job') : null,
      h('a', { class: 'button', href: `#/new?engine=${encodeURIComponent(job.engine)}&from=${job.id}` },
        'Run again'));
    replace(errorBox, job.error ? notice('error',
      h('strong', {}, ERROR_TEXT[job.error.code] || 'The job failed.'),
      job.error.message ? h('p', {}, job.error.message) : null,
      h('p', { class: 'help' }, `Error code: ${job.error.code}.`,
        job.error.retryable ? ' This may work if you try again.' : '')) : null);
    const key = JSON.stringify((job.outputs || []).map((o) => o.url));
    if (key !== outputsKey) { // keep players and viewers alive across progress updates
      outputsKey = key;
      replace(previewBox, previews(job));
      replace(downloadBox, downloads(job));
    }
    if (!job.outputs?.length) {
      replace(previewBox, h('p', { class: 'empty' },
        isActive(job) ? 'Outputs appear here as the job makes them.' : 'This job has no outputs.'));
    }
    replace(inputBox, inputList(job.input || {}));
    showDetails();
    raw.textContent = JSON.stringify(job, null, 2);
    document.title = `${job.status} · ${summary(job)} · genq`;
  }

  function showDetails() {
    if (provider === undefined) {
      provider = null;
      // an upstream engine's provider (GET /v1/engines/{name} names it, never its key)
      api(`v1/engines/${encodeURIComponent(job.engine)}`).then((engine) => {
        provider = engine.upstream || null;
        if (provider) showDetails();
      }).catch(() => {});
    }
    const rows = [
      ['Engine', job.engine],
      ['Runs at', provider && `${provider.provider} (${provider.base_url})`],
      ['Task', job.task], ['Created', dateTime(job.created_at)],
      ['Started', dateTime(job.started_at)], ['Completed', dateTime(job.completed_at)],
      ['Took', duration(job.processing_time_s)], ['Credits', credits(job)],
      ['Expires', dateTime(job.expires_at)],
      ['Parent', job.parent_id && h('a', { href: `#/jobs/${job.parent_id}` }, job.parent_id)],
      ['Model', job.model_id],
      ['Metadata', Object.keys(job.metadata || {}).length ? valueList(job.metadata, 'metadata')
        : null],
    ];
    replace(details, rows.filter(([, v]) => v).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  }

  async function cancel(e) {
    e.currentTarget.disabled = true;
    try {
      const body = await api(`v1/jobs/${id}/cancel`, { method: 'POST' });
      delete body.cancel;
      job = body;
      show();
    } catch (err) {
      replace(messages, notice('error', `Could not cancel: ${err.message}`));
      e.currentTarget.disabled = false;
    }
  }

  let fetching = false;
  let again = false;
  async function refresh() {
    if (fetching) { again = true; return; }
    fetching = true;
    try {
      do {
        again = false;
        const next = await api(`v1/jobs/${id}`);
        // a read that left before a newer state arrived (say, `completed`) is dropped
        if (!job || (next.seq ?? 0) >= (job.seq ?? 0)) { job = next; show(); }
      } while (again);
    } catch { /* the stream will tell */ } finally { fetching = false; }
  }

  function addTimeline(ev) {
    const { type, data } = ev;
    const at = type === 'completed' ? data.completed_at || data.created_at : data.created_at;
    let text;
    if (type === 'status') {
      text = `Status: ${data.status}${data.cancel_requested ? ' (cancel requested)' : ''}`;
    } else if (type === 'progress') {
      const pct = `${Math.round(data.progress)}%`;
      if (lastTimeline?.type === 'progress') { // fold runs of progress into one line
        lastTimeline.count++;
        lastTimeline.text.textContent = `Progress ${lastTimeline.first} → ${pct}` +
          `${data.message ? ` · ${data.message}` : ''} (${lastTimeline.count} updates)`;
        lastTimeline.time.textContent = clock(at);
        return;
      }
      text = `Progress ${pct}${data.message ? ` · ${data.message}` : ''}`;
    } else if (type === 'output') {
      text = `Output ${data.name} (${[data.kind, data.content_type, bytes(data.bytes)]
        .filter(Boolean).join(', ')})`;
    } else if (type === 'log') {
      text = `${data.level ? `[${data.level}] ` : ''}${data.message ?? ''}`;
    } else if (type === 'completed') {
      text = `Completed: ${data.status}${data.error ? ` (${data.error.code})` : ''}` +
        `${data.processing_time_s !== null && data.processing_time_s !== undefined
          ? ` in ${duration(data.processing_time_s)}` : ''}`;
    } else {
      text = `${type}`;
    }
    const time = h('time', { datetime: at || '' }, clock(at));
    const textEl = h('span', { class: 'what' }, text);
    const status = type === 'completed' || type === 'status' ? data.status : '';
    timeline.append(h('li', { class: `ev ev-${type}`, dataset: { type, status } },
      time, h('span', { class: 'type' }, type), textEl));
    lastTimeline = { type, count: 1, first: type === 'progress' ? `${Math.round(data.progress)}%`
      : '', text: textEl, time };
  }

  function onEvent(ev) {
    if (!ev.data || typeof ev.data !== 'object') return;
    addTimeline(ev);
    if (ev.type === 'completed') { job = ev.data; show(); return; }
    if (!job || !isActive(job)) return; // replaying a finished job: the timeline only
    // The replay (after=0) also brings events older than the job we loaded: progress
    // only moves forward here, and a status change or an output is read afresh.
    const d = ev.data;
    if (ev.type === 'progress' && d.progress >= job.progress) {
      job = { ...job, progress: d.progress, message: d.message ?? null };
      bar.update(job);
    } else if (ev.type === 'status' || ev.type === 'output') {
      refresh();
    }
  }

  api(`v1/jobs/${id}`).then((j) => {
    job = j;
    show();
    stream = openStream(`v1/jobs/${id}/events?after=0`, {
      onEvent,
      onState: (s, problem) => {
        live.set(s);
        if (s === 'gone') replace(messages, notice('error', problem?.detail || 'Job gone.'));
      },
      done: (ev) => ev.type === 'completed',
      shouldReconnect: async () => { await refresh(); return job && isActive(job); },
    });
  }).catch((err) => {
    title.textContent = err.status === 404 ? 'Job not found' : 'Job';
    replace(previewBox);
    replace(messages, notice('error', err.status === 404 ? `There is no job ${id} in this account.`
      : err.status === 410 ? `Job ${id} has expired; its outputs were deleted.`
        : `Could not load the job: ${err.message}`));
  });

  const ticker = setInterval(() => { if (job && isActive(job)) bar.update(job); }, 1000);
  return () => { stream?.close(); clearInterval(ticker); };
}

function inputList(input) {
  if (!Object.keys(input).length) return h('p', { class: 'empty' }, 'No input.');
  return valueList(input, 'input');
}

/** An object as a key/value list: strings as they are, anything else as compact JSON. */
function valueList(values, kind) {
  return h('dl', { class: `details ${kind}` }, Object.entries(values).map(([k, v]) => [
    h('dt', {}, k),
    h('dd', { class: typeof v === 'object' && v !== null ? 'mono' : 'text' },
      typeof v === 'string' ? v : JSON.stringify(v)),
  ]));
}

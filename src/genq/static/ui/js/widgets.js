// Small pieces shared by the pages: status badges, progress bars, the live indicator.

import { h, replace } from './dom.js';
import { duration, eta, isActive } from './format.js';

export function statusBadge(status) {
  return h('span', { class: `badge status-${status}`, dataset: { status } }, status);
}

/** A progress bar with its message and ETA; `update(job)` refreshes it in place. */
export function progressBar(job) {
  const fill = h('span', { class: 'fill' });
  const bar = h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0,
    'aria-valuemax': 100, 'aria-label': 'Progress' }, fill);
  const text = h('span', { class: 'progress-text' });
  const el = h('div', { class: 'progress' }, bar, text);
  el.update = (j) => {
    const done = j.status === 'succeeded';
    const pct = done ? 100 : Math.max(0, Math.min(100, Number(j.progress) || 0));
    bar.setAttribute('aria-valuenow', String(Math.round(pct)));
    bar.setAttribute('aria-valuetext', `${Math.round(pct)}%`);
    bar.dataset.status = j.status;
    fill.style.width = `${pct}%`;
    const parts = [];
    if (isActive(j)) {
      parts.push(`${Math.round(pct)}%`);
      if (j.message) parts.push(j.message);
      else if (j.status === 'queued' && j.queue_position !== null && j.queue_position !== undefined) {
        parts.push(`position ${j.queue_position + 1} in queue`);
      }
      const left = eta(j);
      if (left !== null) parts.push(`ETA ${duration(left)}`);
    } else if (j.processing_time_s !== null && j.processing_time_s !== undefined) {
      parts.push(`took ${duration(j.processing_time_s)}`);
    }
    replace(text, parts.join(' · '));
  };
  el.update(job);
  return el;
}

export function liveIndicator() {
  const el = h('span', { class: 'live', role: 'status', dataset: { state: 'connecting' } },
    'connecting…');
  el.set = (state) => {
    el.dataset.state = state;
    el.textContent = { open: 'live', reconnecting: 'reconnecting…', gone: 'offline' }[state]
      || state;
  };
  return el;
}

export function spinner(label = 'Loading…') {
  return h('p', { class: 'loading', role: 'status' }, label);
}

// The jobs list: newest first, filters, cursor paging, live from the account's event
// stream (GET /v1/events), cancel from the row.

import { api, fileUrl, qs } from '../api.js';
import { h, notice, replace } from '../dom.js';
import { age, credits, isActive, summary, TERMINAL } from '../format.js';
import { openStream } from '../sse.js';
import { liveIndicator, progressBar, statusBadge } from '../widgets.js';

const STATUS_FILTERS = [
  ['', 'All statuses'], ['queued,starting,running', 'Active'],
  ...['queued', 'starting', 'running', ...TERMINAL].map((s) => [s, s[0].toUpperCase() + s.slice(1)]),
];

export function render(main, query) {
  const filters = { status: query.get('status') || '', engine: query.get('engine') || '' };
  const rows = new Map(); // job id -> {job, tr, update}
  let cursor = null;
  let stream = null;

  const live = liveIndicator();
  const messages = h('div', { class: 'messages' });
  const tbody = h('tbody');
  const empty = h('p', { class: 'empty', hidden: true }, 'No jobs here yet. ',
    h('a', { href: '#/new' }, 'Start one.'));
  const more = h('button', { type: 'button', hidden: true, onclick: () => load(cursor) },
    'Load more');
  const statusSelect = h('select', { id: 'filter-status', onchange: changed },
    STATUS_FILTERS.map(([v, label]) => h('option', { value: v, selected: v === filters.status },
      label)));
  const engineSelect = h('select', { id: 'filter-engine', onchange: changed },
    h('option', { value: '' }, 'All engines'));
  if (filters.engine) engineSelect.append(h('option', { value: filters.engine, selected: true },
    filters.engine));

  replace(main,
    h('div', { class: 'page-head' },
      h('h1', { tabindex: -1 }, 'Jobs'), live,
      h('a', { href: '#/new', class: 'button primary' }, 'New job')),
    h('form', { class: 'filters', onsubmit: (e) => e.preventDefault() },
      h('span', {}, h('label', { for: 'filter-status' }, 'Status'), statusSelect),
      h('span', {}, h('label', { for: 'filter-engine' }, 'Engine'), engineSelect)),
    messages,
    h('table', { class: 'jobs' },
      h('thead', {}, h('tr', {}, ['Job', 'Engine', 'Status', 'Progress', 'Created', 'Credits', '']
        .map((t) => h('th', { scope: 'col' }, t)))),
      tbody),
    empty, more);

  api('v1/engines').then(({ data }) => {
    for (const e of data) {
      if (e.name !== filters.engine) engineSelect.append(h('option', { value: e.name }, e.name));
    }
  }).catch(() => {});

  function changed() {
    filters.status = statusSelect.value;
    filters.engine = engineSelect.value;
    history.replaceState(null, '', `#/jobs${qs(filters)}`);
    generation++;
    rows.clear();
    cursor = null;
    tbody.replaceChildren();
    load(null);
  }

  const matches = (job) => (!filters.engine || job.engine === filters.engine) &&
    (!filters.status || filters.status.split(',').includes(job.status));

  let loaded = false;
  const early = [];
  let generation = 0; // a filter change makes answers to older requests moot

  async function load(after) {
    const gen = generation;
    more.disabled = true;
    try {
      const page = await api(`v1/jobs${qs({ ...filters, after, limit: 25 })}`);
      if (gen !== generation) return;
      for (const job of page.data) if (!rows.has(job.id)) place(job, false);
      cursor = page.next_cursor;
      more.hidden = !page.has_more;
      replace(messages);
    } catch (err) {
      replace(messages, notice('error', `Could not load the jobs: ${err.message}`));
    } finally {
      more.disabled = false;
      empty.hidden = rows.size > 0;
      if (!loaded) {
        loaded = true;
        early.splice(0).forEach(onEvent);
      }
    }
  }

  function place(job, sorted) {
    const key = job.created_at + job.id; // newest first by (created_at, id)
    const before = sorted ? [...tbody.children].find((tr) => tr.dataset.sort < key) : null;
    if (sorted && !before && cursor) return; // older than the loaded pages: not shown yet
    const row = makeRow(job);
    row.tr.dataset.sort = key;
    rows.set(job.id, row);
    tbody.insertBefore(row.tr, before);
    empty.hidden = true;
  }

  function makeRow(job) {
    const row = { job };
    const badgeCell = h('td', { 'data-label': 'Status' });
    const bar = progressBar(job);
    const ageCell = h('td', { 'data-label': 'Created', class: 'age' });
    const creditsCell = h('td', { 'data-label': 'Credits', class: 'num' });
    const actions = h('td', { class: 'actions' });
    const thumb = h('span', { class: 'thumb-slot' });
    row.tr = h('tr', { dataset: { job: job.id } },
      // the flex layout goes on a div: a td that is not display: table-cell leaves its
      // column, and the row's border, short
      h('td', { 'data-label': 'Job', class: 'job' }, h('div', { class: 'job-cell' }, thumb,
        h('span', {}, h('a', { href: `#/jobs/${job.id}` }, summary(job)),
          h('small', { class: 'mono' }, job.id)))),
      h('td', { 'data-label': 'Engine' }, job.engine),
      badgeCell,
      h('td', { 'data-label': 'Progress' }, bar),
      ageCell, creditsCell, actions);
    row.update = () => {
      const j = row.job;
      replace(badgeCell, statusBadge(j.status));
      bar.update(j);
      ageCell.textContent = age(j.created_at);
      ageCell.title = j.created_at;
      creditsCell.textContent = credits(j);
      const preview = (j.outputs || []).find((o) => o.kind === 'image' || o.kind === 'thumbnail');
      if (preview && !thumb.firstChild) {
        thumb.append(h('img', { src: fileUrl(preview.url), alt: '', loading: 'lazy' }));
      }
      if (isActive(j) && !actions.firstChild) {
        actions.append(h('button', { type: 'button', class: 'danger small',
          'aria-label': `Cancel job ${j.id}`, onclick: (e) => cancel(row, e.currentTarget) },
        'Cancel'));
      } else if (!isActive(j)) {
        actions.replaceChildren();
      }
    };
    row.update();
    return row;
  }

  async function cancel(row, button) {
    button.disabled = true;
    button.textContent = 'Canceling…';
    try {
      const job = await api(`v1/jobs/${row.job.id}/cancel`, { method: 'POST' });
      delete job.cancel;
      row.job = { ...row.job, ...job };
      row.update();
    } catch (err) {
      button.disabled = false;
      button.textContent = 'Cancel';
      replace(messages, notice('error', `Could not cancel ${row.job.id}: ${err.message}`));
    }
  }

  // One job's fresh body (after a status change or an output); deduplicated per job.
  // A change that arrives while a read is in flight asks for one more read after it,
  // so a body read just before the change never stays on screen.
  const fetching = new Set();
  const again = new Set();
  async function refresh(id, insert) {
    if (fetching.has(id)) { again.add(id); return; }
    fetching.add(id);
    try {
      const job = await api(`v1/jobs/${id}`);
      const row = rows.get(id);
      if (row) {
        if ((job.seq ?? 0) >= (row.job.seq ?? 0)) { row.job = job; row.update(); }
      } else if (insert && matches(job)) place(job, true);
    } catch { /* expired or gone: leave the row as it was */ } finally {
      fetching.delete(id);
      if (again.delete(id)) refresh(id, insert);
    }
  }

  function onEvent(event) {
    if (!loaded) { early.push(event); return; } // applied once the first page is in
    const { type, data } = event;
    if (!data || typeof data !== 'object') return;
    if (type === 'completed') { // the whole job
      const row = rows.get(data.id);
      if (row) { row.job = data; row.update(); } else if (matches(data)) place(data, true);
      return;
    }
    const row = rows.get(data.job_id);
    if (!row) {
      if (type === 'status' && data.status === 'queued') refresh(data.job_id, true);
      else if (fetching.has(data.job_id)) again.add(data.job_id); // its row is on its way
      return;
    }
    if (type === 'progress') {
      row.job = { ...row.job, progress: data.progress, message: data.message ?? null };
      if (data.status) row.job.status = data.status;
      row.update();
    } else if (type === 'status' || type === 'output') {
      if (data.status) row.job = { ...row.job, status: data.status };
      row.update();
      refresh(data.job_id, false); // started_at, eta_s, outputs
    }
  }

  // Start the stream first: it begins "from now", so nothing between the list read
  // and the stream is lost (events for jobs already listed apply harmlessly).
  // After a drop the stream resumes from Last-Event-ID; if it had seen no event yet it
  // can only start from "now", so read the newest page and the running jobs again.
  async function catchUp() {
    for (const r of rows.values()) if (isActive(r.job)) refresh(r.job.id, false);
    try {
      const page = await api(`v1/jobs${qs({ ...filters, limit: 25 })}`);
      for (const job of page.data) {
        const row = rows.get(job.id);
        if (row) { row.job = job; row.update(); } else place(job, true);
      }
    } catch { /* the next reconnect tries again */ }
  }

  let opened;
  let dropped = false;
  const ready = new Promise((resolve) => { opened = resolve; setTimeout(resolve, 3000); });
  stream = openStream('v1/events', {
    onEvent,
    onState: (s) => {
      live.set(s);
      if (s === 'open') {
        opened();
        if (dropped && loaded) catchUp();
      }
      dropped = s === 'reconnecting' || (dropped && s !== 'open');
    },
  });
  ready.then(() => load(null));
  const ticker = setInterval(() => rows.forEach((r) => r.update()), 5000);
  return () => { stream.close(); clearInterval(ticker); };
}

// The account: what GET /v1/account returns (the balance, the account, this key; the
// plan's limits beside what is used of them now; any other field as it comes), the
// webhook secret (hidden until asked for) and recent webhook deliveries.

import { api } from '../api.js';
import { h, humanize, notice, replace } from '../dom.js';
import { age, dateTime, duration } from '../format.js';
import { spinner, statusBadge } from '../widgets.js';

const KNOWN = ['object', 'id', 'name', 'plan', 'created_at', 'key', 'balance', 'limits', 'usage'];

// The plan's limits beside what is used of them now: [label, [limits field, format],
// [usage field, format(value, usage)]]. Fields not named here (nor shown elsewhere on the page) get
// rows of their own, labelled from their names.
const LIMIT_ROWS = [
  ['Job submissions', ['generation_per_min', perMinute],
    ['generation_remaining', (n) => `${num(n)} left this minute`]],
  ['Other requests', ['status_per_min', perMinute],
    ['status_remaining', (n) => `${num(n)} left this minute`]],
  ['Jobs at once', ['concurrent_jobs', num], ['running_jobs', (n, usage) =>
    `${num(n)} running${typeof usage.queued_jobs === 'number'
      ? `, ${num(usage.queued_jobs)} queued` : ''}`]],
  ['Open streams and long-polls', ['open_streams', num],
    ['open_streams', (n) => `${num(n)} open on this server`]],
  ['Outputs kept', ['retention_days', (n) => `${num(n)} day${n === 1 ? '' : 's'}`], null],
];
// the balance card, the jobs at once row, the note under the table
const SHOWN_ELSEWHERE = ['monthly_credits', 'queued_jobs', 'window_reset_s'];

export function render(main) {
  const summaryBox = h('div', { class: 'cards' }, spinner());
  const limitsBox = h('div');
  const secretBox = h('div');
  const deliveries = h('div', {}, spinner());

  replace(main,
    h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, 'Account')),
    summaryBox, limitsBox,
    h('section', { class: 'card', 'aria-labelledby': 'h-secret' },
      h('h2', { id: 'h-secret' }, 'Webhook signing secret'),
      h('p', { class: 'help' }, 'Webhooks are signed with this secret (Standard Webhooks). ',
        'Keep it private.'),
      secretBox),
    h('section', { class: 'card', 'aria-labelledby': 'h-deliveries' },
      h('h2', { id: 'h-deliveries' }, 'Recent webhook deliveries'), deliveries));

  api('v1/account').then((acct) => {
    const key = acct.key || {};
    const cards = [];
    if (typeof acct.balance === 'number') {
      const monthly = acct.limits?.monthly_credits;
      cards.push(card('Credit balance', [h('p', { class: 'big' }, num(acct.balance),
        h('small', {}, ' credits')), typeof monthly === 'number' ? h('p', { class: 'help' },
        `${num(monthly)} credits a month${acct.plan ? ` on the ${acct.plan} plan` : ''}`) : null],
      'account-balance'));
    }
    cards.push(card('Account', dl([['Name', acct.name], ['Plan', acct.plan],
      ['Account id', acct.id && h('code', {}, acct.id)], ['Created', dateTime(acct.created_at)]])),
    card('This API key', dl([['Prefix', key.prefix && h('code', {}, `${key.prefix}…`)],
      ['Name', key.name], ['Key id', key.id && h('code', {}, key.id)],
      ['Created', dateTime(key.created_at)]])));
    for (const [k, v] of Object.entries(acct)) { // whatever else the server tells
      if (!KNOWN.includes(k) && v !== null && v !== undefined) {
        cards.push(card(label(k), value(v), `account-${k}`));
      }
    }
    replace(summaryBox, cards);
    if (acct.limits || acct.usage) replace(limitsBox, limitsCard(acct.limits || {}, acct.usage || {}));
  }).catch((err) => replace(summaryBox, notice('error', `Could not load the account: ${err.message}`)));

  showSecretButton();
  function showSecretButton() {
    replace(secretBox, h('button', { type: 'button', onclick: reveal }, 'Show secret'));
  }
  async function reveal(e) {
    e.currentTarget.disabled = true;
    try {
      const { secret } = await api('v1/account/webhook-secret');
      const code = h('code', { class: 'secret', id: 'webhook-secret' }, secret);
      const copy = h('button', { type: 'button', onclick: async () => {
        try { await navigator.clipboard.writeText(secret); copy.textContent = 'Copied'; } catch {
          copy.textContent = 'Copy failed: select the text';
        }
      } }, 'Copy');
      replace(secretBox, h('div', { class: 'secret-row' }, code, copy,
        h('button', { type: 'button', onclick: showSecretButton }, 'Hide')));
      copy.focus();
    } catch (err) {
      replace(secretBox, notice('error', `Could not read the secret: ${err.message}`));
    }
  }

  api('v1/deliveries').then(({ data }) => {
    if (!data.length) {
      replace(deliveries, h('p', { class: 'empty' },
        'No deliveries yet. Give a job a "webhook" to get one.'));
      return;
    }
    replace(deliveries, h('table', { class: 'deliveries' },
      h('thead', {}, h('tr', {}, ['When', 'Job', 'Event', 'URL', 'Status', 'Delivered']
        .map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, data.map((d) => h('tr', {},
        h('td', { 'data-label': 'When', title: d.created_at }, age(d.created_at)),
        h('td', { 'data-label': 'Job' }, h('a', { href: `#/jobs/${d.job_id}`, class: 'mono' },
          d.job_id)),
        h('td', { 'data-label': 'Event' }, d.event),
        h('td', { 'data-label': 'URL', class: 'url' }, d.url),
        h('td', { 'data-label': 'Status' }, statusBadge(d.status)),
        h('td', { 'data-label': 'Delivered' }, d.delivered_at ? dateTime(d.delivered_at)
          : d.next_attempt_at ? `next try ${dateTime(d.next_attempt_at)}` : '—'))))));
  }).catch((err) => replace(deliveries, notice('error', `Could not load deliveries: ${err.message}`)));
  return null;
}

function card(title, body, id) {
  return h('section', { class: 'card', id }, h('h2', {}, title), body);
}

function limitsCard(limits, usage) {
  const used = new Set(SHOWN_ELSEWHERE);
  const cell = (source, spec) => {
    if (!spec || source[spec[0]] === undefined || source[spec[0]] === null) return '';
    used.add(spec[0]);
    return spec[1](source[spec[0]], source);
  };
  const rows = LIMIT_ROWS.map(([name, limit, now]) => [name, cell(limits, limit), cell(usage, now)])
    .filter(([, a, b]) => a !== '' || b !== '');
  const reset = usage.window_reset_s;
  for (const [source, column] of [[limits, 1], [usage, 2]]) { // fields added later
    for (const [k, v] of Object.entries(source)) {
      if (!used.has(k) && v !== null && v !== undefined) {
        const row = [label(k), '', ''];
        row[column] = value(v);
        rows.push(row);
      }
    }
  }
  return h('section', { class: 'card', id: 'account-limits', 'aria-labelledby': 'h-limits' },
    h('h2', { id: 'h-limits' }, 'Limits and usage'),
    h('table', { class: 'limits' },
      h('thead', {}, h('tr', {}, ['', 'Limit', 'Now'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map(([name, limit, now]) => h('tr', {},
        h('th', { scope: 'row' }, name), h('td', { class: 'num' }, limit),
        h('td', { class: 'num' }, now))))),
    typeof reset === 'number' ? h('p', { class: 'help' },
      `The per-minute counts start again in ${duration(reset)}.`) : null);
}

function dl(rows) {
  return h('dl', { class: 'details' }, rows.filter(([, v]) => v !== null && v !== undefined && v !== '')
    .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function num(n) { return typeof n === 'number' ? n.toLocaleString() : String(n); }
function perMinute(n) { return `${num(n)} a minute`; }

/** A field name as a label, its unit spelled out: `window_reset_s` is "Window reset
 * (seconds)", `generation_per_min` "Generation per minute". */
function label(name) {
  const units = [[/_s$/, ' (seconds)'], [/_ms$/, ' (milliseconds)'], [/_per_min$/, ' per minute'],
    [/_days$/, ' (days)']];
  for (const [re, unit] of units) {
    if (re.test(name)) return humanize(name.replace(re, '')) + unit;
  }
  return humanize(name);
}

/** Any JSON value, readably: objects as definition lists, arrays as lists. */
function value(v) {
  if (Array.isArray(v)) return h('ul', {}, v.map((x) => h('li', {}, value(x))));
  if (v && typeof v === 'object') {
    return dl(Object.entries(v).map(([k, x]) => [label(k), value(x)]));
  }
  if (typeof v === 'number') return h('span', { class: 'num' }, num(v));
  return String(v);
}

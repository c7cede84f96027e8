// The account: whatever GET /v1/account returns (name, plan, key; balance, limits and
// usage where the server gives them), the webhook secret (hidden until asked for)
// and recent webhook deliveries.

import { api } from '../api.js';
import { h, humanize, notice, replace } from '../dom.js';
import { age, dateTime } from '../format.js';
import { spinner, statusBadge } from '../widgets.js';

const KNOWN = ['object', 'id', 'name', 'plan', 'created_at', 'key'];

export function render(main) {
  const summaryBox = h('div', { class: 'cards' }, spinner());
  const secretBox = h('div');
  const deliveries = h('div', {}, spinner());

  replace(main,
    h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, 'Account')),
    summaryBox,
    h('section', { class: 'card', 'aria-labelledby': 'h-secret' },
      h('h2', { id: 'h-secret' }, 'Webhook signing secret'),
      h('p', { class: 'help' }, 'Webhooks are signed with this secret (Standard Webhooks). ',
        'Keep it private.'),
      secretBox),
    h('section', { class: 'card', 'aria-labelledby': 'h-deliveries' },
      h('h2', { id: 'h-deliveries' }, 'Recent webhook deliveries'), deliveries));

  api('v1/account').then((acct) => {
    const basics = [['Name', acct.name], ['Plan', acct.plan], ['Account id', acct.id],
      ['Created', dateTime(acct.created_at)]];
    const key = acct.key || {};
    const cards = [card('Account', dl(basics)),
      card('This API key', dl([['Prefix', key.prefix && h('code', {}, `${key.prefix}…`)],
        ['Name', key.name], ['Key id', key.id], ['Created', dateTime(key.created_at)]]))];
    if (typeof acct.balance === 'number') {
      cards.push(card('Credit balance', h('p', { class: 'big' }, acct.balance.toLocaleString(),
        h('small', {}, ' credits')), 'account-balance'));
    }
    for (const [k, v] of Object.entries(acct)) { // limits, usage, ... as they come
      if (!KNOWN.includes(k) && k !== 'balance' && v !== null && v !== undefined) {
        cards.push(card(humanize(k), value(v), `account-${k}`));
      }
    }
    replace(summaryBox, cards);
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

function dl(rows) {
  return h('dl', { class: 'details' }, rows.filter(([, v]) => v !== null && v !== undefined && v !== '')
    .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

/** Any JSON value, readably: objects as definition lists, arrays as lists. */
function value(v) {
  if (Array.isArray(v)) return h('ul', {}, v.map((x) => h('li', {}, value(x))));
  if (v && typeof v === 'object') {
    return dl(Object.entries(v).map(([k, x]) => [humanize(k), value(x)]));
  }
  if (typeof v === 'number') return h('span', { class: 'num' }, v.toLocaleString());
  return String(v);
}

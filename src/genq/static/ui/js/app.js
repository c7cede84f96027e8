// The dashboard shell: sign-in state, the header, and a hash router
// (#/jobs, #/jobs/<id>, #/new, #/account). Each page renders into <main> and
// returns a cleanup function that closes its streams and timers.

import { auth } from './api.js';
import { h, replace } from './dom.js';
import * as account from './pages/account.js';
import * as job from './pages/job.js';
import * as jobs from './pages/jobs.js';
import * as newJob from './pages/new.js';
import * as signin from './pages/signin.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
let cleanup = null;
let flash = null;

const routes = [
  [/^\/jobs\/([\w-]+)$/, (m) => (el, q) => job.render(el, m[1], q)],
  [/^\/jobs$/, () => jobs.render],
  [/^\/new$/, () => newJob.render],
  [/^\/account$/, () => account.render],
];

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/jobs';
  const [path, query = ''] = raw.split('?');
  return { path, query: new URLSearchParams(query) };
}

export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function renderNav(path) {
  const link = (href, label, active) => h('a', { href, 'aria-current': active ? 'page' : null },
    label);
  if (!auth.get()) return replace(nav);
  replace(nav,
    link('#/jobs', 'Jobs', path.startsWith('/jobs')),
    link('#/new', 'New job', path === '/new'),
    link('#/account', 'Account', path === '/account'),
    h('button', { type: 'button', class: 'link', onclick: signOut }, 'Sign out'));
}

function signOut(message) {
  auth.clear();
  flash = typeof message === 'string' ? message : 'You are signed out.';
  go('#/signin');
}

function route() {
  if (cleanup) { try { cleanup(); } catch { /* page already gone */ } }
  cleanup = null;
  const { path, query } = parseHash();
  main.replaceChildren();
  if (!auth.get() || path === '/signin') {
    renderNav('/signin');
    cleanup = signin.render(main, query, { flash, onSignedIn: () => go('#/jobs') });
    flash = null;
  } else {
    renderNav(path);
    const found = routes.find(([re]) => re.test(path));
    if (found) cleanup = found[1](path.match(found[0]))(main, query);
    else replace(main, h('h1', { tabindex: -1 }, 'Not found'), h('p', {}, 'No such page. ',
      h('a', { href: '#/jobs' }, 'Back to the jobs.')));
  }
  document.title = `${main.querySelector('h1')?.textContent || 'genq'} · genq`;
  // Move focus to the new page's heading so keyboard and screen-reader users follow.
  const target = main.querySelector('[data-autofocus]') || main.querySelector('h1');
  target?.focus({ preventScroll: true });
}

window.addEventListener('genq:unauthorized', () => {
  if (auth.get()) signOut('Your API key was not accepted. Sign in again.');
});
window.addEventListener('hashchange', route);
document.querySelector('.skip').addEventListener('click', (e) => { // not a route
  e.preventDefault();
  main.focus();
});
route();

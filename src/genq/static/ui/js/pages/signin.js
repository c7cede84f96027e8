// Sign in with an API key: checked against GET /v1/account, then kept in
// sessionStorage for this tab only.

import { api, auth } from '../api.js';
import { h, notice, replace } from '../dom.js';

export function render(main, _query, { flash, onSignedIn }) {
  const input = h('input', { id: 'api-key', name: 'key', type: 'password', required: true,
    autocomplete: 'off', spellcheck: 'false', dataset: { autofocus: '' }, 'aria-describedby': 'key-help',
    placeholder: 'gq_…' });
  const messages = h('div', { class: 'messages' },
    flash ? notice('info', flash) : null);
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');

  async function submit(e) {
    e.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    button.disabled = true;
    replace(messages);
    try {
      await api('v1/account', { key });
      auth.set(key);
      onSignedIn();
    } catch (err) {
      const text = err.status === 401 ? 'That key was not accepted.' : `Could not sign in: ${err.message}`;
      replace(messages, notice('error', text));
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    } finally {
      button.disabled = false;
    }
  }

  replace(main, h('section', { class: 'signin card' },
    h('h1', { tabindex: -1 }, 'Sign in'),
    messages,
    h('form', { onsubmit: submit },
      h('label', { for: 'api-key' }, 'API key'),
      input,
      h('p', { id: 'key-help', class: 'help' },
        h('code', {}, 'make run'), ' wrote one to ', h('code', {}, '.genq/demo.key'),
        '; make more with ', h('code', {}, 'genq keys create'),
        '. The key is kept in this browser tab only and sent as a Bearer token.'),
      button)));
  return null;
}

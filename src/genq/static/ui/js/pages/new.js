// The new-job form: pick an engine, fill the form generated from its input schema,
// submit (POST /v1/jobs) and land on the live job page. 422 errors go to the fields.

import { api, qs } from '../api.js';
import { h, notice, replace } from '../dom.js';
import { duration } from '../format.js';
import { FieldError, needsUpload, schemaForm } from '../form.js';
import { spinner } from '../widgets.js';

export function render(main, query) {
  let engines = [];
  let form = null;
  let models = null;
  const select = h('select', { id: 'engine', name: 'engine', required: true, onchange: () => {
    history.replaceState(null, '', `#/new${qs({ engine: select.value })}`);
    build(select.value, {});
  } });
  const about = h('div', { class: 'engine-about' });
  const fieldsBox = h('div', {}, spinner());
  const messages = h('div', { class: 'messages' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Start job');

  replace(main,
    h('div', { class: 'page-head' }, h('h1', { tabindex: -1 }, 'New job')),
    h('form', { class: 'new-job card', novalidate: true, onsubmit: send },
      h('div', { class: 'field' }, h('label', { for: 'engine' }, 'Engine'), select, about),
      fieldsBox, messages,
      h('div', { class: 'form-actions' }, submit)));

  const ctx = {
    upload: (file) => {
      const data = new FormData();
      data.append('file', file, file.name);
      data.append('purpose', 'input');
      return api('v1/files', { method: 'POST', form: data });
    },
    models: () => (models ??= api('v1/models').then((r) => r.data
      .filter((m) => m.status === 'ready')).catch(() => [])),
  };

  function build(name, values) {
    const engine = engines.find((e) => e.name === name);
    replace(messages);
    if (!engine) { replace(fieldsBox); replace(about); form = null; return; }
    replace(about,
      engine.description ? h('p', {}, engine.description) : null,
      h('p', { class: 'help' }, [
        `${engine.price} credit${engine.price === 1 ? '' : 's'}`,
        engine.typical_duration_s ? `usually ${duration(engine.typical_duration_s)}` : '',
        engine.media?.length ? `makes ${engine.media.join(', ')}` : '',
      ].filter(Boolean).join(' · ')));
    form = schemaForm(engine.input_schema || {}, values, ctx);
    replace(fieldsBox, form.el);
  }

  async function send(e) {
    e.preventDefault();
    if (!form) return;
    form.clearErrors();
    replace(messages);
    submit.disabled = true;
    submit.textContent = 'Starting…';
    try {
      const input = await form.collect();
      const job = await api('v1/jobs', { method: 'POST', json: { engine: select.value, input } });
      location.hash = `#/jobs/${job.id}`;
    } catch (err) {
      const errors = err instanceof FieldError ? [{ field: err.field, message: err.message }]
        : err.errors || [];
      const loose = form.showErrors(errors);
      replace(messages, notice('error', h('strong', {}, err.message || 'The job was not started.'),
        loose.length ? h('ul', {}, loose.map((x) => h('li', {}, `${x.field}: ${x.message}`)))
          : null));
    } finally {
      submit.disabled = false;
      submit.textContent = 'Start job';
    }
  }

  (async () => {
    try {
      const from = query.get('from');
      const [list, previous] = await Promise.all([
        api('v1/engines'), from ? api(`v1/jobs/${from}`).catch(() => null) : null]);
      engines = list.data;
      const wanted = previous?.engine || query.get('engine') || firstChoice(engines)?.name;
      replace(select, engines.map((en) => h('option', { value: en.name,
        selected: en.name === wanted }, en.name)));
      if (!engines.length) {
        replace(fieldsBox, notice('info', 'This server has no engines.'));
        return;
      }
      build(select.value, previous?.input || {});
    } catch (err) {
      replace(fieldsBox, notice('error', `Could not load the engines: ${err.message}`));
    }
  })();
  return null;
}

/** The engine the form opens with: one that needs nothing uploaded, preferring one
 * that takes a prompt and, among those, the cheapest (a first job that needs only
 * words). Ties keep the server's order. */
export function firstChoice(engines) {
  const rank = (e) => [needsUpload(e.input_schema) ? 1 : 0,
    e.input_schema?.properties?.prompt ? 0 : 1, e.price ?? Infinity];
  const order = (a, b) => {
    const [x, y] = [rank(a), rank(b)];
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
  };
  return [...engines].sort(order)[0];
}

// A form generated from an engine's input JSON Schema (as Pydantic writes it):
// strings, numbers with bounds, enums, booleans, arrays, nested objects, and genq's
// own formats: `genq-file` (an upload through POST /v1/files) and `genq-model`.

import { h, humanize, nextId, replace } from './dom.js';
import { bytes } from './format.js';

const LONG_TEXT = /prompt|text|description|caption|negative/i;

/** A property's schema with $ref, a lone allOf and an optional (X or null) unwrapped. */
function resolveIn(root, s) {
  s = s || {};
  if (s.$ref) {
    const name = s.$ref.split('/').pop();
    const { $ref, ...rest } = s;
    return resolveIn(root, { ...(root.$defs?.[name] || {}), ...rest });
  }
  if (s.allOf?.length === 1) {
    const { allOf, ...rest } = s;
    return resolveIn(root, { ...allOf[0], ...rest });
  }
  const alts = s.anyOf || s.oneOf;
  if (alts) {
    const real = alts.filter((a) => a.type !== 'null');
    if (real.length === 1) {
      const { anyOf, oneOf, ...rest } = s;
      return { ...resolveIn(root, real[0]), ...rest, nullable: real.length < alts.length };
    }
  }
  return s;
}

/** Whether a job needs a file uploaded first: a required `genq-file` input, or a
 * required list of them. */
export function needsUpload(schema) {
  const required = new Set(schema?.required || []);
  return Object.entries(schema?.properties || {}).some(([name, prop]) => {
    if (!required.has(name)) return false;
    const s = resolveIn(schema, prop);
    return s.format === 'genq-file' ||
      (s.type === 'array' && resolveIn(schema, s.items).format === 'genq-file');
  });
}

export function schemaForm(schema, values, ctx) {
  const fields = new Map(); // error path ("input.width") -> {wrap, control, error}
  const pending = new Set(); // uploads in flight
  const resolve = (s) => resolveIn(schema, s);

  function wrapField(path, labelText, required, control, help, { inline = false, wide } = {}) {
    const id = control.id || (control.id = nextId('in'));
    const helpId = help ? nextId('help') : null;
    const error = h('p', { class: 'field-error', id: nextId('err'), hidden: true });
    const describedBy = [helpId, error.id].filter(Boolean).join(' ');
    const target = control.matches('input, select, textarea') ? control
      : control.querySelector('input, select, textarea');
    target?.setAttribute('aria-describedby', describedBy);
    const label = h('label', { for: target?.id || id }, labelText,
      required ? h('span', { class: 'req' }, ' (required)') : null);
    wide ??= !control.matches('input[type=number], input[type=checkbox], select');
    const wrap = h('div', { class: `field${inline ? ' inline' : ''}${wide ? ' wide' : ''}`,
      dataset: { path } },
      inline ? [control, label] : [label, control],
      help ? h('p', { class: 'help', id: helpId }, help) : null, error);
    fields.set(path, { wrap, control: target || control, error });
    return wrap;
  }

  /** Returns {el, get()} for one property; get() gives undefined to leave it out. */
  function widget(name, raw, required, path, value) {
    const s = resolve(raw);
    const label = s.title || humanize(name);
    if (value === undefined) value = s.default ?? undefined;
    const optional = !required || s.nullable;
    const help = describe(s);
    const type = s.type;

    if (s.enum || s.const !== undefined) {
      const options = s.enum || [s.const];
      const select = h('select', { name: path, required: !optional },
        optional ? h('option', { value: '' }, '—') : null,
        options.map((o, i) => h('option', { value: String(i), selected: o === value },
          String(o))));
      return { el: wrapField(path, label, required, select, help),
        get: () => (select.value === '' ? undefined : options[Number(select.value)]) };
    }
    if (s.format === 'genq-file') return fileWidget(name, s, label, required, path, value, help);
    if (s.format === 'genq-model') return modelWidget(s, label, required, path, value, help);
    if (type === 'boolean') {
      const box = h('input', { type: 'checkbox', name: path, checked: Boolean(value) });
      return { el: wrapField(path, label, false, box, help, { inline: true }),
        get: () => box.checked };
    }
    if (type === 'integer' || type === 'number') {
      const min = s.minimum ?? s.exclusiveMinimum;
      const max = s.maximum ?? s.exclusiveMaximum;
      const input = h('input', { type: 'number', name: path, required: !optional,
        min, max, step: type === 'integer' ? (s.multipleOf || 1) : (s.multipleOf || 'any'),
        value: value ?? '', inputmode: type === 'integer' ? 'numeric' : 'decimal' });
      return { el: wrapField(path, label, required, input, help),
        get: () => (input.value === '' ? undefined : Number(input.value)) };
    }
    if (type === 'string') {
      const long = LONG_TEXT.test(name) || (s.maxLength ?? 0) > 200;
      const attrs = { name: path, required: !optional, minlength: s.minLength,
        maxlength: s.maxLength, placeholder: s.examples?.[0] };
      const input = long ? h('textarea', { ...attrs, rows: 3 }, value ?? '')
        : h('input', { ...attrs, type: s.format === 'uri' ? 'url' : 'text', value: value ?? '' });
      return { el: wrapField(path, label, required, input, help),
        get: () => (input.value === '' ? undefined : input.value) };
    }
    if (type === 'array') return arrayWidget(name, s, label, required, path, value, help);
    if (type === 'object' && s.properties) {
      const inner = objectFields(s, path, value || {});
      const el = h('fieldset', { class: 'group', dataset: { path } },
        h('legend', {}, label), help ? h('p', { class: 'help' }, help) : null, inner.els);
      const error = h('p', { class: 'field-error', hidden: true });
      el.append(error);
      fields.set(path, { wrap: el, control: el.querySelector('input, select, textarea'), error });
      return { el, get: () => {
        const v = inner.get();
        return Object.keys(v).length || required ? v : undefined;
      } };
    }
    // Anything else (unions, free-form objects): JSON text.
    const area = h('textarea', { name: path, rows: 3, class: 'mono' },
      value === undefined ? '' : JSON.stringify(value, null, 2));
    return { el: wrapField(path, `${label} (JSON)`, required, area, help),
      get: () => {
        if (!area.value.trim()) return undefined;
        try { return JSON.parse(area.value); } catch {
          throw new FieldError(path, 'This is not valid JSON.');
        }
      } };
  }

  function objectFields(s, path, value) {
    const required = new Set(s.required || []);
    const parts = Object.entries(s.properties || {}).map(([name, prop]) => [name,
      widget(name, prop, required.has(name), `${path}.${name}`, value[name])]);
    return { els: parts.map(([, w]) => w.el), get: () => {
      const out = {};
      for (const [name, w] of parts) {
        const v = w.get();
        if (v !== undefined) out[name] = v;
      }
      return out;
    } };
  }

  function upload(file, status) {
    status.textContent = `Uploading ${file.name}…`;
    const p = ctx.upload(file).finally(() => pending.delete(p));
    pending.add(p);
    return p.then((rec) => {
      status.textContent = `Uploaded ${file.name} (${bytes(rec.bytes ?? file.size)}) as ${rec.id}`;
      return rec.id;
    }, (err) => {
      status.textContent = `Upload of ${file.name} failed: ${err.message}`;
      throw err;
    });
  }

  const accept = (name, s) => s.contentMediaType ||
    (/image|photo|picture/i.test(name) ? 'image/*' : /video/i.test(name) ? 'video/*' : null);

  function fileWidget(name, s, label, required, path, value, help) {
    const ref = h('input', { type: 'text', name: path, value: value ?? '', class: 'mono',
      placeholder: 'file_… or job_…/output', required: required && !s.nullable });
    const status = h('span', { class: 'help', role: 'status' });
    const picker = h('input', { type: 'file', accept: accept(name, s),
      'aria-label': `Upload a file for ${label}`,
      onchange: () => {
        const file = picker.files[0];
        if (file) upload(file, status).then((id) => { ref.value = id; }).catch(() => {});
      } });
    const box = h('div', { class: 'file-field' }, ref, picker, status);
    return { el: wrapField(path, label, required, box,
      help || 'Upload a file, or give the id of an upload or of an earlier job\'s output.'),
    get: () => ref.value.trim() || undefined };
  }

  function modelWidget(s, label, required, path, value, help) {
    const listId = nextId('models');
    const list = h('datalist', { id: listId });
    ctx.models().then((models) => replace(list, models.map((m) =>
      h('option', { value: m.id }, m.name ? `${m.name} (${m.engine || m.status})` : m.id))));
    const input = h('input', { type: 'text', name: path, list: listId, class: 'mono',
      value: value ?? '', placeholder: 'model_…', required: required && !s.nullable });
    return { el: h('div', {}, wrapField(path, label, required, input,
      [help, 'A trained model that is ready (see the suggestions).'].filter(Boolean).join(' ')),
    list), get: () => input.value.trim() || undefined };
  }

  function arrayWidget(name, s, label, required, path, value, help) {
    const items = resolve(s.items);
    const initial = Array.isArray(value) ? value : [];
    if (items.format === 'genq-file') { // many uploads: a list of chips
      const ids = [...initial];
      const chips = h('ul', { class: 'chips' });
      const status = h('span', { class: 'help', role: 'status' });
      const draw = () => replace(chips, ids.map((id, i) => h('li', {}, h('span', { class: 'mono' }, id),
        h('button', { type: 'button', class: 'small', 'aria-label': `Remove ${id}`,
          onclick: () => { ids.splice(i, 1); draw(); } }, '×'))));
      const picker = h('input', { type: 'file', multiple: true, accept: accept(name, items),
        onchange: async () => {
          for (const file of picker.files) {
            try { ids.push(await upload(file, status)); draw(); } catch { /* shown */ }
          }
          picker.value = '';
        } });
      draw();
      return { el: wrapField(path, label, required, h('div', { class: 'file-field' }, picker,
        status, chips), help), get: () => (ids.length ? [...ids] : undefined) };
    }
    if (items.enum) { // a set of choices: checkboxes
      const boxes = items.enum.map((o) => h('input', { type: 'checkbox', value: String(o),
        checked: initial.includes(o), id: nextId('opt') }));
      const el = h('fieldset', { class: 'group', dataset: { path } }, h('legend', {}, label),
        boxes.map((b) => h('label', { class: 'inline', for: b.id }, b, ` ${b.value}`)),
        help ? h('p', { class: 'help' }, help) : null);
      const error = h('p', { class: 'field-error', hidden: true });
      el.append(error);
      fields.set(path, { wrap: el, control: boxes[0], error });
      return { el, get: () => {
        const v = items.enum.filter((_, i) => boxes[i].checked);
        return v.length || required ? v : undefined;
      } };
    }
    const rows = [];
    const list = h('ol', { class: 'array-rows' });
    const add = (v) => {
      const w = widget(`${name} ${rows.length + 1}`, items, true, `${path}.${rows.length}`, v);
      const row = { w, li: null };
      row.li = h('li', {}, w.el, h('button', { type: 'button', class: 'small',
        onclick: () => { rows.splice(rows.indexOf(row), 1); row.li.remove(); } },
      `Remove`));
      rows.push(row);
      list.append(row.li);
    };
    initial.forEach(add);
    for (let i = initial.length; i < (s.minItems || 0); i++) add(undefined);
    const el = h('fieldset', { class: 'group', dataset: { path } }, h('legend', {}, label),
      help ? h('p', { class: 'help' }, help) : null, list,
      h('button', { type: 'button', class: 'small', onclick: () => add(undefined) },
        `Add ${humanize(name).toLowerCase()}`));
    const error = h('p', { class: 'field-error', hidden: true });
    el.append(error);
    fields.set(path, { wrap: el, control: null, error });
    return { el, get: () => {
      const v = rows.map((r) => r.w.get()).filter((x) => x !== undefined);
      return v.length || required ? v : undefined;
    } };
  }

  const top = objectFields(resolve(schema), 'input', values || {});
  return {
    el: h('div', { class: 'schema-form' }, top.els),
    /** The input object, after uploads finish. Throws FieldError for bad JSON fields. */
    async collect() {
      await Promise.allSettled([...pending]);
      return top.get();
    },
    clearErrors() {
      for (const f of fields.values()) {
        f.error.hidden = true;
        f.wrap.classList.remove('invalid');
        f.control?.removeAttribute('aria-invalid');
      }
    },
    /** Show `[{field, message}]` next to the fields; returns the ones with no field. */
    showErrors(errors) {
      const loose = [];
      const shown = new Set();
      for (const err of errors) {
        const f = find(String(err.field || ''));
        if (!f) { loose.push(err); continue; }
        f.error.textContent = shown.has(f) ? `${f.error.textContent} ${err.message}`
          : err.message;
        f.error.hidden = false;
        f.wrap.classList.add('invalid');
        f.control?.setAttribute('aria-invalid', 'true');
        shown.add(f);
      }
      const first = shown.values().next().value;
      first?.control?.focus();
      return loose;
    },
  };

  function find(field) {
    const parts = field.replace(/\[(\d+)\]/g, '.$1').split('.');
    while (parts.length) {
      const f = fields.get(parts.join('.'));
      if (f) return f;
      parts.pop();
    }
    return null;
  }
}

export class FieldError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

/** The schema's description, plus its bounds unless the description gives them. */
function describe(s) {
  const extra = bounds(s);
  const numbers = extra.match(/\d+/g) || [];
  const told = s.description && numbers.every((n) => s.description.includes(n));
  return [s.description, told ? '' : extra].filter(Boolean).join(' ');
}

function bounds(s) {
  const lo = s.minimum ?? s.exclusiveMinimum;
  const hi = s.maximum ?? s.exclusiveMaximum;
  if (lo !== undefined && hi !== undefined) return `From ${lo} to ${hi}.`;
  if (lo !== undefined) return `At least ${lo}.`;
  if (hi !== undefined) return `At most ${hi}.`;
  if (s.maxLength) return `Up to ${s.maxLength} characters.`;
  return '';
}

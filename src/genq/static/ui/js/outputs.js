// Output previews (images in a zoomable grid, video with its thumbnail as poster,
// 3D models in <model-viewer>) and download links for every output.

import { fileUrl } from './api.js';
import { h } from './dom.js';
import { bytes } from './format.js';

const MODEL_VIEWER = new URL('../vendor/model-viewer.min.js', import.meta.url).href;
let viewerLoaded = null;

const ext = (o) => (new URL(o.url, location.href).pathname.split('.').pop() || '').toLowerCase();
const isGltf = (o) => o.kind === 'model' && (['glb', 'gltf'].includes(ext(o)) ||
  /gltf/.test(o.content_type || ''));

export function previews(job) {
  const outs = job.outputs || [];
  const thumb = outs.find((o) => o.kind === 'thumbnail');
  const images = outs.filter((o) => o.kind === 'image' && /^image\//.test(o.content_type || ''));
  const videos = outs.filter((o) => o.kind === 'video');
  const model = outs.find(isGltf);
  const parts = [];
  if (images.length) parts.push(imageGrid(images));
  for (const v of videos) {
    parts.push(h('figure', { class: 'video' },
      h('video', { src: fileUrl(v.url), controls: true, preload: 'metadata', playsinline: true,
        poster: thumb ? fileUrl(thumb.url) : null }),
      h('figcaption', {}, caption(v))));
  }
  if (model) parts.push(modelViewer(model, thumb, job));
  else if (outs.some((o) => o.kind === 'model') && thumb) {
    parts.push(h('figure', {}, h('img', { src: fileUrl(thumb.url), alt: 'Preview of the model' }),
      h('figcaption', {}, 'No in-browser viewer for these formats; download them below.')));
  }
  if (!parts.length && thumb) parts.push(imageGrid([thumb]));
  return parts;
}

function caption(o) {
  const dims = o.width && o.height ? `${o.width}×${o.height}` : '';
  const secs = o.duration_s ? `${o.duration_s} s` : '';
  return [o.name, dims, secs, bytes(o.bytes)].filter(Boolean).join(' · ');
}

function imageGrid(images) {
  const box = lightbox(images);
  return [h('div', { class: 'image-grid' }, images.map((o, i) => h('figure', {},
    h('button', { type: 'button', class: 'zoomable', 'aria-label': `Enlarge ${o.name}`,
      onclick: () => box.open(i) },
    h('img', { src: fileUrl(o.url), alt: o.name, width: o.width, height: o.height,
      loading: 'lazy' })),
    h('figcaption', {}, caption(o))))), box.dialog];
}

/** A dialog showing one image at a time, fit to the screen or zoomed 25%..800%. */
function lightbox(images) {
  let index = 0;
  let zoom = null; // null: fit to the window
  const img = h('img', { alt: '' });
  const stage = h('div', { class: 'stage' }, img);
  const level = h('output', { class: 'zoom-level', 'aria-live': 'polite' }, '');
  const link = h('a', { target: '_blank', rel: 'noopener' }, 'Open original');
  const setZoom = (z) => {
    zoom = z === null ? null : Math.min(8, Math.max(0.25, z));
    img.classList.toggle('fit', zoom === null);
    img.style.width = zoom === null ? '' : `${img.naturalWidth * zoom}px`;
    requestAnimationFrame(() => { level.textContent = `${Math.round(current() * 100)}%`; });
  };
  const current = () => zoom ?? (img.width / (img.naturalWidth || 1));
  const show = (i) => {
    index = (i + images.length) % images.length;
    const o = images[index];
    img.src = fileUrl(o.url);
    img.alt = o.name;
    link.href = fileUrl(o.url);
    title.textContent = caption(o);
    setZoom(null);
  };
  const title = h('h2', { class: 'dialog-title' });
  const many = images.length > 1;
  const dialog = h('dialog', { class: 'lightbox', 'aria-label': 'Image viewer',
    onkeydown: (e) => {
      const keys = { '+': () => setZoom(current() * 1.5), '=': () => setZoom(current() * 1.5),
        '-': () => setZoom(current() / 1.5), 0: () => setZoom(null), 1: () => setZoom(1),
        ArrowRight: () => many && show(index + 1), ArrowLeft: () => many && show(index - 1) };
      if (keys[e.key] && !e.target.matches('input')) { keys[e.key](); e.preventDefault(); }
    } },
  h('div', { class: 'toolbar' }, title,
    many ? h('button', { type: 'button', onclick: () => show(index - 1) }, '← Previous') : null,
    many ? h('button', { type: 'button', onclick: () => show(index + 1) }, 'Next →') : null,
    h('button', { type: 'button', 'aria-label': 'Zoom out', onclick: () => setZoom(current() / 1.5) }, '−'),
    level,
    h('button', { type: 'button', 'aria-label': 'Zoom in', onclick: () => setZoom(current() * 1.5) }, '+'),
    h('button', { type: 'button', onclick: () => setZoom(null) }, 'Fit to window'),
    h('button', { type: 'button', onclick: () => setZoom(1) }, '100%'),
    link,
    h('button', { type: 'button', class: 'primary', onclick: () => dialog.close() }, 'Close')),
  stage);
  img.addEventListener('click', () => setZoom(zoom === null ? 1 : null));
  img.addEventListener('load', () => setZoom(zoom));
  return { dialog, open: (i) => { show(i); dialog.showModal(); } };
}

function modelViewer(model, thumb, job) {
  viewerLoaded ??= import(MODEL_VIEWER);
  const viewer = document.createElement('model-viewer');
  const attrs = { src: fileUrl(model.url), alt: `3D model: ${job.input?.prompt || model.name}`,
    'camera-controls': '', 'touch-action': 'pan-y', 'shadow-intensity': '1',
    'interaction-prompt': 'none', exposure: '1', 'environment-image': 'neutral' };
  if (thumb) attrs.poster = fileUrl(thumb.url);
  for (const [k, v] of Object.entries(attrs)) viewer.setAttribute(k, v);
  const status = h('p', { class: 'help', role: 'status' }, 'Loading the 3D viewer…');
  viewer.addEventListener('load', () => {
    viewer.dataset.loaded = 'true';
    status.textContent = 'Drag to rotate, scroll or pinch to zoom.';
  });
  viewer.addEventListener('error', () => { status.textContent = 'The model could not be shown.'; });
  viewerLoaded.catch(() => { status.textContent = 'The 3D viewer could not be loaded.'; });
  return h('figure', { class: 'model' }, viewer, h('figcaption', {}, caption(model), status));
}

export function downloads(job) {
  const outs = job.outputs || [];
  if (!outs.length) return null;
  return h('table', { class: 'downloads' },
    h('caption', {}, 'Downloads'),
    h('thead', {}, h('tr', {}, ['Name', 'Kind', 'Format', 'Size', ''].map((t) =>
      h('th', { scope: 'col' }, t)))),
    h('tbody', {}, outs.map((o) => h('tr', {},
      h('td', { 'data-label': 'Name' }, o.name),
      h('td', { 'data-label': 'Kind' }, o.kind),
      h('td', { 'data-label': 'Format' }, `${ext(o).toUpperCase()} (${o.content_type})`),
      h('td', { 'data-label': 'Size', class: 'num' }, bytes(o.bytes)),
      h('td', {}, h('a', { href: fileUrl(o.url), download: '', class: 'button small',
        'aria-label': `Download ${o.name} (${ext(o).toUpperCase()})` },
      `Download ${ext(o).toUpperCase()}`))))));
}

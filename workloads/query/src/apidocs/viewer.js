// Renders an OpenAPI 3.1 document (/api/openapi/{name}.json): operations by tag, with their
// parameters, request body and responses, schemas written out from their $refs. Text from the
// document is only ever set as text, never as HTML.
'use strict';

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function resolve(doc, schema) {
  let s = schema;
  for (let i = 0; s && s.$ref && i < 20; i++) {
    const parts = s.$ref.replace(/^#\//, '').split('/');
    s = parts.reduce((o, p) => (o ? o[p.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined), doc);
  }
  return s || {};
}

function refName(schema) {
  return schema && schema.$ref ? schema.$ref.split('/').pop() : null;
}

// A schema as an indented sketch: `field: type — description`, nested objects and arrays
// written out to a depth, named schemas once per branch.
function sketch(doc, schema, depth, seen) {
  const name = refName(schema);
  const s = resolve(doc, schema);
  const pad = '  '.repeat(depth);
  if (name && seen.includes(name)) return `${name} (see above)`;
  const next = name ? [...seen, name] : seen;
  if (s.allOf) {
    // The branches' fields together (with this schema's own), as one object.
    const merged = { type: 'object', properties: { ...(s.properties || {}) }, required: [...(s.required || [])] };
    for (const b of s.allOf) {
      const r = resolve(doc, b);
      Object.assign(merged.properties, r.properties || {});
      merged.required.push(...(r.required || []));
    }
    return `${name ? name + ' ' : ''}${sketch(doc, merged, depth, next)}`;
  }
  const variants = s.oneOf || s.anyOf;
  if (variants) return variants.map((v) => sketch(doc, v, depth, next)).join(` |\n${pad}`);
  const type = Array.isArray(s.type) ? s.type.join(' | ') : s.type;
  if (s.enum) return `one of ${s.enum.map((v) => JSON.stringify(v)).join(', ')}`;
  if (type === 'array' || (Array.isArray(s.type) && s.type.includes('array'))) {
    return `[${sketch(doc, s.items || {}, depth, next)}]`;
  }
  if (s.properties && depth < 6) {
    const required = new Set(s.required || []);
    const lines = Object.entries(s.properties).map(([k, v]) => {
      const desc = resolve(doc, v).description || v.description;
      const text = sketch(doc, v, depth + 1, next);
      return `${pad}  ${k}${required.has(k) ? '' : '?'}: ${text}${desc ? `  — ${desc.split('\n')[0]}` : ''}`;
    });
    return `${name ? name + ' ' : ''}{\n${lines.join('\n')}\n${pad}}`;
  }
  return name || type || 'any';
}

function operation(doc, path, method, op) {
  const body = el('div', { class: 'body' });
  if (op.description) body.append(el('p', { class: 'desc' }, op.description));
  const params = [...(doc.paths[path].parameters || []), ...(op.parameters || [])].map((p) => resolve(doc, p));
  if (params.length) {
    const rows = params.map((p) =>
      el('tr', {}, el('td', {}, el('code', {}, p.name)), el('td', {}, p.in), el('td', {}, p.required ? 'yes' : ''),
        el('td', {}, sketch(doc, p.schema || {}, 0, [])), el('td', {}, p.description || '')));
    body.append(el('h4', {}, 'Parameters'),
      el('table', {}, el('thead', {}, el('tr', {}, ...['name', 'in', 'required', 'type', ''].map((h) => el('th', {}, h)))), el('tbody', {}, ...rows)));
  }
  const rb = op.requestBody && resolve(doc, op.requestBody);
  if (rb && rb.content) {
    for (const [type, media] of Object.entries(rb.content)) {
      body.append(el('h4', {}, `Request body (${type})`), el('pre', {}, sketch(doc, media.schema || {}, 0, [])));
    }
  }
  const responses = Object.entries(op.responses || {});
  if (responses.length) {
    body.append(el('h4', {}, 'Responses'));
    for (const [status, r0] of responses) {
      const r = resolve(doc, r0);
      body.append(el('p', {}, el('strong', {}, status), ' ', r.description || ''));
      for (const [type, media] of Object.entries(r.content || {})) {
        if (media.schema) body.append(el('pre', { 'aria-label': `${status} ${type}` }, sketch(doc, media.schema, 0, [])));
      }
    }
  }
  return el('details', { id: `${method}-${path}` },
    el('summary', {}, el('span', { class: `method ${method}` }, method), el('span', { class: 'path' }, path), el('span', { class: 'summary' }, op.summary || '')),
    body);
}

function render(doc) {
  const main = el('main', { id: 'doc', 'aria-live': 'polite' });
  const info = doc.info || {};
  main.append(el('h1', {}, `${info.title || 'API'} ${info.version ? `(${info.version})` : ''}`));
  if (info.description) main.append(el('p', { class: 'intro' }, info.description));
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const tag = (op.tags && op.tags[0]) || 'other';
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(doc, path, method, op));
    }
  }
  const tags = new Map((doc.tags || []).map((t) => [t.name, t.description]));
  // The document's tag order first, then any tag it does not list.
  const order = [...tags.keys(), ...[...byTag.keys()].filter((t) => !tags.has(t))].filter((t) => byTag.has(t));
  for (const tag of order) {
    const ops = byTag.get(tag);
    main.append(el('h2', {}, tag));
    if (tags.get(tag)) main.append(el('p', { class: 'summary' }, tags.get(tag)));
    main.append(...ops);
  }
  document.getElementById('doc').replaceWith(main);
}

async function show(name) {
  for (const b of document.querySelectorAll('nav button')) b.setAttribute('aria-pressed', String(b.dataset.doc === name));
  try {
    const resp = await fetch(`/api/openapi/${name}.json`);
    if (!resp.ok) throw new Error(`${resp.status} ${resp.statusText}`);
    render(await resp.json());
    if (location.hash !== `#${name}`) history.replaceState(null, '', `#${name}`);
  } catch (e) {
    document.getElementById('doc').replaceChildren(el('p', { class: 'error' }, `Cannot load the ${name} document: ${e.message}`));
  }
}

document.addEventListener('DOMContentLoaded', () => {
  for (const b of document.querySelectorAll('nav button')) b.addEventListener('click', () => show(b.dataset.doc));
  const wanted = location.hash.replace('#', '');
  show(['query', 'auth', 'capture'].includes(wanted) ? wanted : 'query');
});

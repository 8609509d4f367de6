// lookalike web page: compare, search, galleries. Plain ES module, no dependencies.
const $ = (sel) => document.querySelector(sel);
const KEY = 'lookalike.apiKey';

// ---------------------------------------------------------------- API and errors

export class ApiError extends Error {
  constructor(code, message, status = 0, requestId = '') {
    super(message);
    Object.assign(this, { code, status, requestId });
  }
}

// The error of any dialect this server speaks, or null.
function errorOf(d) {
  if (!d || typeof d !== 'object') return null;
  if (d.error && d.error.code) return { code: d.error.code, message: d.error.message, rid: d.request_id };
  const tc = d.Response && d.Response.Error;
  if (tc) return { code: tc.Code, message: tc.Message, rid: d.Response.RequestId };
  if (d.Code && d.Message) return { code: d.Code, message: d.Message, rid: d.RequestId };
  if (d.success === false) return { code: d.error_code, message: d.error_msg, rid: d.request_id };
  return null;
}

function authHeaders() {
  const key = localStorage.getItem(KEY);
  return key ? { 'x-api-key': key } : {};
}

// fetch + JSON + readable errors; asks for an API key once on 401/403/AuthFailure and retries.
export async function api(path, opts = {}, retried = false) {
  const headers = authHeaders();
  let body = opts.form;
  if (opts.json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(opts.json);
  }
  let res;
  try {
    res = await fetch(path, { method: opts.method || (body ? 'POST' : 'GET'), headers, body });
  } catch (e) {
    throw new ApiError('NetworkError', `the server did not answer (${e.message})`);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  let err = errorOf(data);
  if (!err && !res.ok) {
    const detail = data && data.detail;
    const plain = text.trimStart().startsWith('<') ? '' : text.slice(0, 300);
    err = { code: `HTTP${res.status}`, message: (detail && (typeof detail === 'string' ? detail : JSON.stringify(detail))) || plain || res.statusText };
  }
  if (err && !(opts.batch && data && Array.isArray(data.results))) {
    if (!retried && (res.status === 401 || res.status === 403 || String(err.code).startsWith('AuthFailure'))) {
      if (await askKey(`${err.code}: ${err.message}`)) return api(path, opts, true);
    }
    throw new ApiError(err.code, err.message, res.status, err.rid || res.headers.get('x-request-id') || '');
  }
  return data;
}

let keyPrompt = null;
function askKey(reason) {
  if (keyPrompt) return keyPrompt;
  const dlg = $('#key-dialog');
  $('#key-why').textContent = reason || 'The API key sent as x-api-key with every request.';
  $('#key-input').value = localStorage.getItem(KEY) || '';
  dlg.returnValue = '';
  keyPrompt = new Promise((resolve) => {
    dlg.addEventListener('close', () => {
      keyPrompt = null;
      const key = $('#key-input').value.trim();
      if (dlg.returnValue === 'save' && key) { localStorage.setItem(KEY, key); resolve(true); return; }
      if (dlg.returnValue === 'clear') localStorage.removeItem(KEY);
      resolve(false);
    }, { once: true });
    dlg.showModal();
  });
  return keyPrompt;
}

function showError(e) {
  const text = e instanceof ApiError ? `${e.code}: ${e.message}` : `Error: ${(e && e.message) || e}`;
  $('#error-text').textContent = text + (e && e.requestId ? ` (request ${e.requestId})` : '');
  $('#error').hidden = false;
}
const clearError = () => { $('#error').hidden = true; };

// Runs an action with its button disabled; any failure lands in the error banner.
async function guarded(button, fn) {
  clearError();
  if (button) button.disabled = true;
  try { await fn(); } catch (e) { showError(e); } finally { if (button) button.disabled = false; }
}

// ---------------------------------------------------------------- small DOM helpers

function el(tag, attrs = {}, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  node.append(...kids.filter((k) => k !== null && k !== undefined));
  return node;
}

// A thumbnail; with an API key set, fetched with the header (an <img> cannot send one).
function thumb(url, alt) {
  const img = el('img', { alt, loading: 'lazy', decoding: 'async' });
  img.addEventListener('error', () => img.classList.add('broken'));
  const headers = authHeaders();
  if (!headers['x-api-key']) { img.src = url; return img; }
  fetch(url, { headers })
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(r.status))))
    .then((b) => { img.src = URL.createObjectURL(b); img.onload = () => URL.revokeObjectURL(img.src); })
    .catch(() => img.classList.add('broken'));
  return img;
}

function tagList(tags) {
  const entries = Object.entries(tags || {});
  return el('div', { class: 'tags' }, ...entries.map(([k, v]) => el('span', { class: 'tag' }, `${k}=${JSON.stringify(v)}`)));
}

function field(name, value) {
  return el('div', { class: 'field' }, el('span', {}, name), ' ', el('code', {}, String(value ?? '')));
}

function dropZone(zone, input, onFiles) {
  zone.tabIndex = 0;
  zone.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); input.click(); }
  });
  input.addEventListener('change', () => {
    const files = [...input.files];
    input.value = '';
    if (files.length) onFiles(files);
  });
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const files = [...((e.dataTransfer && e.dataTransfer.files) || [])];
    if (files.length) onFiles(files);
  });
}

const gpath = (g) => `/v1/groups/${encodeURIComponent(g)}`;
const readDataUrl = (file) => new Promise((resolve, reject) => {
  const r = new FileReader();
  r.onload = () => resolve(r.result);
  r.onerror = () => reject(r.error);
  r.readAsDataURL(file);
});

// ---------------------------------------------------------------- compare

const picked = { a: null, b: null };
let compareSeq = 0;

function setPreview(slot, src) {
  const zone = $(`#drop-${slot}`);
  const img = zone.querySelector('img');
  if (img.src.startsWith('blob:')) URL.revokeObjectURL(img.src);
  if (src) img.src = src; else img.removeAttribute('src');
  img.hidden = !src;
  zone.classList.toggle('has', !!src);
}

const compareReady = (slot) => picked[slot] || $(`#url-${slot}`).value.trim();

async function compareRef(slot) {
  return picked[slot] ? { base64: await readDataUrl(picked[slot]) } : { url: $(`#url-${slot}`).value.trim() };
}

async function compare() {
  if (!compareReady('a') || !compareReady('b')) throw new Error('pick, drop or paste two images first');
  const seq = ++compareSeq;
  $('#explain').dataset.ready = 'false';
  let opts;
  if (picked.a && picked.b) {
    const form = new FormData();
    form.append('a', picked.a);
    form.append('b', picked.b);
    form.append('explain', 'true');
    opts = { form };
  } else {
    opts = { json: { a: await compareRef('a'), b: await compareRef('b'), explain: true } };
  }
  $('#compare-result').classList.add('busy');
  const t0 = performance.now();
  let r;
  try {
    r = await api('/v1/compare', { method: 'POST', ...opts });
  } catch (e) {
    if (seq === compareSeq) $('#compare-result').hidden = true;
    throw e;
  } finally {
    $('#compare-result').classList.remove('busy');
  }
  const ms = performance.now() - t0;
  if (seq !== compareSeq) return;
  const box = $('#compare-result');
  $('#verdict').textContent = r.verdict;
  box.dataset.verdict = r.verdict.replace(/\W+/g, '-');
  box.dataset.ms = ms.toFixed(1);
  $('#meter-bar').style.width = `${(r.similarity * 100).toFixed(1)}%`;
  $('#r-similarity').textContent = r.similarity.toFixed(4);
  $('#r-score').textContent = r.score.toFixed(1);
  $('#r-cosine').textContent = r.cosine.toFixed(4);
  $('#r-l2').textContent = r.l2_distance.toFixed(4);
  $('#r-time').textContent = `${ms.toFixed(0)} ms in the browser (${r.elapsed_ms} ms on the server, model ${r.model})`;
  box.hidden = false;
  await explain(r, seq);
}

// ---------------------------------------------------------------- compare: the match explained

const explained = { r: null, a: null, b: null, width: 0 };

// The server says whether the inliers verify the pair (scores.VERIFIED_INLIERS): RANSAC fits a
// homography to any 4 pairs, so a few inliers are chance.
function explainText(inliers, matches, verified) {
  if (inliers === null || inliers === undefined) return 'no geometric verification (local features are off on this server)';
  if (inliers === 0) return 'no geometric match';
  if (!verified) {
    return `no geometric match (only ${inliers} keypoint pairs agree on one transform, too few to be more than chance)`;
  }
  const drawn = matches && matches.length < inliers ? ` (the strongest ${matches.length} drawn)` : '';
  return `${inliers} matching keypoints agree on one geometric transform${drawn}`;
}

// The picture a compare preview shows, at its natural (EXIF-oriented) size; null when none.
async function previewOf(slot) {
  const img = $(`#drop-${slot} img`);
  if (img.hidden || !img.getAttribute('src')) return null;
  try { await img.decode(); } catch { return null; }
  return img.naturalWidth && img.naturalHeight ? { src: img.src, w: img.naturalWidth, h: img.naturalHeight } : null;
}

async function explain(r, seq) {
  const [a, b] = await Promise.all([previewOf('a'), previewOf('b')]);
  if (seq !== compareSeq) return;
  Object.assign(explained, { r, a, b });
  const box = $('#explain');
  box.dataset.inliers = r.inliers ?? '';
  $("#explain-text").textContent = explainText(r.inliers, r.matches, r.verified);
  drawExplain();
  box.dataset.ready = 'true';
}

function svgEl(tag, attrs) {
  const node = document.createElementNS($('#explain-svg').namespaceURI, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

// Both pictures side by side (one above the other when narrow) in one SVG, a line and two dots
// per match. Coordinates are viewBox units, so the drawing scales with the pictures.
function drawExplain() {
  const { r, a, b } = explained;
  const svg = $('#explain-svg');
  const width = $('#explain').clientWidth;
  if (!r || !width) return;
  explained.width = width;
  const matches = Array.isArray(r.matches) ? r.matches : [];
  svg.replaceChildren();
  svg.toggleAttribute('hidden', !a || !b);  // an SVG element has no .hidden property
  svg.dataset.lines = String(a && b ? matches.length : 0);
  if (!a || !b) return;
  const stacked = width < 560;
  const gap = 12;
  const U = 600;  // both pictures this high side by side, this wide stacked
  const A = { x: 0, y: 0, w: stacked ? U : (U * a.w) / a.h, h: stacked ? (U * a.h) / a.w : U };
  const B = { w: stacked ? U : (U * b.w) / b.h, h: stacked ? (U * b.h) / b.w : U };
  Object.assign(B, stacked ? { x: 0, y: A.h + gap } : { x: A.w + gap, y: 0 });
  const vw = B.x + B.w;
  const vh = B.y + B.h;
  // Never larger than the pictures' natural size, the page's width or most of the window's height.
  const natural = stacked ? Math.max(a.w, b.w) : vw * (Math.max(a.h, b.h) / U);
  const px = Math.max(1, Math.min(width, natural, (0.8 * window.innerHeight * vw) / vh));
  const scale = px / vw;
  svg.setAttribute('viewBox', `0 0 ${vw.toFixed(2)} ${vh.toFixed(2)}`);
  svg.setAttribute('width', px.toFixed(1));
  svg.setAttribute('height', (vh * scale).toFixed(1));
  for (const [P, pic, name] of [[A, a, 'a'], [B, b, 'b']]) {
    svg.append(svgEl('image', { href: pic.src, x: P.x, y: P.y, width: P.w, height: P.h, preserveAspectRatio: 'none', 'data-slot': name }));
  }
  const g = svgEl('g', { class: r.verified ? 'lines' : 'lines weak' });
  const dot = (3 / scale).toFixed(2);
  matches.forEach(([xa, ya, xb, yb], i) => {
    const colour = `hsl(${Math.round((i * 137.5) % 360)}, 90%, 55%)`;
    const [x1, y1, x2, y2] = [A.x + xa * A.w, A.y + ya * A.h, B.x + xb * B.w, B.y + yb * B.h].map((v) => v.toFixed(2));
    g.append(
      svgEl('line', { x1, y1, x2, y2, stroke: colour }),
      svgEl('circle', { cx: x1, cy: y1, r: dot, fill: colour }),
      svgEl('circle', { cx: x2, cy: y2, r: dot, fill: colour }));
  });
  svg.append(g);
}

function initCompare() {
  for (const slot of ['a', 'b']) {
    dropZone($(`#drop-${slot}`), $(`#file-${slot}`), ([file]) => {
      picked[slot] = file;
      $(`#url-${slot}`).value = '';
      setPreview(slot, URL.createObjectURL(file));
      if (compareReady('a') && compareReady('b')) guarded(null, compare);
    });
    $(`#url-${slot}`).addEventListener('change', (e) => {
      const url = e.target.value.trim();
      if (!url) return;
      picked[slot] = null;
      setPreview(slot, /^https?:\/\//i.test(url) ? url : null);
      if (compareReady('a') && compareReady('b')) guarded(null, compare);
    });
  }
  $('#compare-go').addEventListener('click', (e) => guarded(e.currentTarget, compare));
  // A new width (a window resized, a phone turned) lays the explanation out again.
  new ResizeObserver(() => {
    if (explained.r && Math.abs($('#explain').clientWidth - explained.width) > 1) drawExplain();
  }).observe($('#explain'));
}

// ---------------------------------------------------------------- search

const query = { file: null, rect: null };

async function fillGroupSelect() {
  const select = $('#s-group');
  const before = select.value;
  const { groups } = await api('/v1/groups?limit=100');
  select.replaceChildren(...groups.map((g) => el('option', { value: g.group_id }, `${g.group_id} (${g.pic_count})`)));
  if (!groups.length) select.append(el('option', { value: '' }, 'no groups yet: create one under Galleries'));
  if (groups.some((g) => g.group_id === before)) select.value = before;
}

function setQuery(file) {
  query.file = file;
  const img = $('#s-img');
  if (img.src.startsWith('blob:')) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(file);
  $('#s-crop').hidden = false;
  $('#s-drop').hidden = true;
  setRect(null);
}

function placeBox(rect) {
  const img = $('#s-img');
  const pct = (v, whole) => `${(100 * v) / whole}%`;  // stays put when the picture is resized
  Object.assign($('#s-box').style, {
    left: pct(rect.x, img.naturalWidth), top: pct(rect.y, img.naturalHeight),
    width: pct(rect.width, img.naturalWidth), height: pct(rect.height, img.naturalHeight),
  });
}

function setRect(rect) {
  query.rect = rect;
  $('#s-offset').value = 0;
  const box = $('#s-box');
  const text = $('#s-rect-text');
  box.classList.remove('found');
  box.hidden = !rect;
  text.hidden = !rect;
  if (!rect) return;
  placeBox(rect);
  text.textContent = `ImageRect: x=${rect.x}, y=${rect.y}, width=${rect.width}, height=${rect.height} (original pixels)`;
}

// A product group's answer says which region it searched (its subject): drawn on the query until
// the user draws their own box, which is then sent as ImageRect (a caller's ImageRect wins).
function showSubject(found) {
  if (query.rect || !found) return;
  const box = $('#s-box');
  const text = $('#s-rect-text');
  placeBox(found.box);
  box.classList.add('found');
  box.hidden = false;
  text.hidden = false;
  const b = found.box;
  const kind = { region: 'a region', image: 'the whole picture' }[found.label] || found.label;
  const unmet = found.requested != null && !found.honoured ? ` (category ${found.requested} could not be found)` : '';
  text.textContent = `Subject searched: ${kind}, score ${found.score.toFixed(2)}, x=${b.x}, y=${b.y}, `
    + `width=${b.width}, height=${b.height}${unmet}. Draw a box to search another region.`;
}

function initCrop() {
  const img = $('#s-img');
  const box = $('#s-box');
  let start = null;
  const point = (e) => {
    const r = img.getBoundingClientRect();
    return { x: Math.min(Math.max(e.clientX - r.left, 0), r.width), y: Math.min(Math.max(e.clientY - r.top, 0), r.height) };
  };
  const span = (a, b) => ({ x: Math.min(a.x, b.x), y: Math.min(a.y, b.y), w: Math.abs(a.x - b.x), h: Math.abs(a.y - b.y) });
  $('#s-crop').addEventListener('pointerdown', (e) => {
    if (!query.file) return;
    e.preventDefault();
    start = point(e);
    e.currentTarget.setPointerCapture(e.pointerId);
  });
  $('#s-crop').addEventListener('pointermove', (e) => {
    if (!start) return;
    const s = span(start, point(e));
    Object.assign(box.style, { left: `${s.x}px`, top: `${s.y}px`, width: `${s.w}px`, height: `${s.h}px` });
    box.hidden = false;
  });
  $('#s-crop').addEventListener('pointerup', (e) => {
    if (!start) return;
    const s = span(start, point(e));
    start = null;
    if (s.w < 4 || s.h < 4) { setRect(null); return; }
    const k = img.naturalWidth / img.clientWidth;
    const x = Math.round(s.x * k);
    const y = Math.round(s.y * k);
    setRect({
      x, y,
      width: Math.min(Math.round(s.w * k), img.naturalWidth - x),
      height: Math.min(Math.round(s.h * k), img.naturalHeight - y),
    });
  });
}

async function search() {
  const group = $('#s-group').value;
  if (!group) throw new Error('choose a group first (create one under Galleries)');
  if (!query.file) throw new Error('drop or pick a query image first');
  const limit = Number($('#s-limit').value);
  const offset = Math.max(0, Number($('#s-offset').value) || 0);
  const threshold = Number($('#s-threshold').value);
  const filter = $('#s-filter').value.trim();
  const form = new FormData();
  form.append('image', query.file);
  form.append('limit', String(limit));
  form.append('offset', String(offset));
  if (threshold > 0) form.append('match_threshold', String(threshold));
  if (filter) form.append('filter', filter);
  if (query.rect) form.append('rect', JSON.stringify(query.rect));
  $('#s-status').textContent = 'Searching…';
  const t0 = performance.now();
  let r;
  try {
    r = await api(`${gpath(group)}/search`, { method: 'POST', form });
  } catch (e) {
    $('#s-status').textContent = '';
    throw e;
  }
  const ms = performance.now() - t0;
  showSubject(r.object);
  $('#s-results').replaceChildren(...r.results.map((h) => el('figure', { class: 'card hit' },
    thumb(h.thumbnail_url, h.pic_name),
    el('figcaption', {},
      el('div', { class: 'score' }, `Score ${h.score}`),
      field('EntityId', h.entity_id),
      field('PicName', h.pic_name),
      h.custom_content ? el('div', { class: 'custom' }, h.custom_content) : null,
      tagList(h.tags)))));
  const shown = r.results.length ? `results ${offset + 1}–${offset + r.results.length}` : 'no results';
  $('#s-status').textContent = `${shown} (offset ${offset}, limit ${limit}) in ${ms.toFixed(0)} ms`;
  $('#s-prev').disabled = offset === 0;
  $('#s-next').disabled = r.results.length < limit;
}

function initSearch() {
  initCrop();
  dropZone($('#s-drop'), $('#s-file'), ([file]) => {
    setQuery(file);
    if ($('#s-group').value) guarded($('#s-go'), search);
  });
  const crop = $('#s-crop');
  crop.addEventListener('dragover', (e) => e.preventDefault());
  crop.addEventListener('drop', (e) => {
    e.preventDefault();
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) setQuery(file);
  });
  $('#s-change').addEventListener('click', () => $('#s-file').click());
  $('#s-clear-rect').addEventListener('click', () => setRect(null));
  const out = $('#s-threshold-out');
  $('#s-threshold').addEventListener('input', (e) => { out.textContent = e.target.value === '0' ? 'default' : e.target.value; });
  for (const id of ['#s-group', '#s-threshold', '#s-limit', '#s-filter']) {
    $(id).addEventListener('change', () => { $('#s-offset').value = 0; });
  }
  $('#s-filter').addEventListener('keydown', (e) => { if (e.key === 'Enter') guarded($('#s-go'), search); });
  $('#s-go').addEventListener('click', (e) => guarded(e.currentTarget, search));
  const page = (dir) => {
    const limit = Number($('#s-limit').value);
    $('#s-offset').value = Math.max(0, Number($('#s-offset').value) + dir * limit);
    guarded($('#s-go'), search);
  };
  $('#s-prev').addEventListener('click', () => page(-1));
  $('#s-next').addEventListener('click', () => page(1));
  $('#s-prev').disabled = $('#s-next').disabled = true;
}

// ---------------------------------------------------------------- galleries

const GROUP_PAGE = 20;
const IMAGE_PAGE = 24;
const gal = { offset: 0, group: null, imgOffset: 0 };

async function loadGroups() {
  const { groups, total } = await api(`/v1/groups?offset=${gal.offset}&limit=${GROUP_PAGE}`);
  $('#g-rows').replaceChildren(...groups.map((g) => el('tr', { 'data-group': g.group_id },
    el('td', {}, el('a', { href: '#galleries', onclick: () => guarded(null, () => browse(g.group_id)) }, g.group_id)),
    el('td', {}, g.group_name),
    el('td', {}, String(g.group_type)),
    el('td', {}, g.model),
    el('td', { class: 'num' }, String(g.pic_count)),
    el('td', {}, g.create_time.slice(0, 19).replace('T', ' ')),
    el('td', {},
      el('button', { type: 'button', onclick: () => openDuplicates(g.group_id) }, 'Duplicates'), ' ',
      el('button', { type: 'button', onclick: (e) => guarded(e.currentTarget, () => deleteGroup(g.group_id)) }, 'Delete')))));
  if (!groups.length) $('#g-rows').append(el('tr', {}, el('td', { colspan: 7 }, 'No groups yet.')));
  $('#g-count').textContent = total ? `${gal.offset + 1}–${gal.offset + groups.length} of ${total} groups` : '';
  $('#g-prev').disabled = gal.offset === 0;
  $('#g-next').disabled = gal.offset + groups.length >= total;
}

// The Duplicates tab on this group, computing at once (when the tab opens: see showDupTab).
function openDuplicates(id) {
  dup.open = id;
  location.hash = '#duplicates';
}

async function deleteGroup(id) {
  if (!window.confirm(`Delete group ${id} and all its images?`)) return;
  await api(gpath(id), { method: 'DELETE' });
  if (gal.group === id) { gal.group = null; $('#g-browse').hidden = true; }
  await loadGroups();
}

async function browse(id, offset = 0) {
  gal.group = id;
  gal.imgOffset = offset;
  $('#b-name').textContent = id;
  $('#g-browse').hidden = false;
  const { images, total } = await api(`${gpath(id)}/images?offset=${offset}&limit=${IMAGE_PAGE}`);
  $('#b-images').replaceChildren(...images.map((im) => el('figure', { class: 'card' },
    thumb(im.thumbnail_url, im.pic_name),
    el('figcaption', {},
      field('EntityId', im.entity_id),
      field('PicName', im.pic_name),
      // The thumbnail shows what was stored: an ImageRect, or a product group's subject, at this place.
      im.rect ? field('Region', `x=${im.rect.x}, y=${im.rect.y}, ${im.rect.width}×${im.rect.height}`) : null,
      im.custom_content ? el('div', { class: 'custom' }, im.custom_content) : null,
      tagList(im.tags),
      el('div', { class: 'actions' },
        el('button', { type: 'button', onclick: (e) => guarded(e.currentTarget, () => deleteImages(im, false)) }, 'Delete image'),
        el('button', { type: 'button', onclick: (e) => guarded(e.currentTarget, () => deleteImages(im, true)) }, 'Delete entity'))))));
  $('#b-count').textContent = total ? `${offset + 1}–${offset + images.length} of ${total} images` : 'No images yet.';
  $('#b-prev').disabled = offset === 0;
  $('#b-next').disabled = offset + images.length >= total;
}

async function deleteImages(image, wholeEntity) {
  const g = gal.group;
  let names = [image.pic_name];
  if (wholeEntity) {
    const q = `${gpath(g)}/images?entity_id=${encodeURIComponent(image.entity_id)}&limit=100`;
    names = (await api(q)).images.map((im) => im.pic_name);
  }
  const what = wholeEntity ? `entity ${image.entity_id} (${names.length} images)` : `image ${image.pic_name}`;
  if (!window.confirm(`Delete ${what}?`)) return;
  for (const name of names) await api(`${gpath(g)}/images/${encodeURIComponent(name)}`, { method: 'DELETE' });
  await Promise.all([browse(g, gal.imgOffset), loadGroups()]);
}

// Sends files in small multipart batches; the counter and bar move as each batch lands.
async function upload(files) {
  const g = gal.group;
  if (!g) throw new Error('open a group first');
  const tagsText = $('#b-tags').value.trim();
  if (tagsText) {
    try { JSON.parse(tagsText); } catch (e) { throw new ApiError('TagsValueIllegal', `the tags are not valid JSON: ${e.message}`); }
  }
  const failures = $('#b-failures');
  failures.replaceChildren();
  $('#b-progress').hidden = false;
  const bar = $('#b-bar');
  bar.max = files.length;
  let done = 0;
  let failed = 0;
  const tick = () => {
    bar.value = done;
    $('#b-counter').textContent = `${done} / ${files.length} uploaded${failed ? `, ${failed} failed` : ''}`;
  };
  const fail = (name, code, message) => {
    failed += 1;
    failures.append(el('li', {}, `${name}: ${code}: ${message}`));
  };
  tick();
  const batches = [];
  for (let i = 0, bytes = 0; i < files.length; i += 1) {
    if (!batches.length || batches.at(-1).length >= 4 || bytes + files[i].size > 16e6) { batches.push([]); bytes = 0; }
    batches.at(-1).push(files[i]);
    bytes += files[i].size;
  }
  for (const batch of batches) {
    const form = new FormData();
    for (const f of batch) form.append('images', f, f.name);
    if (tagsText) form.append('tags', tagsText);
    try {
      const r = await api(`${gpath(g)}/images`, { method: 'POST', form, batch: true });
      r.results.forEach((item, i) => {
        if (item.ok) done += 1; else fail(item.pic_name || batch[i].name, item.error.code, item.error.message);
      });
    } catch (e) {
      for (const f of batch) fail(f.name, e.code || 'Error', e.message);
    }
    tick();
  }
  $('#b-progress').dataset.done = 'true';
  await Promise.all([browse(g, 0), loadGroups()]);
}

function initGalleries() {
  $('#g-create').addEventListener('submit', (e) => {
    e.preventDefault();
    guarded(e.submitter, async () => {
      const id = $('#g-id').value.trim();
      const body = { group_id: id, model: $('#g-model').value };
      if ($('#g-name').value.trim()) body.group_name = $('#g-name').value.trim();
      await api('/v1/groups', { method: 'POST', json: body });
      $('#g-id').value = '';
      $('#g-name').value = '';
      await Promise.all([loadGroups(), browse(id)]);
    });
  });
  $('#g-prev').addEventListener('click', () => { gal.offset = Math.max(0, gal.offset - GROUP_PAGE); guarded(null, loadGroups); });
  $('#g-next').addEventListener('click', () => { gal.offset += GROUP_PAGE; guarded(null, loadGroups); });
  $('#b-prev').addEventListener('click', () => guarded(null, () => browse(gal.group, Math.max(0, gal.imgOffset - IMAGE_PAGE))));
  $('#b-next').addEventListener('click', () => guarded(null, () => browse(gal.group, gal.imgOffset + IMAGE_PAGE)));
  dropZone($('#b-drop'), $('#b-files'), (files) => guarded(null, () => upload(files)));
}

// ---------------------------------------------------------------- duplicates
// The sets come from a background job (POST .../duplicates/jobs), polled until done, so a large
// group never holds a request; its result is paged from the job. Pictures deleted here are
// left out of the pages of that job; "Find duplicates" again computes afresh.

const dup = { job: null, group: null, offset: 0, deleted: new Set(), seq: 0, open: null };
const POLL_MS = 300;
const MATCH_WORDS = { near: 'near copy', scene: 'same scene' };
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

async function fillDupGroups(pick) {
  const select = $('#d-group');
  const before = pick || select.value;
  const { groups } = await api('/v1/groups?limit=100');
  select.replaceChildren(...groups.map((g) => el('option', { value: g.group_id }, `${g.group_id} (${g.pic_count})`)));
  if (!groups.length) select.append(el('option', { value: '' }, 'no groups yet: create one under Galleries'));
  if (groups.some((g) => g.group_id === before)) select.value = before;
}

// Starts a job for the chosen group, level and threshold, then polls it to the end.
async function findDuplicates() {
  const group = $('#d-group').value;
  if (!group) throw new Error('choose a group first (create one under Galleries)');
  const seq = ++dup.seq;
  const threshold = Number($('#d-threshold').value);
  const body = { level: $('#d-level').value };
  if (threshold > 0) body.match_threshold = threshold;
  Object.assign(dup, { group, offset: 0, deleted: new Set(), job: null });
  $('#d-sets').replaceChildren();
  $('#d-count').textContent = '';
  $('#d-status').textContent = '';
  delete $('#d-progress').dataset.done;
  $('#d-progress').hidden = false;
  const job = await api(`${gpath(group)}/duplicates/jobs`, { method: 'POST', json: body });
  dup.job = job.job_id;
  await pollDuplicates(seq);
}

function showJobProgress(job) {
  const bar = $('#d-bar');
  bar.max = Math.max(job.total, 1);
  bar.value = job.total ? job.done : 0;
  const stage = { queued: 'waiting for another job', done: 'done' }[job.status] || job.stage || job.status;
  $('#d-stage').textContent = job.total ? `${stage}: ${job.done} / ${job.total} pictures` : stage;
}

async function pollDuplicates(seq) {
  for (;;) {
    const job = await api(jobPath());
    if (seq !== dup.seq) return;
    showJobProgress(job);
    if (job.status === 'failed') throw new ApiError(job.error.code, job.error.message, 0, job.request_id);
    if (job.status === 'done') {
      $('#d-progress').dataset.done = 'true';
      showDuplicates(job);
      return;
    }
    await sleep(POLL_MS);
  }
}

const jobPath = () => `${gpath(dup.group)}/duplicates/jobs/${dup.job}?offset=${dup.offset}&limit=${$('#d-limit').value}`;

async function pageDuplicates(dir) {
  const limit = Number($('#d-limit').value);
  dup.offset = Math.max(0, dup.offset + dir * limit);
  showDuplicates(await api(jobPath()));
}

function showDuplicates(job) {
  const r = job.result;
  const sets = r.sets.map(liveSet).filter((s) => s.duplicates.length > 0);
  $('#d-sets').replaceChildren(...sets.map(setRow));
  const hidden = r.reviewed ? `, ${r.reviewed} reviewed and hidden` : '';
  $('#d-status').textContent = `${r.total} sets, ${r.duplicates} duplicates among ${r.pictures} pictures${hidden} `
    + `(${job.level}, cosine >= ${r.min_cosine}; ${job.elapsed_ms.toFixed(0)} ms)`;
  $('#d-count').textContent = r.total ? `sets ${dup.offset + 1}–${dup.offset + r.sets.length} of ${r.total}` : 'No duplicate sets.';
  $('#d-prev').disabled = dup.offset === 0;
  $('#d-next').disabled = dup.offset + r.sets.length >= r.total;
}

// A set without the pictures deleted since the job ran (the kept one gone: the next takes its place).
function liveSet(s) {
  const members = [{ ...s.keep, kept: true }, ...s.duplicates].filter((m) => !dup.deleted.has(m.pic_name));
  return { key: s.key, keep: members[0], duplicates: members.slice(1) };
}

function memberCard(m, kept) {
  const box = el('input', { type: 'checkbox', value: m.pic_name, 'aria-label': `select ${m.pic_name}` });
  const label = kept ? el('div', { class: 'score kept' }, 'Kept') : el('div', { class: 'score' }, `Score ${m.score}`);
  return el('figure', { class: kept ? 'card member kept' : 'card member', 'data-pic': m.pic_name },
    thumb(m.thumbnail_url, m.pic_name),
    el('figcaption', {},
      el('label', { class: 'pick' }, box, label),
      el('div', { class: 'match' }, kept ? 'added first' : MATCH_WORDS[m.match] || m.match),
      field('PicName', m.pic_name),
      field('EntityId', m.entity_id)));
}

function setRow(s) {
  const row = el('section', { class: 'dset', 'data-key': s.key },
    el('div', { class: 'dset-head' },
      el('strong', {}, `${s.duplicates.length + 1} pictures`),
      el('span', { class: 'spacer' }),
      el('button', { type: 'button', class: 'delete-selected', onclick: (e) => guarded(e.currentTarget, () => deleteSelected(row)) }, 'Delete selected'),
      el('button', { type: 'button', class: 'keep-all', onclick: (e) => guarded(e.currentTarget, () => markReviewed(row)) }, 'Keep all (reviewed)')),
    el('div', { class: 'dset-members' }, memberCard(s.keep, true), ...s.duplicates.map((m) => memberCard(m, false))));
  return row;
}

async function deleteSelected(row) {
  const names = [...row.querySelectorAll('input[type=checkbox]:checked')].map((b) => b.value);
  if (!names.length) throw new Error('select the pictures to delete first');
  if (!window.confirm(`Delete ${names.length} picture${names.length > 1 ? 's' : ''} from ${dup.group}?\n${names.join('\n')}`)) return;
  for (const name of names) {
    await api(`${gpath(dup.group)}/images/${encodeURIComponent(name)}`, { method: 'DELETE' });
    dup.deleted.add(name);
    row.querySelector(`[data-pic="${CSS.escape(name)}"]`).remove();
  }
  if (row.querySelectorAll('.member').length < 2) row.remove();
}

async function markReviewed(row) {
  const names = [...row.querySelectorAll('.member')].map((m) => m.dataset.pic);
  await api(`${gpath(dup.group)}/duplicates/reviewed`, { method: 'POST', json: { pic_names: names } });
  row.remove();
}

async function showDupTab() {
  const open = dup.open;
  dup.open = null;
  await fillDupGroups(open);
  if (open) await findDuplicates();
}

function initDuplicates() {
  const out = $('#d-threshold-out');
  $('#d-threshold').addEventListener('input', (e) => { out.textContent = e.target.value === '0' ? "the level's" : e.target.value; });
  $('#d-go').addEventListener('click', (e) => guarded(e.currentTarget, findDuplicates));
  $('#d-prev').addEventListener('click', (e) => guarded(e.currentTarget, () => pageDuplicates(-1)));
  $('#d-next').addEventListener('click', (e) => guarded(e.currentTarget, () => pageDuplicates(1)));
  $('#d-prev').disabled = $('#d-next').disabled = true;
}

// ---------------------------------------------------------------- tabs and start

const TABS = { compare: null, search: fillGroupSelect, galleries: loadGroups, duplicates: showDupTab };

function route() {
  const name = location.hash.slice(1) in TABS ? location.hash.slice(1) : 'compare';
  for (const tab of Object.keys(TABS)) $(`#tab-${tab}`).hidden = tab !== name;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('current', a.dataset.tab === name);
  if (TABS[name]) guarded(null, TABS[name]);
}

function start() {
  // A file dropped outside a drop zone must not navigate away from the page.
  for (const type of ['dragover', 'drop']) document.addEventListener(type, (e) => e.preventDefault());
  window.addEventListener('unhandledrejection', (e) => showError(e.reason));
  $('#error-close').addEventListener('click', clearError);
  $('#key-button').addEventListener('click', () => askKey());
  initCompare();
  initSearch();
  initGalleries();
  initDuplicates();
  window.addEventListener('hashchange', route);
  route();
  document.body.dataset.ready = 'true';
}

start();
